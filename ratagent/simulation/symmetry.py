"""Space-group operations as numpy arrays, taken from gemmi (no hand-typed tables).

Everything here is keyed by the Hall symbol, so a record built from a CIF in a
non-standard setting (``P 1 21/n 1``) uses the operations of that setting, while
random structures use gemmi's reference setting of each space-group number
(rhombohedral groups in the hexagonal setting, monoclinic unique axis b).

Conventions
-----------
An operation maps fractional coordinates x ↦ R x + t. A reflection h (row vector)
is carried to h R; its structure factor obeys F(h R) = F(h) exp(-2πi h·t), so h is
**systematically absent** when some operation has h R = h and h·t ∉ ℤ
(International Tables A, §1.6.5).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "hall_symbol",
    "is_absent",
    "laue_rotations",
    "orbit",
    "space_group_ops",
]

_DEN = 24  # gemmi.Op.DEN: rotations and translations are stored as integers / 24
_ORBIT_KEY = 100_000  # fractional coordinates are equal when they agree to 1e-5


def _check_sg_number(sg_number: int) -> int:
    if isinstance(sg_number, bool) or not isinstance(sg_number, int | np.integer):
        raise TypeError(f"space-group number must be an int, got {sg_number!r}")
    if not 1 <= int(sg_number) <= 230:
        raise ValueError(f"space-group number must be in 1..230, got {sg_number}")
    return int(sg_number)


@functools.lru_cache(maxsize=512)
def hall_symbol(sg_number: int) -> str:
    """Hall symbol of gemmi's reference setting of space group ``sg_number`` (1–230)."""
    import gemmi

    return gemmi.find_spacegroup_by_number(_check_sg_number(sg_number)).hall


@functools.lru_cache(maxsize=1024)
def space_group_ops(hall: str) -> tuple[np.ndarray, np.ndarray]:
    """All operations (centring included) of the group with Hall symbol ``hall``.

    Returns
    -------
    rot : ndarray, shape (m, 3, 3), float64 — rotation parts R.
    tran : ndarray, shape (m, 3), float64 — translations t in [0, 1).
    Both are read-only.
    """
    import gemmi

    try:
        ops = gemmi.symops_from_hall(hall)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"not a Hall symbol gemmi understands: {hall!r} ({exc})") from None
    rot = np.array([op.rot for op in ops], dtype=float) / _DEN
    tran = (np.array([op.tran for op in ops], dtype=float) / _DEN) % 1.0
    rot.setflags(write=False)
    tran.setflags(write=False)
    return rot, tran


@functools.lru_cache(maxsize=1024)
def laue_rotations(hall: str) -> np.ndarray:
    """Distinct rotations of the Laue group (point group plus inversion), shape (k, 3, 3), int.

    Reflections equivalent in a powder pattern are {h R : R in this set}; Friedel's law
    (no anomalous scattering) adds the inversion.
    """
    rot, _ = space_group_ops(hall)
    allr = np.concatenate([rot, -rot]).round().astype(np.int64)
    out = np.unique(allr.reshape(len(allr), 9), axis=0).reshape(-1, 3, 3)
    out.setflags(write=False)
    return out


def is_absent(hkl: np.ndarray, hall: str) -> np.ndarray:
    """Systematic absence of each reflection by the operation rule.

    h is absent when an operation (R, t) of the group has h R = h and h·t ∉ ℤ.

    Parameters
    ----------
    hkl : array of int, shape (n, 3)
    hall : str
        Hall symbol of the group (setting matters).

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    hkl = np.asarray(hkl)
    if hkl.ndim != 2 or hkl.shape[1] != 3:
        raise ValueError(f"hkl must have shape (n, 3), got {hkl.shape}")
    moved, tran = _translated_ops(hall)
    h = hkl.astype(float)
    fixed = np.all(np.abs(h @ moved).reshape(len(h), -1, 3) < 1e-6, axis=2)  # (n, m): h R − h = 0
    phase = h @ tran.T  # (n, m)
    shifted = np.abs(phase - np.round(phase)) > 1e-6
    return np.any(fixed & shifted, axis=1)


@functools.lru_cache(maxsize=1024)
def _translated_ops(hall: str) -> tuple[np.ndarray, np.ndarray]:
    """The operations with a translation t ∉ ℤ³ (no other can make h absent), as R − I side by
    side, shape (3, 3m), and their translations (m, 3)."""
    rot, tran = space_group_ops(hall)
    some = np.any(np.abs(tran - np.round(tran)) > 1e-9, axis=1)
    moved = (rot[some] - np.eye(3)).transpose(1, 0, 2).reshape(3, -1)
    for a in (moved, tran[some]):
        a.setflags(write=False)
    return moved, tran[some]


def orbit(xyz: np.ndarray, hall: str) -> np.ndarray:
    """Distinct images of one fractional position under the group, modulo lattice translations.

    Parameters
    ----------
    xyz : array, shape (3,)
    hall : str

    Returns
    -------
    ndarray, shape (k, 3), coordinates in [0, 1); k is the Wyckoff multiplicity
    (points closer than 1e-5 in every fractional coordinate are one point).
    """
    rot, tran = space_group_ops(hall)
    pts = (rot @ np.asarray(xyz, float) + tran) % 1.0
    keys = np.round(pts * _ORBIT_KEY).astype(np.int64) % _ORBIT_KEY
    keys = (keys[:, 0] * _ORBIT_KEY + keys[:, 1]) * _ORBIT_KEY + keys[:, 2]  # one integer per point
    _, first = np.unique(keys, return_index=True)
    return pts[np.sort(first)] % 1.0
