"""Calibration of a trained checkpoint: temperature T and prior weight λ (two numbers).

The network never sees the measured dev set in training; calibration is the only use of
it besides evaluation. So that the reported figures are not fitted on the patterns they
score, :func:`cross_fitted_probs` fits (T, λ) on one half of the dev set and applies them
to the other half, and the other way round (2-fold: on the fixed mineral-grouped halves of
:mod:`training.devsplit` where given, as the agent's whole path is reported, else on random
folds); the shipped calibration is then fitted on all of it. :func:`half_calibrations`
gives each half the calibration fitted on the others.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ratagent.crystallography import read_paper_prior
from ratagent.model.calibration import Calibration, fit_calibration
from ratagent.model.checkpoint import load_checkpoint, save
from ratagent.model.inference import Classifier
from ratagent.patterns import Pattern
from training.card import render_card

__all__ = ["calibrate_checkpoint", "cross_fitted_probs", "half_calibrations", "network_scores"]

logger = logging.getLogger(__name__)


def network_scores(classifier: Classifier, patterns: list[Pattern]) -> np.ndarray:
    """Uncalibrated fused scores ℓ of patterns, shape (n, 99)."""
    intensity, mask = classifier.resample(patterns)
    return classifier.scores(intensity, mask)


def cross_fitted_probs(
    scores: np.ndarray, eg_true: np.ndarray, *, halves: np.ndarray | None = None, folds: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, list[Calibration]]:
    """Posteriors where each pattern's (T, λ) was fitted on the other folds only.

    ``halves``: one fold label per pattern (the shipped dev set's mineral-grouped halves,
    :func:`training.devsplit.dev_split`, so that near duplicates of one mineral never
    calibrate each other); without it, ``folds`` random folds drawn with ``seed``.
    Returns the posteriors and the calibrations, one per fold in sorted label order.
    """
    if halves is None:
        if folds < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")
        halves = np.random.default_rng(seed).permutation(len(eg_true)) % folds
    labels = np.asarray(halves).astype(str)
    cals = half_calibrations(scores, eg_true, labels)
    probs = np.empty_like(scores, dtype=float)
    for h, cal in cals.items():
        probs[labels == h] = cal.probs(scores[labels == h])
    return probs, list(cals.values())


def half_calibrations(scores: np.ndarray, eg_true: np.ndarray, halves: np.ndarray) -> dict[str, Calibration]:
    """For each half, the (T, λ) fitted on the patterns of every other half.

    ``halves``: one label per pattern (e.g. ``"A"``, ``"B"``). A pattern is then scored
    with a calibration that never saw its label.

    Raises
    ------
    ValueError
        Fewer than two halves, or ``halves`` not one label per pattern.
    """
    labels = np.asarray(halves).astype(str)
    if labels.shape != (len(eg_true),):
        raise ValueError(f"halves has shape {labels.shape}, expected ({len(eg_true)},): one label a pattern")
    names = sorted(set(labels.tolist()))
    if len(names) < 2:
        raise ValueError(f"cross-fitting needs at least two halves, got {names}")
    eg = np.asarray(eg_true)
    return {h: fit_calibration(scores[labels != h], eg[labels != h] - 1, read_paper_prior()) for h in names}


def calibrate_checkpoint(
    checkpoint: str | Path, patterns: list[Pattern], eg_true: np.ndarray, out: str | Path | None = None
) -> tuple[Calibration, np.ndarray, np.ndarray]:
    """Fit (T, λ) of a checkpoint on measured patterns and write it back (or to ``out``).

    Returns the fitted calibration, the cross-fitted posteriors (for honest reporting)
    and the raw scores.
    """
    ckpt = load_checkpoint(checkpoint)
    clf = Classifier(ckpt.model, None, ckpt.model_id)
    scores = network_scores(clf, patterns)
    cross, folds = cross_fitted_probs(scores, eg_true)
    cal = fit_calibration(scores, eg_true - 1, read_paper_prior())
    logger.info(
        "calibration: T=%.3g λ=%.3g (folds: %s)",
        cal.temperature,
        cal.prior_weight,
        ", ".join(f"T={c.temperature:.3g} λ={c.prior_weight:.3g}" for c in folds),
    )
    training = dict(ckpt.training)
    training["calibration"] = {
        "data": "training/data/rruff_dev.npz (measured; calibration only, 2 parameters)",
        "n": int(len(eg_true)),
        "temperature": cal.temperature,
        "prior_weight": cal.prior_weight,
        "prior": "paper_eg_prior.csv",
    }
    save(
        ckpt.model,
        cal,
        Path(out) if out else ckpt.path,
        training=training,
        overwrite=True,
        card=lambda mid: render_card(mid, training, training["calibration"]),
    )
    return cal, cross, scores
