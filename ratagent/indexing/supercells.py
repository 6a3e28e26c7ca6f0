"""Supercells of a found cell that index its unindexed lines (pseudo-symmetry, weak superstructure).

When the atoms of a structure nearly repeat on a finer lattice, the strong lines belong
to a subcell and only weak lines show the true cell. A subcell then has the better de
Wolff M20 (fewer calculated lines) and leaves those weak lines unindexed. As TREOR does
after a solution is found (Werner et al. 1985: "test of doubled axes"), the axes of the
leading cells are multiplied by small factors within their lattice system — 2 and 3
along the principal axes, √2 (tetragonal) and √3 (hexagonal) in the basal plane — each
supercell is refined from scratch (:func:`~ratagent.indexing.refine.refine_cell`, which
also finds its centring), and a supercell that indexes at least two more lines without
losing a strong one and stays convincing is ranked just before its subcell, unless as
many lines would be indexed by chance: a large cell has a calculated line within the
tolerance of a fraction p ≈ 2·tol·N_calc / (2θ range) of the pattern, so of the u lines
its subcell leaves out it indexes k by chance with the binomial probability
P(X ≥ k | u, p), which must stay below ``CHANCE_LEVEL`` (an impurity's lines otherwise
promote a big supercell of the right cell).

Superstructure lines too weak for the peak search (2–5 σ each) are looked for in the
profile instead (:func:`profile_supercell`), as one reads the difference curve of a Le
Bail fit. The residual of the fitted peaks, matched-filtered
(:class:`~ratagent.indexing.peaks.ResidualFilter`), is read at the n positions where a
finer reciprocal lattice (a supercell, or the primitive lattice of a centred cell)
predicts lines that neither its parent nor the peak list has; k of them show a line
(residual > 3 σ). The chance of that is the binomial P(X ≥ k | n, r), where r is the
fraction of all positions of the pattern, away from the lines accounted for, that show
one (noise, the impurity's weak lines, misfits of strong peaks: 0.1–2 %, measured on
each pattern). The lattice with the smallest chance is taken when it is below
``PROFILE_CHANCE``. (A plain sum of the residual over all n positions is swamped by
the many positions of a large cell whose lines are absent; a sum over the positions
above 2 σ, scaled by the same sum at shifted positions, put a cell among the first
three in 20 of 500 simulated cases (seed 0), a wrong one in 16: its null distribution
is far from normal.)
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
from scipy.stats import binom

from ratagent.indexing.merit import centring_mask, coincidence_chance
from ratagent.indexing.peaks import ResidualFilter
from ratagent.indexing.refine import (
    TRICLINIC_CALC_PER_LINE,
    CandidateCell,
    inv_d2_of_two_theta,
    nearest_index,
    refine_cell,
    reflections_of_form,
    setting_system,
    system_params,
    two_theta_of_inv_d2,
)
from ratagent.indexing.trials import SYSTEMS

__all__ = [
    "AXIS_FACTORS",
    "CHANCE_LEVEL",
    "PROFILE_CHANCE",
    "adds_only_chance",
    "background_rate",
    "better_supercell",
    "by_chance",
    "profile_evidence",
    "profile_supercell",
    "strong_supercells",
]

#: Largest chance that the lines a finer lattice shows in the residual profile are
#: background (module docstring); some 10–40 lattices are tested per cell. On 500
#: held-out simulated patterns (``benchmarks/indexing_accuracy.py --seed 1``) it put a
#: cell among the first three in 6, the right lattice in 2; on the 454 RRUFF patterns it
#: made the best cell of one (right: cubic F, a = 11.07 Å).
PROFILE_CHANCE = 1e-3
#: A position shows a line when the residual significance there exceeds this (σ).
_COUNTED_SNR = 3.0
#: Fewest extra positions a profile test rests on.
_MIN_POSITIONS = 4

#: Largest probability that the extra lines a supercell indexes are indexed by chance.
CHANCE_LEVEL = 0.01

#: Largest chance of the lines a smaller supercell gains for it to stand for a larger
#: one that adds only chance lines to it (:func:`_finest_sufficient`).
_INNER_CHANCE = 0.1

#: Each axis doubled or not (identity excluded).
_DOUBLINGS = tuple(f for f in itertools.product((1.0, 2.0), repeat=3) if f != (1.0, 1.0, 1.0))
#: Multipliers of (a, b, c) tried per lattice system (identity excluded).
AXIS_FACTORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "cubic": ((2.0, 2.0, 2.0),),
    "tetragonal": tuple(
        (s, s, t) for s in (1.0, math.sqrt(2.0), 2.0) for t in (1.0, 2.0, 3.0) if (s, t) != (1.0, 1.0)
    ),
    "hexagonal": tuple(
        (s, s, t) for s in (1.0, math.sqrt(3.0), 2.0) for t in (1.0, 2.0, 3.0) if (s, t) != (1.0, 1.0)
    ),
    "orthorhombic": _DOUBLINGS,
    "monoclinic": _DOUBLINGS,
    # a doubled triclinic subcell may be the true (often monoclinic C) cell: simulated
    # diopside, whose half-volume subcell (3.30, 5.25, 6.60 Å) indexes every strong line;
    # kept only within TRICLINIC_CALC_PER_LINE, as free doubled cells catch chance lines
    "triclinic": _DOUBLINGS,
}


def by_chance(sup: CandidateCell, n_out: int, n_gained: int, tth: np.ndarray, tol_deg: float) -> float:
    """P(X ≥ n_gained) of n_out random lines landing on calculated lines of ``sup``."""
    return coincidence_chance(n_out, n_gained, sup.n_calc, float(tth[-1] - tth[0]), tol_deg)


def _keeps(sup: CandidateCell | None, cand: CandidateCell, min_m20: float, gained: int = 0) -> bool:
    """Whether supercell ``sup`` indexes ``gained`` lines more than ``cand``, no more strong
    ones unindexed, with M20 ≥ ``min_m20``."""
    return (
        sup is not None
        and sup.n_indexed >= cand.n_indexed + gained
        and sup.n_unindexed_strong <= cand.n_unindexed_strong
        and sup.m20 >= min_m20
    )


def _refined_supercells(
    cand: CandidateCell, tth: np.ndarray, wl: float, tol_deg: float, max_zero_deg: float
) -> list[CandidateCell]:
    """``cand``'s supercells of :data:`AXIS_FACTORS`, each refined from scratch, that
    index at least one line more and no more strong lines unindexed; in its own setting
    (hexagonal axes for a rhombohedral lattice)."""
    system = setting_system(cand.crystal_system)
    out = []
    for factors in AXIS_FACTORS[system]:
        try:
            p0 = system_params(system, cand.cell, factors)
        except ValueError:
            continue
        sup = refine_cell(system, p0, tth, wl, tol_deg, max_zero_deg, cand.weak, sigma_deg=cand.sigma_deg)
        if system == "triclinic" and sup is not None and sup.n_calc > TRICLINIC_CALC_PER_LINE * sup.n_lines:
            continue
        if _keeps(sup, cand, 0.0, gained=1):
            out.append(sup)
    return out


def better_supercell(
    cand: CandidateCell,
    tth: np.ndarray,
    wl: float,
    tol_deg: float,
    max_zero_deg: float,
    min_m20: float,
) -> CandidateCell | None:
    """The supercell of ``cand`` that best indexes its unindexed lines, if one does (module docstring).

    The candidate's own setting is used: hexagonal axes for a rhombohedral lattice.
    """
    if cand.n_unindexed < 2:
        return None
    tried = _refined_supercells(cand, tth, wl, tol_deg, max_zero_deg)
    best: CandidateCell | None = None
    for sup in tried:
        if sup.m20 < min_m20 or sup.n_indexed < cand.n_indexed + 2:
            continue
        if by_chance(sup, cand.n_unindexed, sup.n_indexed - cand.n_indexed, tth, tol_deg) > CHANCE_LEVEL:
            continue
        if best is None or (sup.n_indexed, sup.m20) > (best.n_indexed, best.m20):
            best = sup
    return None if best is None else _finest_sufficient(cand, best, tried, tth, tol_deg)


def strong_supercells(
    cand: CandidateCell, tth: np.ndarray, wl: float, tol_deg: float, max_zero_deg: float, min_m20: float
) -> list[CandidateCell]:
    """Supercells of ``cand`` that index every line it does and a strong line it leaves out.

    One line is too few for :func:`better_supercell`'s chance test, but a strong line
    left out costs a cell more in the ranking than a weak one, and a supercell that
    indexes it goes to the ranking beside ``cand``, where its extra calculated lines
    cost it M20 (simulated Fd-3c, a = 14.35 Å: its 355 line at 6 %, the only
    all-odd-index line among the first 20, left out by cubic P, a = 7.17 Å, which
    indexes every other line of the phase; the F cell was never solved from the lines).
    Those with M20 ≥ ``min_m20``.
    """
    if cand.n_unindexed_strong == 0:
        return []
    return [
        sup
        for sup in _refined_supercells(cand, tth, wl, tol_deg, max_zero_deg)
        if sup.n_unindexed_strong < cand.n_unindexed_strong
        and np.all(sup.indexed | ~cand.indexed)
        and sup.m20 >= min_m20
    ]


def adds_only_chance(sup: CandidateCell, m: CandidateCell, tth: np.ndarray, tol_deg: float) -> bool:
    """Whether ``sup`` is a supercell of ``m`` whose lines beyond ``m``'s chance explains.

    A supercell here: an integer ratio ≥ 2 of volumes per lattice point, and every line
    ``m`` indexes indexed by ``sup`` too; its further lines are chance when
    :func:`by_chance` puts them above ``CHANCE_LEVEL`` at ``sup``'s density of lines,
    and none of them is strong (an impurity's lines are weak; measured RRUFF pattern of
    SG 188, a = 6.639 Å: c = 9.754 Å indexes the two strong lines that c = 4.877 Å
    leaves out, chance 0.03 by their count alone).
    """
    ratio = sup.primitive_volume / m.primitive_volume
    if ratio < 1.5 or abs(ratio - round(ratio)) > 0.02 * ratio or not np.all(sup.indexed | ~m.indexed):
        return False
    if sup.n_unindexed_strong < m.n_unindexed_strong:
        return False
    gained = sup.n_indexed - m.n_indexed
    return gained == 0 or by_chance(sup, m.n_unindexed, gained, tth, tol_deg) > CHANCE_LEVEL


def _finest_sufficient(
    cand: CandidateCell, sup: CandidateCell, tried: list[CandidateCell], tth: np.ndarray, tol_deg: float
) -> CandidateCell:
    """A cell of ``tried`` between ``cand`` and its supercell ``sup`` that ``sup`` beats only by chance.

    The chance test of :func:`better_supercell` weighs all the lines a supercell gains at
    once; part of them may come from a smaller supercell within it, the rest by chance
    at the larger cell's density of lines (simulated hexagonal P, a = 5.53, c = 5.82 Å,
    found as c = 2.91 Å: c doubled indexes 2 of the 6 lines left out, chance 0.011; a
    and c doubled 3, chance 0.008, with 3 times the calculated lines). A cell ``m`` of
    ``tried`` that ``sup`` extends only by chance (:func:`adds_only_chance`) and whose own
    gain over ``cand`` is unlikely by chance (≤ ``_INNER_CHANCE``: one line of several
    left out is not) stands for it; the one indexing the most lines.
    """
    inner = [
        m
        for m in tried
        if by_chance(m, cand.n_unindexed, m.n_indexed - cand.n_indexed, tth, tol_deg) <= _INNER_CHANCE
        and adds_only_chance(sup, m, tth, tol_deg)
    ]
    if not inner:
        return sup
    return max(inner, key=lambda m: (m.n_indexed, -m.primitive_volume, m.m20))


def _positions(
    name: str,
    cell: tuple[float, ...],
    factors: tuple[float, float, float],
    wl: float,
    q_max: float,
) -> tuple[np.ndarray, np.ndarray]:
    """hkl and 2θ (degrees, ascending, no zero shift) of ``cell``'s axes times ``factors``."""
    full = SYSTEMS[name].matrix @ system_params(name, cell, factors)
    hkl, q = reflections_of_form(full, q_max)
    return hkl, two_theta_of_inv_d2(q, wl)


