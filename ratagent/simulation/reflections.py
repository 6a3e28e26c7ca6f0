"""Reflection lists: unique allowed hkl, multiplicities, d-spacings and |F|².

A :class:`ReflectionList` is all that rendering needs from a structure. It stores the
unique reflections of the Laue class up to a d-spacing limit; systematically absent
reflections are **not stored** at all.

Algorithm (:func:`reflection_list`)
-----------------------------------
1. Enumerate every h ≠ 0 with 1/d² = h G* hᵀ ≤ 1/d_min² (|h| ≤ a/d_min per axis) in
   the half of reciprocal space where h is lexicographically positive (its Friedel
   mate −h is in the other half).
2. Map each h through the Laue group (point group + inversion, from gemmi);
   the largest image (lexicographic) is the representative, and twice the number of
   enumerated points sharing it is the powder multiplicity.
3. Drop representatives that are systematically absent (operation rule, see
   :func:`~.symmetry.is_absent`).
4. |F(h)|² with F(h) = Σⱼ oⱼ fⱼ(s) exp(−Bⱼ s²) exp(2πi h·xⱼ), s = sinθ/λ = 1/(2d),
   summed over all atoms of the cell; fⱼ from the IT92 four-Gaussian fit
   f(s) = Σᵢ aᵢ exp(−bᵢ s²) + c (International Tables C, Table 6.1.1.4; gemmi's copy).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ratagent.crystallography.spacegroups import crystal_system
from ratagent.simulation import lattice, symmetry
from ratagent.simulation.structures import Crystal

__all__ = [
    "ReflectionList",
    "atomic_scattering_factor",
    "from_cif",
    "from_gemmi",
    "reflection_list",
    "structure_factor_squared",
    "unique_reflections",
]


@dataclass(frozen=True, eq=False)
class ReflectionList:
    """Unique allowed reflections of one phase, sorted by decreasing d.

    Parameters
    ----------
    sg_number : int
        Space-group number 1–230.
    hall : str
        Hall symbol of the setting the indices refer to.
    cell : ndarray, shape (6,)
        a, b, c (Å), α, β, γ (degrees).
    hkl : ndarray of int32, shape (n, 3)
        One representative per Laue-equivalent set.
    multiplicity : ndarray of int32, shape (n,)
        Number of reflections (Friedel mates included) in each set.
    d : ndarray, shape (n,)
        d-spacing, Å.
    f2 : ndarray, shape (n,)
        |F|² with Debye–Waller, electrons².
    name : str
        Where the record came from (mineral name, CIF path, "random").
    """

    sg_number: int
    hall: str
    cell: np.ndarray
    hkl: np.ndarray
    multiplicity: np.ndarray
    d: np.ndarray
    f2: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        hkl = np.asarray(self.hkl, dtype=np.int32).reshape(-1, 3)
        n = hkl.shape[0]
        mult = np.asarray(self.multiplicity, dtype=np.int32).reshape(-1)
        d = np.asarray(self.d, dtype=float).reshape(-1)
        f2 = np.asarray(self.f2, dtype=float).reshape(-1)
        for label, arr in (("multiplicity", mult), ("d", d), ("f2", f2)):
            if arr.shape != (n,):
                raise ValueError(f"{label} has shape {arr.shape}, expected ({n},) like hkl")
        if n and (mult.min() < 1 or d.min() <= 0 or f2.min() < 0):
            raise ValueError("multiplicity must be >= 1, d > 0 and f2 >= 0")
        for arr in (hkl, mult, d, f2):
            arr.setflags(write=False)
        object.__setattr__(self, "cell", lattice.check_cell(self.cell))
        object.__setattr__(self, "hkl", hkl)
        object.__setattr__(self, "multiplicity", mult)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "f2", f2)

    def __len__(self) -> int:
        return int(self.hkl.shape[0])

    @property
    def crystal_system(self) -> str:
        """Crystal system of the space group (gemmi)."""
        return crystal_system(self.sg_number)

    @property
    def d_min(self) -> float:
        """Smallest stored d-spacing, Å."""
        return float(self.d.min()) if len(self) else math.inf


def unique_reflections(
    hall: str, cell: np.ndarray, d_min: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique allowed reflections with d ≥ d_min (steps 1–3 of the module docstring).

    Returns
    -------
    hkl : ndarray of int32, shape (n, 3); multiplicity : int32 (n,); d : float64 (n,),
    sorted by decreasing d, then by hkl.
    """
    if not (math.isfinite(d_min) and d_min > 0):
        raise ValueError(f"d_min must be a positive number of Å, got {d_min}")
    cell = lattice.check_cell(cell)
    gstar = lattice.reciprocal_metric(cell)
    hmax = np.floor(cell[:3] / d_min).astype(int)
    # Half of reciprocal space, h > 0 lexicographically: the Laue group holds −1, so every set
    # of equivalents is h and −h in pairs, half of them here (multiplicity: twice the count).
    h = np.arange(0, hmax[0] + 1, dtype=float)[:, None, None]
    k = np.arange(-hmax[1], hmax[1] + 1, dtype=float)[None, :, None]
    l = np.arange(-hmax[2], hmax[2] + 1, dtype=float)[None, None, :]
    # 1/d² = h G* hᵀ on the whole (h, k, l) block by broadcasting
    q2 = (gstar[0, 0] * h + 2.0 * gstar[0, 1] * k) * h + (gstar[1, 1] * k + 2.0 * gstar[1, 2] * l) * k
    q2 = q2 + (gstar[2, 2] * l + 2.0 * gstar[0, 2] * h) * l
    keep = q2 <= 1.0 / d_min**2 * (1 + 1e-12)
    keep[0, : hmax[1]] = False  # h = 0, k < 0
    keep[0, hmax[1], : hmax[2] + 1] = False  # h = k = 0, l ≤ 0
    grid = np.argwhere(keep) - np.array([0, hmax[1], hmax[2]])
    if grid.size == 0:
        empty = np.zeros((0,), np.int32)
        return np.zeros((0, 3), np.int32), empty, np.zeros(0)
    base = 2 * int(hmax.max()) * 2 + 3
    off = base // 2
    # key(h R) = ((hR)₀ + off) base² + ((hR)₁ + off) base + (hR)₂ + off = h · (R c) + off (base² + base + 1),
    # c = (base², base, 1): every image's key from one product (exact in float64: keys < 2⁵³)
    weights = symmetry.laue_rotations(hall) @ np.array([base * base, base, 1], dtype=np.int64)  # (k, 3)
    keys = grid.astype(float) @ weights.T.astype(float)
    rep_key = np.rint(keys.max(axis=1)).astype(np.int64) + off * (base * base + base + 1)
    uniq, half = np.unique(rep_key, return_counts=True)
    mult = 2 * half
    hkl = np.stack([uniq // (base * base) - off, (uniq // base) % base - off, uniq % base - off], 1)
    allowed = ~symmetry.is_absent(hkl, hall)
    hkl, mult = hkl[allowed], mult[allowed]
    d = 1.0 / np.sqrt(np.einsum("ni,ij,nj->n", hkl, gstar, hkl))
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], -d))
    return hkl[order].astype(np.int32), mult[order].astype(np.int32), d[order]


