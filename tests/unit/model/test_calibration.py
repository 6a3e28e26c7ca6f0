"""Calibration fit, EGPosterior and metrics, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ratagent.model.calibration import (
    Calibration,
    EGPosterior,
    expected_calibration_error,
    fit_calibration,
    negative_log_likelihood,
    top_k_accuracy,
)

# four hand-made posteriors over three classes, with their targets
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # confident, right
        [0.60, 0.30, 0.10],  # wrong (target 1 is second)
        [0.20, 0.70, 0.10],  # right
        [0.40, 0.35, 0.25],  # wrong (target 2 is last)
    ]
)
TARGETS = np.array([0, 1, 1, 2])


def _sample(rng: np.random.Generator, log_p: np.ndarray) -> np.ndarray:
    p = np.exp(log_p - log_p.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (p.cumsum(1) < rng.random((p.shape[0], 1))).sum(1)


def test_top_k_accuracy_by_hand():
    assert top_k_accuracy(PROBS, TARGETS, k=1) == 0.5
    assert top_k_accuracy(PROBS, TARGETS, k=2) == 0.75
    assert top_k_accuracy(PROBS, TARGETS, k=3) == 1.0


def test_nll_by_hand():
    expected = -(math.log(0.9) + math.log(0.3) + math.log(0.7) + math.log(0.25)) / 4
    assert negative_log_likelihood(PROBS, TARGETS) == pytest.approx(expected, rel=1e-12)


def test_ece_by_hand():
    # two bins: (0, .5] holds row 4 (conf .4, wrong): |0 − .4| · 1/4 = .1;
    # (.5, 1] holds rows 1–3 (mean conf 2.2/3, accuracy 2/3): |2/3 − 2.2/3| · 3/4 = .05
    assert expected_calibration_error(PROBS, TARGETS, n_bins=2) == pytest.approx(0.15)
    # ten bins: every row alone in its bin: (.1 + .6 + .3 + .4) / 4
    assert expected_calibration_error(PROBS, TARGETS, n_bins=10) == pytest.approx(0.35)


def test_perfectly_calibrated_predictions_have_zero_ece():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1]), n_bins=5) == 0.0


@pytest.mark.parametrize(
    ("targets", "match"),
    [(np.array([0, 1, 3, 0]), "0-based"), (np.array([0.0, 1, 1, 2]), "integers"), (np.array([0]), "shape")],
)
def test_metrics_reject_bad_targets(targets, match):
    with pytest.raises(ValueError, match=match):
        top_k_accuracy(PROBS, targets)


def test_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, size=(20000, 20))
    targets = _sample(rng, true_logits)
    cal = fit_calibration(3.0 * true_logits, targets)  # a network three times too confident
    assert cal.temperature == pytest.approx(3.0, rel=0.05)
    assert cal.prior_weight == 0.0
    calibrated = cal.probs(3.0 * true_logits)
    raw = Calibration().probs(3.0 * true_logits)
    assert negative_log_likelihood(calibrated, targets) < negative_log_likelihood(raw, targets)
    assert expected_calibration_error(calibrated, targets) < 0.02


def test_fit_recovers_temperature_and_prior_weight():
    rng = np.random.default_rng(1)
    log_prior = np.log(rng.dirichlet(np.full(20, 0.7)))
    likelihood = rng.normal(0.0, 1.5, size=(20000, 20))
    targets = _sample(rng, likelihood + log_prior)  # the truth: likelihood × prior
    cal = fit_calibration(2.0 * likelihood, targets, log_prior)
    assert cal.temperature == pytest.approx(2.0, rel=0.05)
    assert cal.prior_weight == pytest.approx(1.0, abs=0.05)


def test_calibration_formula_and_round_trip():
    log_prior = np.log(np.array([0.5, 0.25, 0.25]))
    cal = Calibration(temperature=2.0, prior_weight=0.5, log_prior=log_prior)
    scores = np.array([[2.0, 0.0, -2.0]])
    z = scores[0] / 2.0 + 0.5 * log_prior
    np.testing.assert_allclose(cal.probs(scores)[0], np.exp(z) / np.exp(z).sum())
    back = Calibration.from_dict(cal.to_dict())
    np.testing.assert_allclose(back.probs(scores), cal.probs(scores))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"prior_weight": -1.0, "log_prior": np.zeros(3)}, "prior_weight"),
        ({"prior_weight": 1.0}, "needs a log_prior"),
    ],
)
def test_calibration_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Calibration(**kwargs)


def test_posterior_top_argmax_entropy():
    probs = np.full(99, 0.5 / 97)
    probs[3] = 0.3  # EG 4
    probs[80] = 0.2  # EG 81
    post = EGPosterior(probs, "abc")
    assert post.top(2) == [(4, pytest.approx(0.3)), (81, pytest.approx(0.2))]
    assert post.top(3)[2][0] == 1  # ties broken by the lower EG number
    assert post.argmax == 4
    assert post.prob(81) == pytest.approx(0.2)
    expected = -(0.3 * math.log(0.3) + 0.2 * math.log(0.2) + 0.5 * math.log(0.5 / 97))
    assert post.entropy == pytest.approx(expected)
    assert EGPosterior(np.full(99, 1 / 99), "u").entropy == pytest.approx(math.log(99))
    assert post.to_dict(2)["top"][0] == {"eg": 4, "probability": pytest.approx(0.3)}


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.full(99, 0.02), "sum to 1"),
        (np.array([1.5, -0.5]), "non-negative"),
        (np.ones((2, 2)) / 4, "one-dimensional"),
    ],
)
def test_posterior_rejects_bad_probabilities(probs, match):
    with pytest.raises(ValueError, match=match):
        EGPosterior(probs, "x")
    with pytest.raises(ValueError, match="EG number"):
        EGPosterior(np.full(99, 1 / 99), "x").prob(0)
