"""Unit cells: metric tensors, volumes, random cells and strain within a crystal system.

A cell is ``(a, b, c, α, β, γ)`` in Å and degrees. Hexagonal and trigonal groups
(rhombohedral ones included, in the hexagonal setting) have a = b, γ = 120°;
monoclinic cells are unique-axis b (β free), as in gemmi's reference settings.
"""

from __future__ import annotations

import math

import numpy as np

from ratagent.crystallography.cell import cell_volume, check_cell, metric_tensor
from ratagent.crystallography.spacegroups import CRYSTAL_SYSTEMS

__all__ = [
    "CRYSTAL_SYSTEMS",
    "cell_volume",
    "check_cell",
    "metric_tensor",
    "random_cell",
    "reciprocal_metric",
    "strain_cell",
]


# Ranges for random cells: axis ratios b/a, c/a drawn log-uniformly in
# [1/_MAX_AXIS_RATIO, _MAX_AXIS_RATIO]; free angles in degrees. Chosen to cover the
# shapes of inorganic and small-molecule crystals without needle-like extremes.
_MAX_AXIS_RATIO = 2.5
_MONOCLINIC_BETA_DEG = (90.0, 120.0)
_TRICLINIC_ANGLE_DEG = (70.0, 115.0)


def _volume_factor(cell: np.ndarray) -> float:
    ca, cb, cg = np.cos(np.radians(cell[3:]))
    return float(1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg)


def reciprocal_metric(cell: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Reciprocal metric G* = G⁻¹, Å⁻²; 1/d²(hkl) = h G* hᵀ."""
    return np.linalg.inv(metric_tensor(cell))


def random_cell(crystal_system: str, volume: float, rng: np.random.Generator) -> np.ndarray:
    """A random cell of the given crystal system and volume.

    Axis ratios are log-uniform within [1/2.5, 2.5]; monoclinic β is uniform in
    [90, 120]°; triclinic angles are uniform in [70, 115]° (redrawn until the volume
    factor exceeds 0.3). Lengths are then scaled so that V = ``volume``.

    Parameters
    ----------
    crystal_system : str
        One of :data:`CRYSTAL_SYSTEMS`.
    volume : float
        Target volume, Å³.
    rng : numpy.random.Generator
    """
    if crystal_system not in CRYSTAL_SYSTEMS:
        raise ValueError(f"crystal_system must be one of {CRYSTAL_SYSTEMS}, got {crystal_system!r}")
    if not (math.isfinite(volume) and volume > 0):
        raise ValueError(f"volume must be positive Å³, got {volume}")

    def ratio() -> float:
        return float(np.exp(rng.uniform(-1.0, 1.0) * math.log(_MAX_AXIS_RATIO)))

    if crystal_system == "cubic":
        shape = [1.0, 1.0, 1.0, 90.0, 90.0, 90.0]
    elif crystal_system == "tetragonal":
        shape = [1.0, 1.0, ratio(), 90.0, 90.0, 90.0]
    elif crystal_system in ("trigonal", "hexagonal"):
        shape = [1.0, 1.0, ratio(), 90.0, 90.0, 120.0]
    elif crystal_system == "orthorhombic":
        shape = [1.0, ratio(), ratio(), 90.0, 90.0, 90.0]
    elif crystal_system == "monoclinic":
        shape = [1.0, ratio(), ratio(), 90.0, float(rng.uniform(*_MONOCLINIC_BETA_DEG)), 90.0]
    else:
        while True:
            angles = rng.uniform(*_TRICLINIC_ANGLE_DEG, size=3)
            shape = [1.0, ratio(), ratio(), *angles.tolist()]
            if _volume_factor(np.asarray(shape)) > 0.3:
                break
    cell = np.asarray(shape)
    cell[:3] *= (volume / cell_volume(cell)) ** (1.0 / 3.0)
    return cell


def strain_cell(
    cell: np.ndarray | tuple[float, ...],
    crystal_system: str,
    max_strain: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Apply a small random lattice strain that keeps the crystal system's constraints.

    Each free length ℓ becomes ℓ (1 + ε), ε ~ U(−max_strain, max_strain); lengths tied
    by symmetry (a = b = c cubic; a = b tetragonal, trigonal, hexagonal) share one ε.
    Free angles (β monoclinic; α, β, γ triclinic) change by ε·(180/π)° each (the shear
    that a strain ε produces), so the system is unchanged.
    """
    arr = check_cell(cell).copy()
    if crystal_system not in CRYSTAL_SYSTEMS:
        raise ValueError(f"crystal_system must be one of {CRYSTAL_SYSTEMS}, got {crystal_system!r}")
    if not (0.0 <= max_strain < 0.2):
        raise ValueError(f"max_strain must be in [0, 0.2), got {max_strain}")
    if max_strain == 0.0:
        return arr
    eps = rng.uniform(-max_strain, max_strain, size=6)
    if crystal_system == "cubic":
        eps[1] = eps[2] = eps[0]
    elif crystal_system in ("tetragonal", "trigonal", "hexagonal"):
        eps[1] = eps[0]
    arr[:3] *= 1.0 + eps[:3]
    if crystal_system == "monoclinic":
        arr[4] += math.degrees(eps[4])
    elif crystal_system == "triclinic":
        arr[3:] += np.degrees(eps[3:])
    return check_cell(arr)
