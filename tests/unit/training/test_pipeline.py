"""The dev-set split, the pipeline report with its intervals, and the trust-threshold replay."""

import csv
import math
from dataclasses import replace

import numpy as np
import pytest

from ratagent.agent import AgentConfig
from training.devsplit import SPLIT_FILE, build_split, dev_groups, dev_split
from training.pipeline import (
    RUN_FILE,
    SYSTEM_MISSES,
    accepted_right,
    agent_overrides,
    choose_thresholds,
    compare_cases,
    format_comparison,
    format_report,
    group_interval,
    pipeline_report,
    plot_pipeline,
    read_cases,
    replay,
    replayed,
    results_markdown,
    run_pipeline,
    system_miss,
    wilson,
)


def test_the_shipped_split_is_the_one_the_rule_builds(dev_set_path):
    half, group = build_split(dev_set_path)
    assert dev_split().tolist() == half.tolist()
    with SPLIT_FILE.open() as f:
        assert [int(r["group"]) for r in csv.DictReader(f)] == group.tolist()
    assert dev_groups().tolist() == group.tolist()
    # a mineral's near duplicates never straddle the halves; the halves are equal in size
    for g in np.unique(group):
        assert len(set(half[group == g])) == 1
    assert (half == "A").sum() == (half == "B").sum() == 227


def test_split_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "split.csv"
    bad.write_text("index,half,group\n0,A,0\n1,C,1\n")
    with pytest.raises(ValueError, match=r"split.csv: half must be A or B, got \['C'\]"):
        dev_split(bad)
    bad.write_text("index,half,group\n0,A,0\n1,B,x\n")
    with pytest.raises(ValueError, match=r"split\.csv: every row needs an integer group"):
        dev_groups(bad)
    bad.write_text("index,half,group\n0,A,0\n2,B,1\n")
    with pytest.raises(ValueError, match=r"split\.csv: indices must be 0…1 in order"):
        dev_groups(bad)


