"""Evaluation metrics on hand-made posteriors, and the frequency-prior baseline on the dev set."""

import numpy as np
import pytest

from training.evaluate import (
    error_kinds,
    evaluate_probs,
    load_dev_set,
    plot_error_flows,
    plot_report,
    prior_probs,
    write_report,
)


def _one_hot_like(eg, p=0.9):
    row = np.full(99, (1 - p) / 98)
    row[eg - 1] = p
    return row


def test_metrics_on_hand_made_posteriors(tmp_path):
    # true EGs: 4 (P21/c), 2 (P21), 94 (F cubic), 10 (P212121)
    true = np.array([4, 2, 94, 10])
    probs = np.stack([_one_hot_like(4), _one_hot_like(4), _one_hot_like(94), _one_hot_like(7)])
    r = evaluate_probs(probs, true)
    assert r["n"] == 4
    assert r["top1"] == pytest.approx(0.5)
    # flat remainder: ties rank by EG number, so EG 2 is 2nd for row 2, EG 10 is 6th for row 4
    assert r["top5"] == pytest.approx(0.75)
    # crystal systems: mono/mono ok, mono/mono ok (4 vs 2), cubic ok, ortho/ortho ok
    assert r["crystal_system"] == pytest.approx(1.0)
    assert r["nll"] == pytest.approx(-(2 * np.log(0.9) + 2 * np.log(0.1 / 98)) / 4)
    # errors: 2 predicted as 4 (paper DAG: 4 -> 2 is an edge), 10 predicted as 7 (distance >= 1)
    assert r["dag"]["n_errors"] == 2
    assert r["dag"]["within_1"] >= 0.5
    # P21 read as P21/c gained a condition (ancestor); P212121 read as P--- is a branch jump
    # on the paper's DAG (its edges leave P212121 for monoclinic P21, not for P---)
    assert r["dag"]["ancestor"] == r["dag"]["branch"] == pytest.approx(0.5)
    assert r["per_eg_recall"][4] == [1.0, 1] and r["per_eg_recall"][2] == [0.0, 1]
    # confidence 0.9 everywhere, accuracy 0.5: ECE = 0.4
    assert r["ece"] == pytest.approx(0.4)
    assert write_report({"model": r}, tmp_path).is_file()
    assert all(p.is_file() for p in plot_report(probs, true, tmp_path))


def test_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        evaluate_probs(np.ones((2, 98)), np.array([1, 2]))
    with pytest.raises(ValueError, match="EG numbers"):
        evaluate_probs(np.ones((1, 99)) / 99, np.array([0]))


def test_paper_prior_baseline_on_dev_set(dev_set_path):
    patterns, eg = load_dev_set(dev_set_path)
    assert len(patterns) == 454 == eg.size
    r = evaluate_probs(prior_probs(eg.size), eg)
    # measured once: the paper's prior ranks EG 4 first -> 51/454 = 11.2 % top-1; top-5 = 50.9 %
    assert r["top1"] == pytest.approx(51 / 454)
    assert r["top5"] == pytest.approx(0.5088, abs=1e-3)


def test_synthetic_scores_render_held_out_bank_patterns_for_the_model_grid(tmp_path):
    from ratagent.crystallography import sg_to_eg
    from ratagent.model.inference import load
    from ratagent.simulation import iter_bank, write_bank
    from ratagent.testing import tiny_checkpoint
    from training.config import PRESETS
    from training.evaluate import synthetic_scores, uniform_probs

    write_bank(tmp_path / "bank", 12, shard_size=12, seed=5, d_min=1.2, workers=1, progress=False)
    clf = load(tiny_checkpoint(tmp_path / "ckpt"))
    scores, eg = synthetic_scores(clf, tmp_path / "bank", PRESETS["hard"], 10, seed=1, batch_size=4,
                                  progress=False)
    assert scores.shape == (10, 99) and eg.shape == (10,)
    assert np.all(np.isfinite(scores))
    bank_egs = {sg_to_eg(r.sg_number) for r in iter_bank(tmp_path / "bank")}
    assert set(eg) <= bank_egs
    chance = evaluate_probs(uniform_probs(eg.size), eg)
    assert chance["nll"] == pytest.approx(np.log(99))


def test_error_kinds_follow_the_extinction_conditions():
    """On the DAG: P 21/b 1 1 (EG 4: the 21 screw and the b glide) read as P 21 1 1 (EG 2)
    lost a condition (descendant); the reverse gained one (ancestor); P 21 1 1 read as
    P b 1 1 (EG 3) is neither (branch); P 21 1 1 read as triclinic P (EG 99) lost its
    only condition."""
    kinds = error_kinds(np.array([2, 4, 3, 99]), np.array([4, 2, 2, 2]))
    assert kinds.tolist() == ["descendant", "ancestor", "branch", "descendant"]
    with pytest.raises(ValueError, match="not an error"):
        error_kinds(np.array([5]), np.array([5]))


def test_error_flows_plot_the_model_beside_the_prior(tmp_path):
    true = np.array([4, 2, 94, 10, 2])
    probs = np.stack([_one_hot_like(eg) for eg in (2, 4, 94, 7, 3)])
    path = plot_error_flows({"prior": prior_probs(true.size), "model": probs}, true, tmp_path)
    assert path.name == "error_flows.png" and path.stat().st_size > 10_000