def _near(t: np.ndarray, ref: np.ndarray, tol: float) -> np.ndarray:
    """Whether each of ``t`` lies within ``tol`` of a value of sorted ``ref``."""
    if len(ref) == 0:
        return np.zeros(len(t), dtype=bool)
    return np.abs(ref[nearest_index(ref, t)] - t) <= tol


def _values(residual: ResidualFilter, t: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """The residual significance at the positions ``t`` not within 1 FWHM of ``blocked``.

    Positions within ½ FWHM of each other are one line (the first is taken); positions
    off the filtered range are left out.
    """
    w = residual.fwhm_deg
    t = np.sort(t[~_near(t, blocked, w)])
    if len(t):
        t = t[np.concatenate([[True], np.diff(t) > 0.5 * w])]
    v = residual.at(t)
    return v[np.isfinite(v)]


def background_rate(residual: ResidualFilter, blocked: np.ndarray) -> float:
    """Fraction of 2θ positions, 1 FWHM apart and not within 1 FWHM of ``blocked``, above ``_COUNTED_SNR``.

    The chance that a position where no line is expected shows one anyway: noise, the
    impurity's weak lines, misfits of strong peaks. (k + 1)/(n + 2), never 0.
    """
    w = residual.fwhm_deg
    grid = np.arange(residual.two_theta[0], residual.two_theta[-1], w)
    v = _values(residual, grid, blocked)
    return (np.count_nonzero(v > _COUNTED_SNR) + 1.0) / (len(v) + 2.0)


def profile_evidence(
    residual: ResidualFilter, extra: np.ndarray, blocked: np.ndarray, rate: float | None = None
) -> tuple[int, int, float]:
    """(k, n, chance): k of the n tested positions ``extra`` (2θ) show a line, and its chance.

    ``blocked`` (sorted 2θ): lines already accounted for (the parent cell's, the peaks
    found), within 1 FWHM of which a position is not tested. A position shows a line
    when the residual significance there exceeds ``_COUNTED_SNR``; the chance is the
    binomial P(X ≥ k | n, rate), ``rate`` from :func:`background_rate` when not given.
    """
    v = _values(residual, extra, blocked)
    k, n = int(np.count_nonzero(v > _COUNTED_SNR)), len(v)
    if rate is None:
        rate = background_rate(residual, blocked)
    return k, n, float(binom.sf(k - 1, n, rate)) if k > 0 else 1.0


def profile_supercell(
    cand: CandidateCell,
    residual: ResidualFilter,
    peaks_tth: np.ndarray,
    tth: np.ndarray,
    wl: float,
    tol_deg: float,
    max_zero_deg: float,
    min_m20: float,
) -> CandidateCell | None:
    """The finer reciprocal lattice of ``cand`` whose extra lines the residual profile shows, if one does.

    Tried: the supercells of :data:`AXIS_FACTORS` and the cell itself, each with every
    centring of its system, that keep every line of ``cand`` and add some
    (module docstring). The lattice least likely to show its lines by chance, if below
    ``PROFILE_CHANCE``, is refined on the lines ``tth`` with that centring; it is
    returned when it indexes at least the lines ``cand`` does, no more strong ones
    unindexed, with M20 ≥ ``min_m20``, and carries that chance (``profile_chance``).
    ``peaks_tth``: every peak found.
    """
    system = setting_system(cand.crystal_system)
    t_max = float(residual.two_theta[-1])
    q_max = float(inv_d2_of_two_theta(np.array([min(t_max, 179.0)]), wl)[0])
    z0 = cand.zero_shift_deg
    hkl_p, t_p = _positions(system, cand.cell, (1.0, 1.0, 1.0), wl, q_max)
    parent = np.unique(t_p[centring_mask(hkl_p, cand.centring)]) + z0
    blocked = np.unique(np.concatenate([parent, np.asarray(peaks_tth, dtype=float)]))
    rate = background_rate(residual, blocked)
    best: tuple[float, tuple[float, float, float], str] | None = None
    for factors in ((1.0, 1.0, 1.0), *AXIS_FACTORS[system]):
        try:
            hkl, t = _positions(system, cand.cell, factors, wl, q_max)
        except ValueError:
            continue
        for centring in SYSTEMS[system].centrings:
            lines = np.unique(t[centring_mask(hkl, centring)]) + z0
            if not np.all(_near(parent, lines, 1e-5)):
                continue  # not a finer reciprocal lattice: it loses lines of the parent
            extra = lines[~_near(lines, parent, 1e-5)]
            if len(extra) < _MIN_POSITIONS:
                continue
            _, n, chance = profile_evidence(residual, extra, blocked, rate)
            if n >= _MIN_POSITIONS and chance <= PROFILE_CHANCE and (best is None or chance < best[0]):
                best = (chance, factors, centring)
    if best is None:
        return None
    chance, factors, centring = best
    sup = refine_cell(
        system,
        system_params(system, cand.cell, factors),
        tth,
        wl,
        tol_deg,
        max_zero_deg,
        cand.weak,
        centring=centring,
        sigma_deg=cand.sigma_deg,
    )
    if not _keeps(sup, cand, min_m20):
        return None
    return dataclasses.replace(sup, profile_chance=chance)
