"""Trial cells grown from a rectangular zone (after ITO's zone idea): monoclinic, and the
zones the orthorhombic search grows (:func:`rectangular_zones`).

The monoclinic form :math:`q = h^2A + k^2B + l^2C + hlE` (unique axis b) contains the
rectangular zone :math:`q_{hk0} = h^2A + k^2B`. Trial and error on four base lines
(:mod:`ratagent.indexing.trials`) fails when the first lines do not hold two independent
reflections with l ≠ 0, e.g. a long axis whose h0l or hkl lines come late, or an
impurity line among them. Following the zone approach of ITO (Visser, J. Appl. Cryst.
2, 89 (1969)), the search is split in two:

1. **Zone.** Two of the first lines get two rows (h², k²) of the hk0 zone; the 2 × 2
   system gives (A, B). Zones that index at least ``min_zone_lines`` of the first lines
   are ranked by (lines indexed)⁴ / (zone lines predicted), and the best are refined by
   least squares on the lines they index.
2. **Third axis.** For each kept zone, two of the first lines (weak ones included: the
   strong lines may all lie in the zone) get rows (h, k, l) with l ≥ 1; with A and B
   known, :math:`q - h^2A - k^2B = l^2C + hlE` is a 2 × 2 system in (C, E).

The trials (A, B, C, E) then go through the same screen and refinement as the others.
The a ↔ c relabelling makes the hk0 zone stand for the 0kl one too. The orthorhombic
search takes the zones of step 1 (:func:`rectangular_zones`) and solves its third axis,
E = 0, from one line at a time (:func:`~ratagent.indexing.trials.line_trials`, on the
lines :func:`off_zone_lines` leaves).
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

from ratagent.indexing._unique import unique_rows

__all__ = ["monoclinic_zone_trials", "off_zone_lines", "rectangular_zones", "zone_match"]


@cache
def _zone_rows(h_max: int = 3, k_max: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (h², k²) rows of the hk0 zone and the inverses of their independent ordered pairs."""
    rows = np.array(sorted({(h * h, k * k) for h in range(h_max + 1) for k in range(k_max + 1)} - {(0, 0)}))
    pairs = np.array(list(itertools.permutations(range(len(rows)), 2)))
    mats = rows[pairs].astype(float)  # (n, 2, 2)
    good = np.abs(np.linalg.det(mats)) > 1e-9
    return rows, np.linalg.inv(mats[good])