@pytest.mark.parametrize(
    "k, n, lo, hi",
    [  # Wilson (1927) intervals, as tabulated by Newcombe, Stat. Med. 17, 857 (1998), table I
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe(k, n, lo, hi):
    assert wilson(k, n) == pytest.approx((lo, hi), abs=6e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def _case(eg, ranking, verdict, indist=(), refined=True, half="A"):
    return {"index": 0, "half": half, "eg": eg, "ranking": list(ranking), "verdict": verdict,
            "indistinguishable": list(indist), "refined": refined, "elapsed_s": 1.0, "meta": {},
            "nn_probs": [1 / 99] * 99, "candidates": [{"eg": e, "delta_bic": 100.0 * i, "pawley_weight": 1.0}
                                                     for i, e in enumerate(ranking)]}


def test_report_counts_accepts_right_when_the_truth_is_indistinguishable():
    cases = [
        _case(14, [14, 4], "accept"),  # right EG
        _case(4, [14, 4], "accept", indist=[14, 4]),  # right: in the reported set
        _case(62, [14, 62], "accept"),  # wrong EG and wrong system
        _case(33, [29, 33], "flag"),  # flagged, right system
        _case(94, [1], "remeasure"),
    ]
    assert [accepted_right(c) for c in cases[:3]] == [True, True, False]
    rep = pipeline_report(cases)
    assert rep["accept_precision"]["k"] == 2 and rep["accept_precision"]["n"] == 3
    assert rep["coverage"]["rate"] == pytest.approx(0.6)
    assert rep["top1"]["k"] == 1 and rep["top5"]["k"] == 4
    assert rep["verdicts"]["accept"] == {"right EG": 2, "right system": 0, "wrong system": 1}
    assert rep["verdicts"]["flag"] == {"right EG": 0, "right system": 1, "wrong system": 0}


def _cells(*systems):
    return [{"crystal_system": s} for s in systems]


def test_a_missed_crystal_system_is_traced_to_the_indexing_or_the_fit():
    """EG 14 (P - a b, orthorhombic) led by EGs of other systems: why, case by case."""
    right = _case(14, [29, 4], "flag")  # EG 29 is orthorhombic too: no miss
    no_cell = _case(14, [4], "flag", refined=False)
    lost = _case(14, [4], "flag") | {"meta": {"cells_indexed": _cells("monoclinic", "orthorhombic")}}
    fifth = _case(14, [4], "flag") | {"meta": {"cells_indexed": _cells("monoclinic"),
                                               "indexing": _cells("monoclinic", "triclinic", "orthorhombic")}}
    cubic = _cells("cubic")
    below = _case(14, [94], "flag") | {"meta": {
        "cells_indexed": cubic, "indexing": cubic,
        "indexing_families": {"cubic": {"rank": 1}, "orthorhombic": {"rank": 9}}}}
    absent = _case(14, [94], "flag") | {"meta": {"cells_indexed": cubic, "indexing": cubic,
                                                 "indexing_families": {"cubic": {"rank": 1}}}}
    cases = [right, no_cell, lost, fifth, below, absent]
    assert [system_miss(c) for c in cases] == [None, *SYSTEM_MISSES]
    rep = pipeline_report(cases)
    assert list(rep["system_misses"].values()) == [1, 1, 1, 1, 1]
    assert rep["system_confusions"][0] == ["orthorhombic", "monoclinic", 3]
    assert "crystal system missed, why:" in format_report({"all": rep})


def test_replay_never_accepts_a_posterior_alone_and_keeps_other_verdicts():
    config = AgentConfig()
    assert replay(_case(14, [14], "accept", refined=False), config) == "flag"
    assert replay(_case(14, [14], "remeasure"), config) == "remeasure"
    given_cell = _case(14, [14], "accept")  # refined in a cell the user gave: not re-checked
    assert replay(given_cell, config) == "accept"


def test_replay_orders_an_undecided_refined_ranking_as_the_agent_does():
    """A flagged refined case reports the fit's leader, then the network's picks; a case
    the agent already reordered (meta ``fitted_order``) is replayed from the fits' order."""
    from ratagent.trust import undecided_order

    config = AgentConfig()
    probs = [1e-4] * 99
    probs[61] = probs[13] = 0.4  # EGs 62, 14
    case = _case(62, [33, 29, 26], "flag") | {"nn_probs": probs}
    (out,) = replayed([case], config)
    assert out["ranking"][:3] == [33, 14, 62] and out["ranking"][3:5] == [1, 2]
    assert pipeline_report([out])["top5"]["k"] == 1 and pipeline_report([case])["top5"]["k"] == 0
    agent_order = undecided_order([33, 29, 26], probs, 1)
    stored = case | {"ranking": agent_order, "meta": {"fitted_order": [33, 29, 26]}}
    assert replayed([stored], config)[0]["ranking"] == out["ranking"]
    accepted = stored | {"verdict": "accept"}  # given cell: no trust step, the fits' order
    assert replayed([accepted], config)[0]["ranking"][:3] == [33, 29, 26]
    off = replayed([case], replace(config, undecided_fitted=None))[0]
    assert off["ranking"] == case["ranking"]


def _indexed_case(eg_true, eg_best, m20, half="A"):
    cell = [5.0, 6.0, 7.0, 90.0, 90.0, 90.0]
    c = _case(eg_true, [eg_best], "accept", half=half)
    c["meta"] = {"cell": cell, "cell_from_indexing": cell,
                 "cells_indexed": [{"crystal_system": "orthorhombic", "centring": "P", "cell": cell,
                                    "m20": m20, "n_lines": 20}],
                 "cell_fits": [{"cell": cell, "chi2": 4000.0, "chi2_reduced": 1.0, "n_params": 30,
                                "n_obs": 4000, "eg": eg_best}]}
    c["nn_probs"] = [1.0 / 99] * 99
    return c


def test_thresholds_are_chosen_for_precision_then_coverage():
    """Right answers have M20 ≥ 40, wrong ones ≤ 20: the chosen M20 bound separates them."""
    cases = [_indexed_case(29, 29, 60.0)] * 20 + [_indexed_case(29, 33, 15.0)] * 3
    config, rep = choose_thresholds(cases, AgentConfig(), min_precision_bound=0.8,
                                    grid={"min_accept_m20": (0.0, 10.0, 30.0, 70.0)})
    assert config.min_accept_m20 == 30.0
    assert rep["accept_precision"]["rate"] == 1.0 and rep["coverage"]["k"] == 20
    # 20 right of 20 bound the precision below by 0.84; 6 of 6 only by 0.61: nothing accepted
    config, rep = choose_thresholds(cases[14:], AgentConfig(), min_precision_bound=0.8,
                                    grid={"min_accept_m20": (0.0, 10.0, 30.0, 70.0)})
    assert rep["coverage"]["k"] == 0


@pytest.mark.slow
def test_run_pipeline_resumes_from_its_cases(tmp_path, dev_set_path):
    from ratagent.testing import tiny_checkpoint
    from training.evaluate import load_dev_set

    patterns, eg = load_dev_set(dev_set_path)
    halves = dev_split()
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "run"
    cases = run_pipeline(patterns, eg, halves, out, checkpoint=str(ckpt), jobs=1, indices=[339],
                         progress=False)
    assert [c["index"] for c in cases] == [339] and cases[0]["eg"] == int(eg[339])
    assert cases[0]["half"] == halves[339] and len(cases[0]["nn_probs"]) == 99
    again = run_pipeline(patterns, eg, halves, out, checkpoint=str(ckpt), jobs=1, indices=[339],
                         progress=False)
    assert again == cases == read_cases(out)  # nothing assessed twice
    with (out / "cases.jsonl").open("a") as f:
        f.write('{"index": 7, "half"')  # a record cut short by an interrupted run
    assert read_cases(out) == cases
    resumed = run_pipeline(patterns, eg, halves, out, checkpoint=str(ckpt), jobs=1, indices=[339],
                           progress=False)
    assert resumed == cases and (out / "cases.jsonl").read_text().endswith("\n")
    # the run's agent is recorded; resuming with another one would mix two agents' cases
    with pytest.raises(ValueError, match=r"run.json: the cases there were made with config=\{\}; "
                                         r"this run has config=\{'index_cells': 3\}"):
        run_pipeline(patterns, eg, halves, out, checkpoint=str(ckpt), config={"index_cells": 3}, jobs=1,
                     indices=[339], progress=False)
    assert (out / RUN_FILE).is_file()


@pytest.mark.slow
def test_run_pipeline_scores_each_half_with_its_own_calibration(tmp_path, dev_set_path):
    from ratagent.model.calibration import Calibration
    from ratagent.model.inference import load
    from ratagent.testing import tiny_checkpoint
    from training.calibrate import network_scores
    from training.evaluate import load_dev_set

    patterns, eg = load_dev_set(dev_set_path)
    halves = dev_split()
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    i = 339
    other = "A" if halves[i] == "B" else "B"
    cals = {halves[i]: Calibration(7.0), other: Calibration(0.5)}
    cases = run_pipeline(patterns, eg, halves, tmp_path / "run", checkpoint=str(ckpt), calibrations=cals,
                         jobs=1, indices=[i], progress=False)
    expected = Calibration(7.0).probs(network_scores(load(str(ckpt)), [patterns[i]]))[0]
    np.testing.assert_allclose(cases[0]["nn_probs"], expected, atol=2e-6)
    with pytest.raises(ValueError, match=r"calibrations has none for half 'B' \(it has \['A'\]\)"):
        run_pipeline(patterns, eg, halves, tmp_path / "run2", checkpoint=str(ckpt),
                     calibrations={"A": Calibration()}, jobs=1, indices=[i], progress=False)


def test_half_calibrations_fit_each_half_on_the_other():
    from ratagent.crystallography import read_paper_prior
    from ratagent.model.calibration import fit_calibration
    from training.calibrate import cross_fitted_probs, half_calibrations

    rng = np.random.default_rng(3)
    eg = rng.integers(1, 100, 60)
    scores = rng.normal(size=(60, 99))
    scores[np.arange(60), eg - 1] += np.where(np.arange(60) < 30, 4.0, 1.0)  # half A is sharper
    halves = np.array(["A"] * 30 + ["B"] * 30)
    cals = half_calibrations(scores, eg, halves)
    on_b = fit_calibration(scores[30:], eg[30:] - 1, read_paper_prior())
    assert cals["A"].temperature == pytest.approx(on_b.temperature)
    assert cals["A"].prior_weight == pytest.approx(on_b.prior_weight)
    assert cals["A"].temperature > cals["B"].temperature  # fitted on B's weaker scores: warmer
    # the network's 2-fold figures score each half with the other half's calibration
    probs, fitted = cross_fitted_probs(scores, eg, halves=halves)
    np.testing.assert_allclose(probs[:30], cals["A"].probs(scores[:30]))
    np.testing.assert_allclose(probs[30:], cals["B"].probs(scores[30:]))
    assert [c.temperature for c in fitted] == [cals["A"].temperature, cals["B"].temperature]
    with pytest.raises(ValueError, match="at least two halves"):
        half_calibrations(scores, eg, np.full(60, "A"))
    with pytest.raises(ValueError, match=r"halves has shape \(59,\), expected \(60,\)"):
        half_calibrations(scores, eg, halves[:59])


def test_agent_overrides_take_each_fields_type():
    assert agent_overrides(["index_cells=3", "fit_indexed_family=false", "max_network_rank=none",
                            "min_accept_m20=35", "undecided_fitted=2"]) == {
        "index_cells": 3, "fit_indexed_family": False, "max_network_rank": None, "min_accept_m20": 35.0,
        "undecided_fitted": 2}
    for bad, message in [("index_cells", "expected NAME=VALUE"), ("m20=40", "AgentConfig has no field 'm20'"),
                         ("index_cells=two", "index_cells takes an integer, got 'two'"),
                         ("top_k=none", "top_k takes an integer"),
                         ("fit_indexed_family=maybe", "fit_indexed_family is true or false"),
                         ("index_cells=0", "index_cells must be a positive integer, got 0")]:
        with pytest.raises(ValueError, match=message):
            agent_overrides([bad])


def test_compare_lists_the_figures_and_every_pattern_that_moved():
    # EG 3 and 4 are monoclinic, 14 orthorhombic
    base = [_case(14, [14, 4], "accept"), _case(4, [3, 4], "flag", half="B"), _case(3, [3], "flag")]
    new = [_case(14, [14, 4], "accept"), _case(4, [4, 3], "flag", half="B"), _case(3, [14], "flag")]
    for i, (a, b) in enumerate(zip(base, new, strict=True)):
        a["index"] = b["index"] = i
    cmp = compare_cases(base, new)
    top1 = cmp["figures"]["whole set"]["top1"]
    assert (top1[0]["k"], top1[1]["k"]) == (2, 2)
    assert cmp["figures"]["half B"]["top1"][1]["k"] == 1
    assert [(c["index"], c["base"]["outcome"], c["new"]["outcome"]) for c in cmp["changed"]] == [
        (1, "right system", "right"), (2, "right", "wrong system")]
    text = format_comparison(cmp)
    assert "whole set (3): top1 2 → 2 (+0)" in text and "half B  truth EG 4 (monoclinic)" in text
    assert "median 1.00 → 1.00 s per pattern" in text
    with pytest.raises(ValueError, match=r"only in the first \[2\]"):
        compare_cases(base, new[:2])
    new[0]["eg"] = 15
    with pytest.raises(ValueError, match="pattern 0: true EG / half 14/A in the first run, 15/A"):
        compare_cases(base, new)


def test_group_interval_widens_as_near_duplicates_move_together():
    hits = [True] * 100 + [False] * 100
    assert group_interval(hits, range(200)) == pytest.approx(wilson(100, 200))  # each its own mineral
    clustered = np.repeat(np.arange(10), 20)  # ten minerals of twenty identical outcomes each
    assert group_interval(hits, clustered) == pytest.approx(wilson(5, 10))
    mixed = np.repeat(np.arange(100), 2)  # pairs, one right and one wrong: no clustering to see
    assert group_interval([True, False] * 100, mixed) == pytest.approx(wilson(100, 200))
    # all right: the spread cannot be estimated, so each group counts once
    assert group_interval([True] * 30, np.repeat(np.arange(6), 5)) == pytest.approx(wilson(6, 6))
    assert all(np.isnan(group_interval([], [])))
    with pytest.raises(ValueError, match="hits has 2 entries, groups 1"):
        group_interval([True, False], [0])


def test_report_carries_group_intervals_when_given_groups():
    cases = [_case(14, [14], "accept"), _case(4, [3], "flag"), _case(4, [4], "flag")]
    for i, c in enumerate(cases):
        c["index"] = i
    rep = pipeline_report(cases, groups=[5, 6, 6])
    assert set(rep["top1"]) >= {"ci95", "ci95_groups"}
    assert rep["accept_precision"]["ci95_groups"] == pytest.approx(list(wilson(1, 1)))
    assert "by group" in format_report({"whole set": rep})
    assert "counting the mineral groups" in results_markdown({"whole set": rep}, "cmd")
    assert "ci95_groups" not in pipeline_report(cases)["top1"]


def test_plot_pipeline_draws_every_report(tmp_path):
    cases = [_case(4, [4], "accept"), _case(14, [3], "flag"), _case(99, [99], "flag", refined=False),
             _case(62, [60], "flag", half="B")]
    reports = {"whole set": pipeline_report(cases),
               "half B, thresholds chosen on A (min_accept_m20=40.0)": pipeline_report(cases[3:])}
    path = plot_pipeline(reports, tmp_path / "out")
    assert path == tmp_path / "out" / "report.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no reports to plot"):
        plot_pipeline({}, tmp_path)


def test_compare_counts_the_mineral_groups_that_moved():
    # patterns 0 and 1 are near duplicates of one mineral: their gain is one group's
    base = [_case(4, [3], "flag"), _case(4, [3], "flag"), _case(14, [14], "flag"), _case(3, [3], "flag")]
    new = [_case(4, [4], "flag"), _case(4, [4], "flag"), _case(14, [15], "flag"), _case(3, [3], "flag")]
    for i, (a, b) in enumerate(zip(base, new, strict=True)):
        a["index"] = b["index"] = i
    moved = compare_cases(base, new, groups=[7, 7, 8, 9])["moves"]["whole set"]
    assert moved["top1"] == {"gained": 2, "lost": 1, "groups_up": 1, "groups_down": 1}
    assert moved["crystal_system"] == {"gained": 0, "lost": 0, "groups_up": 0, "groups_down": 0}
    alone = compare_cases(base, new)["moves"]["whole set"]["top1"]
    assert (alone["groups_up"], alone["groups_down"]) == (2, 1)
    text = format_comparison(compare_cases(base, new, groups=[7, 7, 8, 9]))
    assert "top1 +2 −1 (groups 1 up, 1 down)" in text
    with pytest.raises(ValueError, match="groups holds 3 patterns; the runs reach pattern 3"):
        compare_cases(base, new, groups=[7, 7, 8])


def test_compare_command_reads_both_runs_folders(tmp_path, capsys):
    import json

    from training.__main__ import main

    runs = {"base": [_case(4, [3, 4], "flag")], "new": [_case(4, [4, 3], "flag")]}
    (tmp_path / "base" / "pipeline").mkdir(parents=True)  # the --out of evaluate --pipeline
    (tmp_path / "new").mkdir()  # or its pipeline/ folder itself
    (tmp_path / "base" / "pipeline" / "cases.jsonl").write_text(json.dumps(runs["base"][0]) + "\n")
    (tmp_path / "new" / "cases.jsonl").write_text(json.dumps(runs["new"][0]) + "\n")
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "top1 0 → 1 (+1)" in out and "flag EG 3 (right system) → flag EG 4 (right)" in out
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "nothing")]) == 2
    assert "nothing: no cases.jsonl" in capsys.readouterr().err


