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

import itertools
import math

import gemmi
import numpy as np

from ratagent.crystallography.cell import cell_volume, check_cell, metric_tensor

__all__ = [
    "cell_from_form",
    "cell_volume",
    "form_from_cell",
    "higher_metric_cells",
    "keys_match",
    "lattice_key",
    "lattice_q_values",
    "metric_family",
    "niggli_cell",
    "same_lattice",
]


def form_from_cell(cell: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Quadratic-form coefficients ``(A, B, C, D, E, F)`` in Å⁻² of a cell ``(a, b, c, α, β, γ)``.

    ``A = a*², B = b*², C = c*², D = 2 a* b* cos γ*, E = 2 a* c* cos β*, F = 2 b* c* cos α*``.
    """
    g = np.linalg.inv(metric_tensor(cell))
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


def niggli_cell(cell: np.ndarray | tuple[float, ...], centring: str = "P") -> np.ndarray:
    """Niggli-reduced primitive cell of a lattice given by a conventional cell and its centring.

    Parameters
    ----------
    cell : (a, b, c, α, β, γ)
    centring : {"P", "A", "B", "C", "I", "F", "R"}
        Lattice centring of ``cell`` (``R``: obverse rhombohedral on hexagonal axes).
    """
    cell = check_cell(cell)
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
    return metric_tensor(np.array(gv.cell_parameters()))


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


#: Lattice family of each number of lattice rotations (the holohedry's proper rotations).
_FAMILY_BY_ROTATIONS = {
    1: "triclinic",
    2: "monoclinic",
    4: "orthorhombic",
    6: "hexagonal",
    8: "tetragonal",
    12: "hexagonal",
    24: "cubic",
}
#: Integer vectors, |x_i| ≤ 4, that lattice rows and planes are looked up among.
_SMALL_VECTORS = np.array(
    [v for v in itertools.product(range(-4, 5), repeat=3) if any(v)], dtype=int
)


def _lattice_rotations(cell: np.ndarray | tuple[float, ...], centring: str, tolerance_deg: float):
    """The Niggli-reduced primitive cell and the proper rotations (integer 3 × 3 on its
    fractional coordinates) of its lattice's metric within ``tolerance_deg`` obliquity."""
    prim = niggli_cell(cell, centring)
    ops = gemmi.find_lattice_symmetry(gemmi.UnitCell(*prim), "P", float(tolerance_deg))
    return prim, [np.array(op.rot, dtype=int) // gemmi.Op.DEN for op in ops.sym_ops]


def metric_family(cell: np.ndarray | tuple[float, ...], centring: str, tolerance_deg: float) -> str:
    """The lattice family of a cell's metric: its twofold axes within ``tolerance_deg``
    obliquity (Le Page, J. Appl. Cryst. 15, 255 (1982), as gemmi's ``find_lattice_symmetry``)."""
    _, rotations = _lattice_rotations(cell, centring, tolerance_deg)
    return _FAMILY_BY_ROTATIONS.get(len(rotations), "triclinic")


def _shortest(vectors: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """``vectors`` (n, 3) sorted by length in ``metric``."""
    return vectors[np.argsort(np.einsum("ni,ij,nj->n", vectors, metric, vectors), kind="stable")]


def higher_metric_cells(
    cell: np.ndarray | tuple[float, ...], centring: str, tolerance_deg: float
) -> list[tuple[str, np.ndarray]]:
    """Conventional cells of the monoclinic or orthorhombic metric a cell has within
    ``tolerance_deg`` (:func:`metric_family`), to be refined in that system.

    The lattice rows along the twofold axes of the metric are the conventional axes: b
    along the monoclinic one, with a and c the reduced basis of the lattice plane normal
    to it (β obtuse); a, b, c along the three orthorhombic ones. The axes may span a
    sublattice of index 2 or 4 of the lattice: a refinement of the cell finds the
    centring from the lines. Empty for a triclinic metric and for the families above
    orthorhombic (whose cells the trial search finds).
    """
    prim, rotations = _lattice_rotations(cell, centring, tolerance_deg)
    family = _FAMILY_BY_ROTATIONS.get(len(rotations), "triclinic")
    if family not in ("monoclinic", "orthorhombic"):
        return []
    g = metric_tensor(prim)
    eye = np.eye(3, dtype=int)
    twofolds = [r for r in rotations if np.trace(r) == -1]

    def kernel(m: np.ndarray) -> np.ndarray:
        """The small integer vectors x with m x = 0, shortest first."""
        return _shortest(_SMALL_VECTORS[np.all(_SMALL_VECTORS @ m.T == 0, axis=1)], g)

    axes = [kernel(r - eye)[0] for r in twofolds]
    if family == "orthorhombic":
        lengths = [math.sqrt(float(u @ g @ u)) for u in axes]
        return [(family, np.array([*lengths, 90.0, 90.0, 90.0]))]
    (r,), (u,) = twofolds, axes
    plane = kernel(r + eye)
    w1 = plane[0]
    w2 = next(w for w in plane if np.any(np.cross(w1, w) != 0))
    for _ in range(20):  # Gauss reduction of the plane: |2 w1·w2| ≤ w1² ≤ w2²
        if w1 @ g @ w1 > w2 @ g @ w2:
            w1, w2 = w2, w1
        m = round(float(w1 @ g @ w2) / float(w1 @ g @ w1))
        if m == 0:
            break
        w2 = w2 - m * w1
    if w1 @ g @ w2 > 0:
        w2 = -w2  # obtuse β
    a, b, c = (math.sqrt(float(v @ g @ v)) for v in (w1, u, w2))
    beta = math.degrees(math.acos(float(w1 @ g @ w2) / (a * c)))
    return [(family, np.array([a, b, c, 90.0, beta, 90.0]))]
