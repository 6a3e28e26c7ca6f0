"""Cells under crystal-system constraints, and the reflections an extinction group allows.

The lattice is parameterised by the free coefficients g of the reciprocal metric,
so that 1/d² is **linear** in them:

    1/d²(hkl) = h G* hᵀ = Σᵢ gᵢ κᵢ(hkl),

with integer invariants κ fixed by the lattice system (monoclinic: by the unique axis):

=============  ==========================================  ==========================
system         invariants κ                                 g
=============  ==========================================  ==========================
cubic          h² + k² + l²                                 1/a²
tetragonal     h² + k², l²                                  1/a², 1/c²
hexagonal      h² + hk + k², l²                             4/(3a²), 1/c²
orthorhombic   h², k², l²                                   G*₁₁, G*₂₂, G*₃₃
monoclinic     h², k², l², (the two indices off the axis)  G*₁₁, G*₂₂, G*₃₃, 2G*ᵢⱼ
triclinic      h², k², l², kl, hl, hk                       G*₁₁, G*₂₂, G*₃₃, 2G*₂₃, 2G*₁₃, 2G*₁₂
=============  ==========================================  ==========================

Reflections with the same κ have the same d for **every** cell of the system (the
holohedry's orbits and the metric coincidences such as cubic 333/511), so they are
merged into one *family* with one intensity: a powder cannot tell them apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import gemmi
import numpy as np

from ratagent.crystallography import (
    eg_settings,
    extinction_group,
    monoclinic_unique_axis,
    systematically_absent,
)
from ratagent.crystallography.cell import check_cell, metric_tensor

__all__ = [
    "LatticeModel",
    "Reflections",
    "allowed_reflections",
    "check_cell",
    "lattice_model",
    "settings_for_cell",
    "unique_rows",
]

#: Largest relative difference of lengths, and of angles in degrees, for which a given
#: cell counts as having the metric of a crystal system (a = b for tetragonal, ...).
#: Generous, because the caller's cell is approximate (indexing, a database).
LENGTH_TOLERANCE = 0.03
ANGLE_TOLERANCE_DEG = 2.0

_AXES = "abc"


def _cell_from_metric(g: np.ndarray) -> np.ndarray:
    lengths = np.sqrt(np.diag(g))
    cos = [
        g[1, 2] / (lengths[1] * lengths[2]),
        g[0, 2] / (lengths[0] * lengths[2]),
        g[0, 1] / (lengths[0] * lengths[1]),
    ]
    return np.concatenate([lengths, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))])


@dataclass(frozen=True)
class LatticeModel:
    """The constrained lattice of one crystal system (and unique axis, if monoclinic)."""

    system: str  # lattice system: cubic, tetragonal, hexagonal, orthorhombic, monoclinic, triclinic
    unique_axis: str = ""  # "a", "b" or "c" for monoclinic, else ""

    @property
    def n_params(self) -> int:
        """Number of free lattice parameters."""
        return {"cubic": 1, "tetragonal": 2, "hexagonal": 2, "orthorhombic": 3, "monoclinic": 4}.get(
            self.system, 6
        )

    def invariants(self, hkl: np.ndarray) -> np.ndarray:
        """Integer invariants κ(hkl), shape (n, n_params) (see the module table)."""
        h, k, l = (np.asarray(hkl, np.int64)[:, i] for i in range(3))
        cols: list[np.ndarray]
        if self.system == "cubic":
            cols = [h * h + k * k + l * l]
        elif self.system == "tetragonal":
            cols = [h * h + k * k, l * l]
        elif self.system == "hexagonal":
            cols = [h * h + h * k + k * k, l * l]
        elif self.system == "orthorhombic":
            cols = [h * h, k * k, l * l]
        elif self.system == "monoclinic":
            cross = {"a": k * l, "b": h * l, "c": h * k}[self.unique_axis]
            cols = [h * h, k * k, l * l, cross]
        else:
            cols = [h * h, k * k, l * l, k * l, h * l, h * k]
        return np.stack(cols, axis=1)

    def metric_params(self, cell: np.ndarray) -> np.ndarray:
        """Free reciprocal-metric coefficients g of the cell, symmetrised to this system."""
        gs = np.linalg.inv(metric_tensor(self.symmetrised(cell)))
        if self.system in ("cubic", "tetragonal", "hexagonal"):
            return np.array([gs[0, 0], gs[2, 2]][: self.n_params])
        if self.system == "orthorhombic":
            return np.diag(gs).copy()
        if self.system == "monoclinic":
            i, j = {"a": (1, 2), "b": (0, 2), "c": (0, 1)}[self.unique_axis]
            return np.array([gs[0, 0], gs[1, 1], gs[2, 2], 2 * gs[i, j]])
        return np.array([gs[0, 0], gs[1, 1], gs[2, 2], 2 * gs[1, 2], 2 * gs[0, 2], 2 * gs[0, 1]])

    def cell(self, g: np.ndarray) -> np.ndarray:
        """The cell (a, b, c, α, β, γ) of reciprocal-metric coefficients g.

        Raises ValueError if g is not a positive-definite metric.
        """
        g = np.asarray(g, float)
        gs = np.zeros((3, 3))
        if self.system == "cubic":
            np.fill_diagonal(gs, g[0])
        elif self.system == "tetragonal":
            gs[0, 0] = gs[1, 1] = g[0]
            gs[2, 2] = g[1]
        elif self.system == "hexagonal":
            gs[0, 0] = gs[1, 1] = g[0]
            gs[0, 1] = gs[1, 0] = g[0] / 2
            gs[2, 2] = g[1]
        else:
            np.fill_diagonal(gs, g[:3])
            if self.system == "monoclinic":
                i, j = {"a": (1, 2), "b": (0, 2), "c": (0, 1)}[self.unique_axis]
                gs[i, j] = gs[j, i] = g[3] / 2
            elif self.system == "triclinic":
                gs[1, 2] = gs[2, 1] = g[3] / 2
                gs[0, 2] = gs[2, 0] = g[4] / 2
                gs[0, 1] = gs[1, 0] = g[5] / 2
        if np.linalg.eigvalsh(gs).min() <= 0:
            raise ValueError(
                f"reciprocal-metric coefficients {g.tolist()} are not a positive-definite metric"
            )
        return _cell_from_metric(np.linalg.inv(gs))

    def symmetrised(self, cell: np.ndarray) -> np.ndarray:
        """The nearest cell with this system's equalities (means of lengths, fixed angles)."""
        a, b, c = cell[:3]
        if self.system == "cubic":
            m = (a + b + c) / 3
            return np.array([m, m, m, 90.0, 90.0, 90.0])
        if self.system == "tetragonal":
            return np.array([(a + b) / 2, (a + b) / 2, c, 90.0, 90.0, 90.0])
        if self.system == "hexagonal":
            return np.array([(a + b) / 2, (a + b) / 2, c, 90.0, 90.0, 120.0])
        if self.system == "orthorhombic":
            return np.array([a, b, c, 90.0, 90.0, 90.0])
        if self.system == "monoclinic":
            out = np.array([a, b, c, 90.0, 90.0, 90.0])
            i = _AXES.index(self.unique_axis)
            out[3 + i] = cell[3 + i]
            return out
        return np.asarray(cell, float).copy()

    def compatible(self, cell: np.ndarray) -> bool:
        """Whether the cell has this system's metric within the module's tolerances."""
        sym = self.symmetrised(cell)
        dl = np.max(np.abs(sym[:3] - cell[:3]) / cell[:3])
        da = np.max(np.abs(sym[3:] - cell[3:]))
        return bool(dl <= LENGTH_TOLERANCE and da <= ANGLE_TOLERANCE_DEG)


