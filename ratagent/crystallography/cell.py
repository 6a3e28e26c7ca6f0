"""Unit-cell geometry shared by the simulation, the indexing and the refinement.

A cell is ``(a, b, c, α, β, γ)`` in Å and degrees; the direct metric tensor is
G = [[a², ab cos γ, ac cos β], [ab cos γ, b², bc cos α], [ac cos β, bc cos α, c²]] and the
volume V = √det G (International Tables B, §1.1.3).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["cell_volume", "check_cell", "metric_tensor"]


def _volume_factor(arr: np.ndarray) -> float:
    """1 − cos²α − cos²β − cos²γ + 2 cos α cos β cos γ = V² / (abc)²."""
    ca, cb, cg = np.cos(np.radians(arr[3:]))
    return float(1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg)


def check_cell(cell: object) -> np.ndarray:
    """Validate a cell (a, b, c, α, β, γ) in Å and degrees; return it as float array (6,).

    Raises
    ------
    ValueError
        Naming the cell when it has not six finite numbers, a length ≤ 0, an angle outside
        (0, 180)°, or angles that enclose no volume.
    """
    try:
        arr = np.asarray(cell, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"cell must be six numbers (a, b, c, alpha, beta, gamma), got {cell!r}") from None
    if arr.shape != (6,):
        raise ValueError(
            f"cell must be six numbers (a, b, c, alpha, beta, gamma), got {np.size(arr)} values: {cell!r}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"cell has non-finite values: {arr.tolist()}")
    if (arr[:3] <= 0).any():
        raise ValueError(f"cell lengths must be positive (Å), got a, b, c = {arr[:3].tolist()}")
    if (arr[3:] <= 0).any() or (arr[3:] >= 180).any():
        raise ValueError(f"cell angles must lie in (0, 180) degrees, got {arr[3:].tolist()}")
    if _volume_factor(arr) <= 1e-8:
        raise ValueError(f"cell angles {arr[3:].tolist()} enclose no volume")
    return arr


def metric_tensor(cell: object) -> np.ndarray:
    """Direct metric G_ij = a_i · a_j of a cell, shape (3, 3), Å² (module docstring)."""
    a, b, c, al, be, ga = check_cell(cell)
    ca, cb, cg = np.cos(np.radians([al, be, ga]))
    return np.array(
        [
            [a * a, a * b * cg, a * c * cb],
            [a * b * cg, b * b, b * c * ca],
            [a * c * cb, b * c * ca, c * c],
        ]
    )


def cell_volume(cell: object) -> float:
    """V = abc √(1 − cos²α − cos²β − cos²γ + 2 cos α cos β cos γ), Å³."""
    arr = check_cell(cell)
    return float(arr[0] * arr[1] * arr[2] * math.sqrt(_volume_factor(arr)))
