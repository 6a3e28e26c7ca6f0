"""Frames without diffraction signal are named as such, never ranked."""

from __future__ import annotations

import numpy as np
import pytest

from ratagent.patterns import Pattern, signal_problem

X = np.linspace(5.0, 90.0, 8501)


def _peaks(rng, background=50.0):
    y = background * (1 + 0.5 * np.exp(-X / 20))
    for centre, height in ((20.0, 400.0), (33.5, 250.0), (47.1, 120.0)):
        y = y + height * np.exp(-0.5 * ((X - centre) / 0.05) ** 2)
    return rng.poisson(y).astype(float)


@pytest.mark.parametrize(
    ("intensity", "words"),
    [
        (np.zeros(X.size), "constant"),
        (np.full(X.size, 7.0), "constant"),
        (-_peaks(np.random.default_rng(0)), "sign-flipped"),
        (np.random.default_rng(1).poisson(5.0 * (1 + 0.5 * np.exp(-X / 20)), X.size).astype(float),
         "no peak above the noise"),
        (np.random.default_rng(2).normal(1e4, 100.0, X.size), "no peak above the noise"),
    ],
    ids=["all zero", "constant", "sign flipped", "Poisson background", "Gaussian background"],
)
def test_frames_without_signal_are_named(intensity, words):
    assert words in signal_problem(Pattern(X, intensity, 1.5406))


def test_a_weak_pattern_with_peaks_has_signal():
    assert signal_problem(Pattern(X, _peaks(np.random.default_rng(3)), 1.5406)) is None


def test_every_measured_dev_pattern_has_signal(rruff_dev):
    """The measured RRUFF patterns are the reference for what real signal looks like."""
    problems = {i: signal_problem(Pattern(rruff_dev["two_theta"], y, 1.5406))
                for i, y in enumerate(rruff_dev["intensity"])}
    assert {i: p for i, p in problems.items() if p} == {}


def test_background_check_can_be_left_out():
    background = np.random.default_rng(4).poisson(20.0, X.size).astype(float)
    assert signal_problem(Pattern(X, background, 1.5406), min_peak_sigma=None) is None