@cache
def _axis_rows(h_max: int = 2, k_max: int = 2, l_max: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (h, k, l), l ≥ 1, and the inverses of the (l², hl) matrices of independent ordered pairs.

    Returns ``(hkl (n, 3), pair index (t, 2), inverses (t, 2, 2))``.
    """
    hkl = np.array(
        [
            (h, k, l)
            for h in range(-h_max, h_max + 1)
            for k in range(k_max + 1)
            for l in range(1, l_max + 1)
            if abs(h) + k + l <= 4
        ]
    )
    pairs = np.array(list(itertools.permutations(range(len(hkl)), 2)))
    lhs = np.stack([hkl[:, 2] ** 2, hkl[:, 0] * hkl[:, 2]], axis=1).astype(float)
    mats = lhs[pairs]
    good = np.abs(np.linalg.det(mats)) > 1e-9
    return hkl, pairs[good], np.linalg.inv(mats[good])


#: (h², k²) of the hk0 reflections a zone is matched against (h ≤ 6, k ≤ 8).
_ZONE_GRID = np.array([(h * h, k * k) for h in range(7) for k in range(9) if h or k], dtype=float)


def zone_match(
    ab: np.ndarray, q: np.ndarray, tol: np.ndarray, grid: np.ndarray = _ZONE_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """Per zone (n, m) and line: the nearest ``grid`` row (default: the hk0 rows (h², k²))
    and whether it lies within ``tol``."""
    qz = ab @ grid.T  # (n, grid)
    d = np.abs(qz[:, None, :] - q[None, :, None])  # (n, lines, grid)
    nearest = d.argmin(axis=2)
    hit = np.take_along_axis(d, nearest[..., None], axis=2)[..., 0] <= tol[None, :]
    return nearest, hit


def _refine_zones(ab: np.ndarray, q: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """(A, B) of each zone by least squares on the lines it indexes (base lines carry errors)."""
    nearest, hit = zone_match(ab, q, tol)
    out = ab.copy()
    for i in range(len(ab)):
        rows = _ZONE_GRID[nearest[i, hit[i]]]
        if np.linalg.matrix_rank(rows) == 2:
            out[i] = np.linalg.lstsq(rows, q[hit[i]], rcond=None)[0]
    return out


def rectangular_zones(
    q_obs: np.ndarray,
    tol_q: np.ndarray,
    *,
    n_lines: int = 8,
    n_zones: int = 12,
    min_zone_lines: int = 3,
) -> np.ndarray:
    """(A, B) of the rectangular zones q = h²A + k²B that best index the first lines (step 1).

    Parameters
    ----------
    q_obs : observed q = 1/d², Å⁻², ascending
    tol_q : (len(q_obs),) tolerance on q of each line, Å⁻²
    n_lines : base lines (and zone-counting lines) are the first this many
    n_zones : most zones returned, best first
    min_zone_lines : a zone must index at least this many of the first lines

    Returns
    -------
    ndarray, shape (k, 2), k ≤ ``n_zones``: positive A, B refined on the lines they index.
    """
    n = min(n_lines, len(q_obs))
    if n < 4:
        return np.empty((0, 2))
    q, tol = q_obs[:n], tol_q[:n]
    _, inv_z = _zone_rows()
    line_pairs = np.array(list(itertools.combinations(range(n), 2)))
    ab = np.einsum("tij,cj->cti", inv_z, q[line_pairs]).reshape(-1, 2)
    ab = ab[(ab > 0).all(axis=1)]
    if len(ab) == 0:
        return np.empty((0, 2))
    _, first = unique_rows(np.round(np.log(ab), 3), return_index=True)
    ab = ab[first]
    count = zone_match(ab, q, tol)[1].sum(axis=1)
    keep = count >= min_zone_lines
    ab, count = ab[keep], count[keep]
    if len(ab) == 0:
        return np.empty((0, 2))
    # a zone that predicts many lines indexes some by chance: rank by count⁴ / predicted
    predicted = np.count_nonzero(ab @ _ZONE_GRID.T <= q[-1] + tol[-1], axis=1)
    ab = ab[np.argsort(-(count.astype(float) ** 4) / np.maximum(predicted, 1))][:n_zones]
    ab = _refine_zones(ab, q, tol)
    ab = ab[(ab > 0).all(axis=1)]
    # several base pairs refine to one zone: keep its first (best-ranked) copy
    _, first = unique_rows(np.round(np.log(ab), 4), return_index=True)
    return ab[np.sort(first)]


def off_zone_lines(ab: np.ndarray, q_obs: np.ndarray, tol_q: np.ndarray) -> np.ndarray:
    """(k, L) bool: the lines of ``q_obs`` that no hk0 row (h ≤ 6, k ≤ 8) of each zone
    (A, B) of ``ab`` (k, 2) indexes within ``tol_q``: those that can fix the third axis."""
    return ~zone_match(np.asarray(ab, dtype=float).reshape(-1, 2), q_obs, tol_q)[1]


def monoclinic_zone_trials(
    q_obs: np.ndarray,
    tol_q: np.ndarray,
    *,
    n_lines: int = 8,
    n_zones: int = 12,
    min_zone_lines: int = 3,
    axis_lines: np.ndarray | None = None,
    n_axis_lines: int = 12,
) -> np.ndarray:
    """Monoclinic trial parameters (A, B, C, E) from zones (algorithm in the module docstring).

    Parameters
    ----------
    q_obs, tol_q, n_lines, n_zones, min_zone_lines : as for :func:`rectangular_zones`
    axis_lines : q of the lines the third axis is solved from (default ``q_obs``); give
        all the lines, weak ones included, when the strong ones may all lie in one zone
    n_axis_lines : the third axis is solved from pairs of the first this many of them

    Returns
    -------
    ndarray, shape (n, 4): trials with a positive-definite form.
    """
    ab = rectangular_zones(q_obs, tol_q, n_lines=n_lines, n_zones=n_zones, min_zone_lines=min_zone_lines)
    if len(ab) == 0:
        return np.empty((0, 4))
    hkl, pairs, inv_ce = _axis_rows()
    off = ab[:, 0, None] * hkl[None, :, 0] ** 2 + ab[:, 1, None] * hkl[None, :, 1] ** 2  # (z, rows)
    qa = (q_obs if axis_lines is None else np.sort(np.asarray(axis_lines, dtype=float)))[:n_axis_lines]
    axis_pairs = np.array(list(itertools.combinations(range(len(qa)), 2)))
    if len(axis_pairs) == 0:
        return np.empty((0, 4))
    rhs = qa[axis_pairs][None, :, None, :] - off[:, None, :][..., pairs]  # (z, lp, t, 2)
    ce = np.einsum("tij,zctj->zcti", inv_ce, rhs)  # (z, lp, t, 2)
    a = np.broadcast_to(ab[:, None, None, 0], ce.shape[:3])
    b = np.broadcast_to(ab[:, None, None, 1], ce.shape[:3])
    p = np.stack([a, b, ce[..., 0], ce[..., 1]], axis=-1).reshape(-1, 4)
    ok = (p[:, 2] > 0) & (p[:, 3] ** 2 < 4 * p[:, 0] * p[:, 2] * 0.999)
    return p[ok]
