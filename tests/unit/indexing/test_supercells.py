"""Superstructure lines too weak for the peak search, found in the residual profile."""

from __future__ import annotations

import numpy as np
import pytest

from ratagent.indexing import find_peaks, index, lines_from_cell, same_lattice
from ratagent.indexing.peaks import pseudo_voigt
from ratagent.indexing.supercells import PROFILE_CHANCE, background_rate, profile_evidence
from ratagent.patterns import CU_KA1_ANGSTROM, Pattern

#: P4/mmm, a = 5.0 Å, c = 7.0 Å; its l-even lines are those of the c/2 subcell.
TRUE = (5.0, 5.0, 7.0, 90.0, 90.0, 90.0)
SUB = (5.0, 5.0, 3.5, 90.0, 90.0, 90.0)
_FWHM = 0.08


def _pattern(weak_height: float, seed: int) -> tuple[Pattern, np.ndarray]:
    """A pattern of TRUE whose lines beyond SUB's have net height ``weak_height`` (counts).

    The subcell's lines: the first at 20000 counts, the others 2000–10000. Single
    wavelength, 2θ 10–90° in 0.01° steps, flat background of 300 counts, Poisson
    noise. Returns the pattern and the 2θ of the weak lines.
    """
    rng = np.random.default_rng(seed)
    x = np.arange(10.0, 90.0, 0.01)
    strong = lines_from_cell(SUB, 123, CU_KA1_ANGSTROM, two_theta_min_deg=10.0)
    every = lines_from_cell(TRUE, 123, CU_KA1_ANGSTROM, two_theta_min_deg=10.0)
    weak = every[np.abs(every[:, None] - strong[None, :]).min(axis=1) > 0.02]
    area_per_height = _FWHM * 1.06  # pseudo-Voigt, η = 0.5
    y = np.full_like(x, 300.0)
    heights = np.concatenate([[20000.0], rng.uniform(2000, 10000, len(strong) - 1)])
    for t, h in zip(strong, heights, strict=True):
        y += pseudo_voigt(x, t, h * area_per_height, _FWHM, 0.5)
    for t in weak:
        y += pseudo_voigt(x, t, weak_height * area_per_height, _FWHM, 0.5)
    return Pattern(x, rng.poisson(y).astype(float), CU_KA1_ANGSTROM), weak


def test_residual_filter_is_unit_noise_away_from_lines_and_rises_at_weak_ones():
    pat, weak = _pattern(45.0, seed=0)
    peaks = find_peaks(pat)
    r = peaks.residual
    assert r is not None and r.fwhm_deg == pytest.approx(_FWHM, rel=0.3)
    every = np.concatenate([weak, peaks.two_theta])
    far = np.abs(r.two_theta[:, None] - every[None, :]).min(axis=1) > 5 * _FWHM
    assert 0.8 < np.nanstd(r.snr[far]) < 1.25
    assert abs(np.nanmean(r.snr[far])) < 0.15
    # the weak lines are below the search's threshold, yet stand out in the residual
    found = np.abs(weak[:, None] - peaks.two_theta[None, :]).min(axis=1) < 0.03
    assert found.mean() < 0.5
    assert np.median(r.at(weak[~found])) > 2.0


def test_weak_superstructure_lines_promote_the_supercell():
    pat, _ = _pattern(45.0, seed=1)
    res = index(find_peaks(pat))
    best = res.candidates[0]
    assert same_lattice(best.cell, TRUE, 1e-3, best.centring, "P"), res
    assert best.profile_chance is not None and best.profile_chance <= PROFILE_CHANCE
    assert "lines beyond the peaks" in best.describe()
    # the subcell, which indexes the same peaks, follows it
    assert same_lattice(res.candidates[1].cell, SUB, 1e-3, res.candidates[1].centring, "P")


@pytest.mark.parametrize("seed", range(4))
def test_no_supercell_without_its_lines(seed):
    pat, _ = _pattern(0.0, seed=seed)
    res = index(find_peaks(pat))
    assert same_lattice(res.candidates[0].cell, SUB, 1e-3, res.candidates[0].centring, "P"), res
    assert all(c.profile_chance is None for c in res.top(3))


def test_profile_evidence_counts_lines_against_the_background_rate():
    pat, weak = _pattern(0.0, seed=7)
    peaks = find_peaks(pat)
    blocked = np.sort(peaks.two_theta)
    rate = background_rate(peaks.residual, blocked)
    assert 0 < rate < 0.01  # Poisson noise alone: P(N(0, 1) > 3) = 0.13 %
    k, n, chance = profile_evidence(peaks.residual, weak, blocked)
    assert n >= 10 and k <= 1 and chance > 0.01
    pat, weak = _pattern(60.0, seed=7)
    peaks = find_peaks(pat)
    k, n, chance = profile_evidence(peaks.residual, weak, np.sort(peaks.two_theta))
    assert k >= 4 and chance < 1e-6


def test_refine_cell_takes_a_given_centring_and_names_a_bad_one():
    from ratagent.indexing.refine import refine_cell, system_params

    cell = (4.0, 4.0, 6.0, 90.0, 90.0, 90.0)
    tth = lines_from_cell(cell, 139, CU_KA1_ANGSTROM)[:20]  # I4/mmm
    p0 = system_params("tetragonal", cell)
    found = refine_cell("tetragonal", p0, tth, CU_KA1_ANGSTROM, 0.03, 0.3)
    prim = refine_cell("tetragonal", p0, tth, CU_KA1_ANGSTROM, 0.03, 0.3, centring="P")
    assert found.centring == "I" and prim.centring == "P"
    assert prim.n_indexed == found.n_indexed and prim.n_calc > found.n_calc
    with pytest.raises(ValueError, match="'F'"):
        refine_cell("tetragonal", p0, tth, CU_KA1_ANGSTROM, 0.03, 0.3, centring="F")


def test_a_promoted_lattice_found_with_higher_symmetry_keeps_that_description():
    """A rhombohedral supercell that is metrically cubic F is reported as the cubic F cell."""
    import dataclasses
    import math

    from ratagent.indexing.indexing import _promote_supercells
    from ratagent.indexing.refine import refine_cell, system_params

    a = 8.0
    tth = lines_from_cell((a, a, a, 90, 90, 90), 225, CU_KA1_ANGSTROM)[:20]  # Fm-3m
    wl = CU_KA1_ANGSTROM
    cubic = refine_cell("cubic", system_params("cubic", (a, a, a, 90, 90, 90)), tth, wl, 0.03, 0.3)
    prim = refine_cell(
        "cubic", system_params("cubic", (a, a, a, 90, 90, 90)), tth, wl, 0.03, 0.3, centring="P"
    )
    hexa = (a / math.sqrt(2), a / math.sqrt(2), a * math.sqrt(3), 90, 90, 120)
    rhomb = refine_cell("hexagonal", system_params("hexagonal", hexa), tth, wl, 0.03, 0.3, centring="R")
    assert cubic.centring == "F" and rhomb.crystal_system == "trigonal"
    assert same_lattice(rhomb.cell, cubic.cell, 1e-3, "R", "F")
    found = dataclasses.replace(rhomb, profile_chance=1e-5)
    out = _promote_supercells([prim, cubic], lambda c: found if c is prim else None)
    assert [c.crystal_system for c in out] == ["cubic", "cubic"]
    assert out[0].centring == "F" and out[0].profile_chance == 1e-5 and out[1] is prim
