"""Cells as quadratic forms, Niggli reduction and the comparison of lattices.

Indexing works with the quadratic form of the reciprocal lattice,

.. math::

    q(hkl) = 1/d^2 = h^2 A + k^2 B + l^2 C + hk D + hl E + kl F,

so that :math:`G^* = [[A, D/2, E/2], [D/2, B, F/2], [E/2, F/2, C]]` is the reciprocal
metric tensor and :math:`G = (G^*)^{-1}` the direct one (International Tables B,
§1.1.3). Lattices are compared after Niggli reduction (Křivý & Gruber, Acta Cryst. A32,
297 (1976), as implemented by gemmi's ``GruberVector``) through the lowest values of
their powder pattern, which is what a powder measurement can tell apart.
"""

from __future__ import annotations

import math

import gemmi
import numpy as np

__all__ = [
    "cell_from_form",
    "cell_volume",
    "form_from_cell",
    "keys_match",
    "lattice_key",
    "lattice_q_values",
    "niggli_cell",
    "same_lattice",
]


def _check_cell(cell: np.ndarray | tuple[float, ...]) -> np.ndarray:
    arr = np.asarray(cell, dtype=float)
    if arr.shape != (6,):
        raise ValueError(f"cell must be (a, b, c, alpha, beta, gamma), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr[:3] <= 0):
        raise ValueError(f"cell lengths must be positive finite Å, got {arr.tolist()}")
    if np.any(arr[3:] <= 0) or np.any(arr[3:] >= 180):
        raise ValueError(f"cell angles must be in (0, 180) degrees, got {arr[3:].tolist()}")
    return arr


def _metric(cell: np.ndarray) -> np.ndarray:
    a, b, c = cell[:3]
    ca, cb, cg = np.cos(np.radians(cell[3:]))
    return np.array(
        [[a * a, a * b * cg, a * c * cb], [a * b * cg, b * b, b * c * ca], [a * c * cb, b * c * ca, c * c]]
    )


def form_from_cell(cell: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Quadratic-form coefficients ``(A, B, C, D, E, F)`` in Å⁻² of a cell ``(a, b, c, α, β, γ)``.

    ``A = a*², B = b*², C = c*², D = 2 a* b* cos γ*, E = 2 a* c* cos β*, F = 2 b* c* cos α*``.
    """
    g = np.linalg.inv(_metric(_check_cell(cell)))
    return np.array([g[0, 0], g[1, 1], g[2, 2], 2 * g[0, 1], 2 * g[0, 2], 2 * g[1, 2]])


def cell_from_form(form: np.ndarray) -> np.ndarray:
    """Cell ``(a, b, c, α, β, γ)`` (Å, degrees) of quadratic-form coefficients ``(A, …, F)``.

    Raises
    ------
    ValueError
        If the form is not positive definite (no lattice has it).
    """
    A, B, C, D, E, F = np.asarray(form, dtype=float)
    gstar = np.array([[A, D / 2, E / 2], [D / 2, B, F / 2], [E / 2, F / 2, C]])
    if not np.all(np.isfinite(gstar)) or np.any(np.linalg.eigvalsh(gstar) <= 0):
        raise ValueError(f"quadratic form {np.asarray(form).tolist()} is not positive definite")
    g = np.linalg.inv(gstar)
    a, b, c = np.sqrt(np.diag(g))
    alpha = math.degrees(math.acos(np.clip(g[1, 2] / (b * c), -1, 1)))
    beta = math.degrees(math.acos(np.clip(g[0, 2] / (a * c), -1, 1)))
    gamma = math.degrees(math.acos(np.clip(g[0, 1] / (a * b), -1, 1)))
    return np.array([a, b, c, alpha, beta, gamma])


def cell_volume(cell: np.ndarray | tuple[float, ...]) -> float:
    """Cell volume V = √det G in Å³."""
    return float(math.sqrt(max(np.linalg.det(_metric(_check_cell(cell))), 0.0)))


def niggli_cell(cell: np.ndarray | tuple[float, ...], centring: str = "P") -> np.ndarray:
    """Niggli-reduced primitive cell of a lattice given by a conventional cell and its centring.

    Parameters
    ----------
    cell : (a, b, c, α, β, γ)
    centring : {"P", "A", "B", "C", "I", "F", "R"}
        Lattice centring of ``cell`` (``R``: obverse rhombohedral on hexagonal axes).
    """
    cell = _check_cell(cell)
    if centring not in ("P", "A", "B", "C", "I", "F", "R"):
        raise ValueError(f"centring must be one of P, A, B, C, I, F, R; got {centring!r}")
    gv = gemmi.GruberVector(gemmi.UnitCell(*cell), centring, False)
    gv.niggli_reduce()
    return np.array(gv.cell_parameters())


#: Fewest q values two lattices are compared on.
_MIN_Q_VALUES = 30
#: Largest index, in the reduced reciprocal basis, of the rows enumerated (bounds the
#: work on very anisotropic lattices, axis ratio beyond ~10).
_MAX_ROW_INDEX = 12


def _reduced_reciprocal_metric(cell: np.ndarray | tuple[float, ...], centring: str) -> np.ndarray:
    """Metric tensor G* (Å⁻²) of a Niggli-reduced basis of the reciprocal lattice."""
    rec = gemmi.UnitCell(*niggli_cell(cell, centring)).reciprocal()
    gv = gemmi.GruberVector(rec, "P", False)
    gv.niggli_reduce()
    return _metric(np.array(gv.cell_parameters()))


def lattice_key(
    cell: np.ndarray | tuple[float, ...], centring: str = "P", min_count: int = 2 * _MIN_Q_VALUES
) -> tuple[np.ndarray, int]:
    """q = 1/d² (Å⁻²) of the lattice rows, with multiplicity, ascending, and how many fix the lattice.

    The lattice is fixed by a reduced reciprocal basis u, v, w and the q of u ± v, u ± w,
    v ± w (its angles): the second value ``n`` counts the rows up to the largest of these
    nine q, and at least :data:`_MIN_Q_VALUES`. The list holds every row up to 1.5 times
    that q, and at least ``min_count`` rows. (A fixed number of the smallest q does not
    fix a lattice with one long axis: the 30 smallest q of an orthorhombic C cell with
    a = 4.86, b = 5.00, c = 12.2 Å are all 00l and 11l-type rows, which a = 4.72,
    b = 5.18 Å shares.)
    """
    g = _reduced_reciprocal_metric(cell, centring)
    qb = np.diag(g)
    pairs = [
        qb[i] + qb[j] + s * 2.0 * g[i, j] for i in range(3) for j in range(i + 1, 3) for s in (1.0, -1.0)
    ]
    cut = float(max(qb.max(), max(pairs)))
    g_inv_diag = np.diag(np.linalg.inv(g))
    span = 1.5 * cut
    while True:
        # the largest |x_i| of a row with x·G*·x ≤ span is √(span (G*⁻¹)_ii)
        m = np.minimum(_MAX_ROW_INDEX, np.ceil(np.sqrt(span * g_inv_diag))).astype(int)
        axes = [np.arange(-k, k + 1) for k in m]
        x = np.stack([v.ravel() for v in np.meshgrid(*axes, indexing="ij")], axis=1).astype(float)
        q = np.einsum("ni,ij,nj->n", x, g, x)
        q = np.sort(q[(q > 0) & (q <= span)])
        if len(q) >= min_count or np.all(m == _MAX_ROW_INDEX):
            break
        span *= 2.0
    n = max(_MIN_Q_VALUES, int(np.count_nonzero(q <= cut * (1 + 1e-9))))
    return q, n


def keys_match(key1: tuple[np.ndarray, int], key2: tuple[np.ndarray, int], rtol: float = 1e-3) -> bool:
    """Whether two :func:`lattice_key` values are one lattice within ``rtol`` on d (2 rtol on q)."""
    (q1, n1), (q2, n2) = key1, key2
    n = min(max(n1, n2), len(q1), len(q2))
    return bool(np.all(np.abs(q1[:n] - q2[:n]) <= 2.0 * rtol * q2[:n]))


def lattice_q_values(cell: np.ndarray | tuple[float, ...], n: int = 30, centring: str = "P") -> np.ndarray:
    """The ``n`` smallest q = 1/d² (Å⁻²) of all lattice rows, with multiplicity, ascending.

    Values of the lattice, whatever cell describes it. To tell two lattices apart, compare
    :func:`lattice_key` values (:func:`keys_match`): a fixed number of the smallest may
    not fix the lattice.
    """
    q, _ = lattice_key(cell, centring, min_count=n)
    return q[:n]


def same_lattice(
    cell1: np.ndarray | tuple[float, ...],
    cell2: np.ndarray | tuple[float, ...],
    rtol: float = 1e-3,
    centring1: str = "P",
    centring2: str = "P",
) -> bool:
    """Whether two cells describe the same lattice within a relative tolerance on d.

    Compares the smallest q = 1/d² of the two lattices, as many as fix either
    (:func:`lattice_key`): equal lattices give equal lists, and a relative error ε in the
    cell gives about 2ε in q. Robust at the boundaries of the Niggli domain, where
    reduced parameters jump.
    """
    return keys_match(lattice_key(cell1, centring1), lattice_key(cell2, centring2), rtol)