def lattice_model(eg: int, setting: gemmi.SpaceGroup) -> LatticeModel:
    """The constrained lattice of an EG in one of its settings."""
    system = extinction_group(eg).lattice_family
    return LatticeModel(system, monoclinic_unique_axis(setting) if system == "monoclinic" else "")


def settings_for_cell(eg: int, cell: np.ndarray) -> tuple[gemmi.SpaceGroup, ...]:
    """The settings of an EG (:func:`~ratagent.crystallography.eg_settings`) whose lattice fits the cell.

    With a given cell the setting matters: P 1 21/c 1 and P 1 21/n 1 forbid different
    reflections of the same cell. Every setting whose lattice constraints the cell meets
    (within ``LENGTH_TOLERANCE``, ``ANGLE_TOLERANCE_DEG``) is returned; the caller fits or
    screens each. Empty when none does (e.g. a cubic EG with a monoclinic cell).
    """
    return tuple(s for s in eg_settings(eg) if lattice_model(eg, s).compatible(cell))


@dataclass(frozen=True, eq=False)
class Reflections:
    """Allowed reflection families of one setting, sorted by decreasing d.

    hkl : (n, 3) int, a representative of each family (largest lexicographically);
    multiplicity : (n,) int, the number of allowed hkl (Friedel mates included) in it;
    kappa : (n, p) int, the invariants κ, so 1/d² = κ @ g;
    members : (N, 3) int, every allowed hkl; member_family : (N,) its family index.
    """

    setting: str  # extended H–M symbol of the setting (gemmi ``xhm``)
    lattice: LatticeModel
    hkl: np.ndarray
    multiplicity: np.ndarray
    kappa: np.ndarray
    members: np.ndarray
    member_family: np.ndarray

    def __len__(self) -> int:
        return int(self.hkl.shape[0])

    def inv_d2(self, g: np.ndarray) -> np.ndarray:
        """1/d² of each family for metric coefficients g, Å⁻²."""
        return self.kappa @ np.asarray(g, float)