def test_a_replayed_accept_reports_only_egs_fitted_in_its_cell():
    """As Agent._widened: another cell's EGs (no Pawley weight) stay out of the accepted set."""
    from ratagent.agent import AgentConfig
    from training.pipeline import _with_verdict

    case = _case(225, [225, 221, 191], "accept")
    case["candidates"] = [{"eg": 225, "delta_bic": 0.0, "pawley_weight": 0.9},
                          {"eg": 221, "delta_bic": 30.0, "pawley_weight": 0.1},
                          {"eg": 191, "delta_bic": 55.0, "pawley_weight": None}]
    config = AgentConfig(accept_set_delta_bic=60.0)
    assert _with_verdict(case, "accept", config)["indistinguishable"] == [225, 221]
    # cases stored without Pawley weights: the winning cell's fits, from meta["cell_fits"]
    for c in case["candidates"]:
        del c["pawley_weight"]
    case["meta"] = {"cell": [4.0] * 3 + [90.0] * 3, "fitted_order": [225, 221, 191],
                    "cell_fits": [{"cell": [4.0] * 3 + [90.0] * 3, "n_candidates": 2},
                                  {"cell": [3.0, 3.0, 5.0, 90.0, 90.0, 120.0], "n_candidates": 1}]}
    assert _with_verdict(case, "accept", config)["indistinguishable"] == [225, 221]
