"""Triclinic trial cells from pairs of zones (the zone method of ITO: Visser, J. Appl.
Cryst. 2, 89 (1969)).

A triclinic form q = h²A + k²B + l²C + hkD + hlE + klF has six unknowns: trial and
error on six base lines would try too many index sets. ITO's zones split the problem:

1. **Zones.** A zone (a lattice plane of the reciprocal lattice) has the form
   q(h, k) = h²A + k²B + hkD. Two of the first lines are taken as its axes (A, B), and a
   third line, given a low index (h, k) with h, k ≥ 1, fixes D. Each zone is
   Gauss-reduced (|D| ≤ A ≤ B), duplicates merged, and the zones that index the most of
   the first lines, for the lines they predict, are kept and refined by least squares
   on the lines they index (:func:`oblique_zones`).
2. **Pairs of zones.** Two zones that share a row of the reciprocal lattice (a short
   vector of each with the same q) give the whole form but for F: A from the shared
   row, (B, D) from the first zone and (C, E) from the second. F then comes from one
   more line given an index (h, k, l) with k, l ≠ 0 (:func:`triclinic_trials`).

The trials go through the same screen and refinement as those of the other systems;
the refined form is Niggli-reduced (:func:`~ratagent.indexing.refine.reduced_triclinic`).
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

from ratagent.indexing._unique import unique_rows
from ratagent.indexing.trials import positive_forms
from ratagent.indexing.zones import zone_match

__all__ = ["oblique_zones", "triclinic_trials"]

#: Indices (h, k), h, k ≥ 1, that a third line may take to fix D of a zone.
_THIRD_ROWS = np.array([(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)], dtype=float)
#: Zone rows (h², k², hk) lines are matched against: k = 0 < h ≤ 6, or 0 < k ≤ 8, |h| ≤ 6.
_ZONE_GRID = np.array(
    [(h * h, k * k, h * k) for h in range(-6, 7) for k in range(9) if k > 0 or h > 0], dtype=float
)
#: Short vectors (h, k) of a reduced zone that may be the row two zones share, and the
#: vector completing each to a basis of the zone.
_AXES = ((np.array([1, 0]), np.array([0, 1])), (np.array([0, 1]), np.array([1, 0])),
         (np.array([1, 1]), np.array([0, 1])), (np.array([1, -1]), np.array([0, 1])))


def _gauss_reduced(z: np.ndarray) -> np.ndarray:
    """Zones (n, 3) (A, B, D) Gauss-reduced: 0 ≤ D ≤ A ≤ B (b* → b* − m a*, swaps, k → −k)."""
    A, B, D = (z[:, i].copy() for i in range(3))
    for _ in range(60):
        swap = A > B
        A, B = np.where(swap, B, A), np.where(swap, A, B)
        m = np.rint(D / (2 * A))
        if not np.any(m):
            break
        B, D = B - m * D + m * m * A, D - 2 * m * A
    return np.stack([A, B, np.abs(D)], axis=1)


def _unique_zones(z: np.ndarray) -> np.ndarray:
    """The first of each set of zones (n, 3) with the same A, B and D/A (to 0.1 %)."""
    key = np.round(np.column_stack([np.log(z[:, 0]), np.log(z[:, 1]), z[:, 2] / z[:, 0]]), 3)
    _, first = unique_rows(key, return_index=True)
    return z[np.sort(first)]


def oblique_zones(
    q_obs: np.ndarray,
    tol_q: np.ndarray,
    *,
    n_lines: int = 10,
    n_count: int = 20,
    n_zones: int = 16,
    min_zone_lines: int = 5,
) -> np.ndarray:
    """Reduced zones (A, B, D) that index the most of the first lines (step 1).

    Parameters
    ----------
    q_obs : observed q = 1/d², Å⁻², ascending
    tol_q : (len(q_obs),) tolerance on q of each line, Å⁻²
    n_lines : axes and third lines are drawn from the first this many lines
    n_count : zones are judged on the first this many lines
    n_zones : most zones returned, best first
    min_zone_lines : a zone must index at least this many of those lines

    Returns
    -------
    ndarray, shape (k, 3), k ≤ ``n_zones``: 0 ≤ D ≤ A ≤ B.
    """
    q_obs, tol_q = np.asarray(q_obs, dtype=float), np.asarray(tol_q, dtype=float)
    n = min(n_lines, len(q_obs))
    if n < 3:
        return np.empty((0, 3))
    q, tol = q_obs[:n_count], tol_q[:n_count]
    trip = np.array([t for t in itertools.permutations(range(n), 3) if t[0] < t[1]])
    A, B, Q = q_obs[trip[:, 0], None], q_obs[trip[:, 1], None], q_obs[trip[:, 2], None]
    h, k = _THIRD_ROWS[:, 0], _THIRD_ROWS[:, 1]
    D = (Q - h * h * A - k * k * B) / (h * k)  # (t, rows)
    z = np.stack([np.broadcast_to(A, D.shape), np.broadcast_to(B, D.shape), D], axis=-1).reshape(-1, 3)
    z = z[z[:, 2] ** 2 < 4 * z[:, 0] * z[:, 1] * 0.999]
    if len(z) == 0:
        return np.empty((0, 3))
    z = _unique_zones(_gauss_reduced(z))
    count = zone_match(z, q, tol, _ZONE_GRID)[1].sum(axis=1)
    keep = count >= min_zone_lines
    z, count = z[keep], count[keep]
    if len(z) == 0:
        return np.empty((0, 3))
    # a zone predicting many lines indexes some by chance: rank by count⁴ / predicted
    q_top = q[-1] + tol[-1]
    predicted = np.array([np.unique(np.round(r[r <= q_top], 9)).size for r in z @ _ZONE_GRID.T])
    z = z[np.argsort(-(count.astype(float) ** 4) / np.maximum(predicted, 1), kind="stable")][: 3 * n_zones]
    nearest, hit = zone_match(z, q, tol, _ZONE_GRID)
    for i in range(len(z)):
        rows = _ZONE_GRID[nearest[i, hit[i]]]
        if np.linalg.matrix_rank(rows) == 3:
            z[i] = np.linalg.lstsq(rows, q[hit[i]], rcond=None)[0]
    z = z[(z[:, 0] > 0) & (z[:, 1] > 0) & (z[:, 2] ** 2 < 4 * z[:, 0] * z[:, 1])]
    return _unique_zones(_gauss_reduced(z))[:n_zones]


def _zone_axes(z: np.ndarray) -> np.ndarray:
    """Each zone (n, 3) on each of its :data:`_AXES` bases: (n, 4, 3) (A', B', D')."""
    A, B, D = z[:, 0, None], z[:, 1, None], z[:, 2, None]

    def dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u[0] * v[0] * A + u[1] * v[1] * B + (u[0] * v[1] + u[1] * v[0]) * D / 2

    return np.stack([np.concatenate([dot(v, v), dot(w, w), 2 * dot(v, w)], axis=1) for v, w in _AXES], axis=1)


@cache
def _f_rows(h_max: int = 2, k_max: int = 2, l_max: int = 2) -> np.ndarray:
    """(h, k, l) with k ≥ 1 and l ≠ 0 a line may take to fix F."""
    return np.array(
        [(h, k, l) for h in range(-h_max, h_max + 1) for k in range(1, k_max + 1)
         for l in range(-l_max, l_max + 1) if l != 0],
        dtype=float,
    )


def triclinic_trials(
    q_obs: np.ndarray,
    tol_q: np.ndarray,
    *,
    axis_lines: np.ndarray | None = None,
    n_axis_lines: int = 12,
    **zone_options: int,
) -> np.ndarray:
    """Triclinic trial forms (A, B, C, D, E, F) from pairs of zones (module docstring).

    Parameters
    ----------
    q_obs, tol_q : observed q (Å⁻², ascending) and tolerances the zones are found on
    axis_lines : q of the lines F is solved from (default ``q_obs``), the first
        ``n_axis_lines`` of them
    zone_options : passed to :func:`oblique_zones`

    Returns
    -------
    ndarray, shape (n, 6): positive-definite forms, duplicates removed.
    """
    q_obs, tol_q = np.asarray(q_obs, dtype=float), np.asarray(tol_q, dtype=float)
    z = oblique_zones(q_obs, tol_q, **zone_options)
    if len(z) < 2:
        return np.empty((0, 6))
    axes = _zone_axes(z)  # (n, 4, 3)
    i, j = np.triu_indices(len(z), 1)
    first, second = axes[i][:, :, None, :], axes[j][:, None, :, :]  # (p, 4, 1, 3), (p, 1, 4, 3)
    a1, a2 = first[..., 0], second[..., 0]
    tol = np.interp((a1 + a2) / 2, q_obs, tol_q)
    shared = np.abs(a1 - a2) <= tol  # (p, 4, 4)
    f1 = np.broadcast_to(first, (*shared.shape, 3))[shared]
    f2 = np.broadcast_to(second, (*shared.shape, 3))[shared]
    if len(f1) == 0:
        return np.empty((0, 6))
    # A from the shared row, (B, D) from the first zone, (C, E) from the second; F = 0
    a = (f1[:, 0] + f2[:, 0]) / 2
    base = np.column_stack([a, f1[:, 1], f2[:, 1], f1[:, 2], f2[:, 2], np.zeros(len(f1))])
    qa = (q_obs if axis_lines is None else np.sort(np.asarray(axis_lines, dtype=float)))[:n_axis_lines]
    r = _f_rows()
    h, k, l = r[:, 0], r[:, 1], r[:, 2]
    mono = np.stack([h * h, k * k, l * l, h * k, h * l, np.zeros_like(h)], axis=1)  # (R, 6)
    F = (qa[None, :, None] - (base @ mono.T)[:, None, :]) / (k * l)  # (b, lines, R)
    trials = np.broadcast_to(base[:, None, None, :], (*F.shape, 6)).copy()
    trials[..., 5] = F
    trials = trials.reshape(-1, 6)
    trials = trials[positive_forms(trials)]
    return unique_rows(np.round(trials, 8))