@cache
def _box(hmax: tuple[int, int, int]) -> np.ndarray:
    ranges = [np.arange(-m, m + 1) for m in hmax]
    box = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    box = box[np.any(box != 0, axis=1)].astype(np.int32)
    box.setflags(write=False)
    return box


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_inverse=True, return_counts=True)`` for integer rows,
    the inverse flat.

    The rows are packed into one int64 each (mixed radix over their columns' ranges, the
    first column most significant, so their order is the rows' lexicographic order) and
    made unique as numbers, about four times faster than row-wise; rows whose ranges do
    not fit 62 bits (and empty input) take numpy's row-wise path.
    """
    rows = np.asarray(rows, np.int64)
    low = rows.min(0) if rows.ndim == 2 and rows.shape[0] else None
    span = None if low is None else rows.max(0) - low + 1
    if span is None or float(np.prod(span.astype(float))) >= 2.0**62:
        keys, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        return keys, inverse.reshape(-1), counts
    weight = np.ones(rows.shape[1], np.int64)
    for i in range(rows.shape[1] - 2, -1, -1):
        weight[i] = weight[i + 1] * span[i + 1]
    packed = (rows - low) @ weight
    _, first, inverse, counts = np.unique(packed, return_index=True, return_inverse=True, return_counts=True)
    return rows[first], inverse.reshape(-1), counts


def allowed_reflections(
    lattice: LatticeModel, setting: gemmi.SpaceGroup, cell: np.ndarray, d_min: float
) -> Reflections:
    """Families of reflections allowed by a setting with d ≥ ``d_min`` in the given cell.

    ``lattice`` is the constrained lattice of the EG in that setting (:func:`lattice_model`);
    ``setting`` may also be ``P 1`` (nothing forbidden: the reference fit of :mod:`.ranking`).

    1. Enumerate hkl with |h| ≤ ⌈a/d_min⌉ (likewise k, l) and 1/d² ≤ 1/d_min² in the
       cell symmetrised to the EG's system.
    2. Drop those the setting forbids (gemmi, :func:`~ratagent.crystallography.systematically_absent`).
    3. Merge hkl with equal invariants κ into families (equal d for every cell of the system).
    """
    if not (math.isfinite(d_min) and d_min > 0):
        raise ValueError(f"d_min must be a positive number of Å, got {d_min!r}")
    model = lattice
    sym = model.symmetrised(check_cell(cell))
    g = model.metric_params(sym)
    hmax = tuple(int(math.ceil(x / d_min)) for x in sym[:3])
    if np.prod([2 * m + 1 for m in hmax]) > 5_000_000:
        raise ValueError(
            f"cell {sym.tolist()} with d_min={d_min:.3f} Å needs too many reflections (hkl ≤ {hmax})"
        )
    box = _box(hmax)
    kappa = model.invariants(box)
    keep = kappa @ g <= 1.0 / d_min**2
    box, kappa = box[keep], kappa[keep]
    allowed = ~systematically_absent(setting, box)
    box, kappa = box[allowed], kappa[allowed]
    if box.shape[0] == 0:
        empty = np.zeros((0, 3), np.int32)
        none = np.zeros(0, np.int64)
        return Reflections(
            setting.xhm(), model, empty, none, np.zeros((0, model.n_params), np.int64), empty, none
        )
    keys, inverse, counts = unique_rows(kappa)
    # representative: the lexicographically largest hkl of each family
    order = np.lexsort((box[:, 2], box[:, 1], box[:, 0], inverse))
    last = np.r_[np.flatnonzero(np.diff(inverse[order])), order.size - 1]
    rep = box[order[last]]
    by_d = np.argsort(keys @ g, kind="stable")
    rank = np.empty_like(by_d)
    rank[by_d] = np.arange(by_d.size)
    return Reflections(
        setting.xhm(),
        model,
        rep[by_d],
        counts[by_d].astype(np.int64),
        keys[by_d].astype(np.int64),
        box,
        rank[inverse],
    )