@functools.lru_cache(maxsize=256)
def _it92(element: str) -> tuple[np.ndarray, np.ndarray, float]:
    import gemmi

    el = gemmi.Element(element)
    if el.atomic_number == 0:
        raise ValueError(f"unknown element symbol {element!r}")
    coef = el.it92
    return np.asarray(coef.a, float), np.asarray(coef.b, float), float(coef.c)


def atomic_scattering_factor(element: str, s: np.ndarray) -> np.ndarray:
    """IT92 X-ray scattering factor f(s) = Σᵢ₌₁⁴ aᵢ exp(−bᵢ s²) + c, s = sinθ/λ in Å⁻¹.

    Coefficients: International Tables for Crystallography C, Table 6.1.1.4 (as in gemmi).
    """
    a, b, c = _it92(element)
    s2 = np.asarray(s, float)[..., None] ** 2
    return np.sum(a * np.exp(-b * s2), axis=-1) + c


def structure_factor_squared(crystal: Crystal, hkl: np.ndarray, d: np.ndarray) -> np.ndarray:
    """|F(h)|² = |Σⱼ oⱼ fⱼ(s) exp(−Bⱼ s²) exp(2πi h·xⱼ)|², s = 1/(2d); electrons².

    Parameters
    ----------
    crystal : Crystal
        All atoms of the cell.
    hkl : int array, shape (n, 3)
    d : array, shape (n,)
        d-spacings of ``hkl`` in Å.
    """
    hkl = np.asarray(hkl, float).reshape(-1, 3)
    s = 0.5 / np.asarray(d, float)
    names = sorted(set(crystal.elements))
    index = np.array([names.index(e) for e in crystal.elements])
    f_el = np.stack([atomic_scattering_factor(e, s) for e in names], axis=1)  # (n, n_el)
    weight = f_el[:, index] * crystal.occupancy * np.exp(-np.outer(s * s, crystal.b_iso))
    phase = 2.0 * np.pi * (hkl @ crystal.frac.T)  # (n, n_atoms)
    re = np.sum(weight * np.cos(phase), axis=1)
    im = np.sum(weight * np.sin(phase), axis=1)
    return re * re + im * im


