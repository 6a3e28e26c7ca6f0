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


def lattice_q_values(cell: np.ndarray | tuple[float, ...], n: int = 30, centring: str = "P") -> np.ndarray:
    """The ``n`` smallest q = 1/d² (Å⁻²) of all lattice rows, with multiplicity, ascending.

    Two lattices with the same values are the same lattice as far as a powder pattern can
    tell; this comparison does not depend on the choice of cell.
    """
    red = niggli_cell(cell, centring)
    form = form_from_cell(red)
    r = np.arange(-4, 5)
    h, k, l = (x.ravel() for x in np.meshgrid(r, r, r, indexing="ij"))
    q = (
        h * h * form[0]
        + k * k * form[1]
        + l * l * form[2]
        + h * k * form[3]
        + h * l * form[4]
        + k * l * form[5]
    )
    q = np.sort(q[q > 0])
    return q[:n]


def same_lattice(
    cell1: np.ndarray | tuple[float, ...],
    cell2: np.ndarray | tuple[float, ...],
    rtol: float = 1e-3,
    centring1: str = "P",
    centring2: str = "P",
) -> bool:
    """Whether two cells describe the same lattice within a relative tolerance on d.

    Compares the 30 smallest q = 1/d² of the two (Niggli-reduced, primitive) lattices:
    equal lattices give equal lists, and a relative error ε in the cell gives about 2ε
    in q. Robust at the boundaries of the Niggli domain, where reduced parameters jump.
    """
    q1 = lattice_q_values(cell1, centring=centring1)
    q2 = lattice_q_values(cell2, centring=centring2)
    return bool(np.all(np.abs(q1 - q2) <= 2.0 * rtol * q2))
