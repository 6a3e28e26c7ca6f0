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
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import binom

from ratagent.indexing.refine import CandidateCell, refine_cell, system_params

__all__ = ["AXIS_FACTORS", "CHANCE_LEVEL", "better_supercell", "by_chance"]

#: Largest probability that the extra lines a supercell indexes are indexed by chance.
CHANCE_LEVEL = 0.01

#: Multipliers of (a, b, c) tried per lattice system (identity excluded).
AXIS_FACTORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "cubic": ((2.0, 2.0, 2.0),),
    "tetragonal": tuple(
        (s, s, t) for s in (1.0, math.sqrt(2.0), 2.0) for t in (1.0, 2.0, 3.0) if (s, t) != (1.0, 1.0)
    ),
    "hexagonal": tuple(
        (s, s, t) for s in (1.0, math.sqrt(3.0), 2.0) for t in (1.0, 2.0, 3.0) if (s, t) != (1.0, 1.0)
    ),
    "orthorhombic": tuple(f for f in itertools.product((1.0, 2.0), repeat=3) if f != (1.0, 1.0, 1.0)),
    "monoclinic": tuple(f for f in itertools.product((1.0, 2.0), repeat=3) if f != (1.0, 1.0, 1.0)),
}


def by_chance(sup: CandidateCell, n_out: int, n_gained: int, tth: np.ndarray, tol_deg: float) -> float:
    """P(X ≥ n_gained) of n_out random lines landing on calculated lines of ``sup``."""
    span = max(float(tth[-1] - tth[0]), tol_deg)
    p = min(1.0, 2.0 * tol_deg * sup.n_calc / span)
    return float(binom.sf(n_gained - 1, n_out, p))


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
    system = "hexagonal" if cand.crystal_system == "trigonal" else cand.crystal_system
    best: CandidateCell | None = None
    for factors in AXIS_FACTORS[system]:
        try:
            p0 = system_params(system, cand.cell, factors)
        except ValueError:
            continue
        sup = refine_cell(system, p0, tth, wl, tol_deg, max_zero_deg, cand.weak)
        if (
            sup is None
            or sup.n_indexed < cand.n_indexed + 2
            or sup.n_unindexed_strong > cand.n_unindexed_strong
            or sup.m20 < min_m20
        ):
            continue
        if by_chance(sup, cand.n_unindexed, sup.n_indexed - cand.n_indexed, tth, tol_deg) > CHANCE_LEVEL:
            continue
        if best is None or (sup.n_indexed, sup.m20) > (best.n_indexed, best.m20):
            best = sup
    return best