def reflection_list(crystal: Crystal, d_min: float = 1.0, name: str = "") -> ReflectionList:
    """The :class:`ReflectionList` of a crystal down to ``d_min`` Å (module docstring)."""
    hkl, mult, d = unique_reflections(crystal.hall, crystal.cell, d_min)
    f2 = structure_factor_squared(crystal, hkl, d)
    return ReflectionList(crystal.sg_number, crystal.hall, crystal.cell, hkl, mult, d, f2, name)


def from_gemmi(small, d_min: float = 1.0, name: str | None = None) -> ReflectionList:
    """Build a :class:`ReflectionList` from a ``gemmi.SmallStructure`` (e.g. a read CIF).

    The structure's own setting is kept (its Hall symbol); atoms come from gemmi's
    unit-cell expansion; B = 8π² U_iso.
    """
    sg = small.find_spacegroup() if hasattr(small, "find_spacegroup") else small.spacegroup
    if sg is None:
        raise ValueError(
            f"structure {small.name!r} names no space group gemmi knows "
            f"(H-M {small.spacegroup_hm!r}, Hall {small.spacegroup_hall!r})"
        )
    sites = small.get_all_unit_cell_sites()
    if len(sites) == 0:
        raise ValueError(f"structure {small.name!r} has no atom sites")
    c = small.cell
    crystal = Crystal(
        sg.number,
        sg.hall,
        np.array([c.a, c.b, c.c, c.alpha, c.beta, c.gamma]),
        np.array([[s.fract.x, s.fract.y, s.fract.z] for s in sites]),
        tuple(s.element.name for s in sites),
        np.array([8.0 * np.pi**2 * s.u_iso for s in sites]),
        np.array([s.occ for s in sites]),
    )
    return reflection_list(crystal, d_min, name if name is not None else small.name)


def from_cif(path: str | Path, d_min: float = 1.0, name: str | None = None) -> ReflectionList:
    """Read a small-molecule/mineral CIF with gemmi and build its :class:`ReflectionList`."""
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        small = gemmi.read_small_structure(str(path))
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: gemmi cannot read it as a small structure ({exc})") from None
    try:
        return from_gemmi(small, d_min, name if name is not None else path.stem)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
