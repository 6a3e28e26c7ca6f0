"""Crystal structures: the :class:`Crystal` type, builders from sites, random structures.

A :class:`Crystal` holds every atom of the unit cell (the orbits already expanded),
so a structure factor is a plain sum over atoms.

Random structures (:func:`random_crystal`)
------------------------------------------
1. Draw the cell shape within the crystal system (:func:`~.lattice.random_cell`).
2. Draw 1–``max_sites`` sites and the elements on them: 2–4 draws from
   :data:`ELEMENT_POOL`, or, with a :class:`Composition`, the number of distinct elements
   and the elements themselves from published statistics of real structures
   (:func:`composition`). Each site is, with equal odds,
   a general position (uniform x), or a special position: x is projected onto the
   fixed set of one (sometimes two) random operations g = (R, t) whose intrinsic
   translation w = (1/n) Σₖ Rᵏ t is a lattice vector (rotation axes, mirrors,
   inversion centres; screws and glides have no fixed points) by averaging
   p = (1/n) Σₖ g'ᵏ(x) with g' = (R, t − w).
3. Expand each site's orbit with gemmi's operations, modulo lattice translations.
4. Scale the cell to ``volume_per_atom`` × number of atoms and reject sites that
   bring two atoms closer than ``min_distance`` Å; finally enlarge the cell until no two
   atoms, lattice images included, are closer than that (one atom's orbit may repeat on
   a finer lattice, e.g. an inversion centre of P2₁/m and its 2₁ image at (0, ½, 0)).
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import NoReturn

import numpy as np

from ratagent.crystallography.spacegroups import crystal_system
from ratagent.simulation import lattice, symmetry

__all__ = [
    "COMPOSITIONS",
    "ELEMENT_POOL",
    "ICSD_ELEMENT_COUNTS",
    "Composition",
    "Crystal",
    "composition",
    "crystal_from_sites",
    "random_crystal",
]

#: Elements random structures draw from: common rock-forming and light elements, so that
#: the scattering powers span Li–Pb. Scattering factors come from gemmi's IT92 tables.
ELEMENT_POOL = (
    "O", "O", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Ti",
    "Mn", "Fe", "Ni", "Cu", "Zn", "Sr", "Zr", "Ba", "La", "Pb", "C", "N", "Li",
)  # fmt: skip
_MAX_ATOMS = 256  # atoms per cell; keeps reflection lists and F sums bounded

#: Entries of the ICSD by number of elements, from FIZ Karlsruhe's "ICSD Content" page (May
#: 2014, 169 800 entries; http://www.fiz-karlsruhe.de/icsd_content.html): 1 854 structures of
#: the elements, 33 112 binary, 63 927 ternary and 59 327 quaternary and quintenary compounds.
#: The page gives the last two together; they are split evenly here. The 11 580 entries the
#: page does not count in these four (6.8 %) are left out.
ICSD_ELEMENT_COUNTS = ((1, 1854.0), (2, 33112.0), (3, 63927.0), (4, 59327.0 / 2), (5, 59327.0 / 2))


@dataclass(frozen=True, eq=False)
class Composition:
    """Which elements a random structure holds: how many distinct ones, and which.

    ``n_elements`` pairs each number k of distinct elements with its weight; ``elements``
    and ``weights`` are the elements and their weights, drawn one after another without
    replacement (so the frequent ones are in more structures than the rare ones, but
    their shares of the elements drawn are flatter than their weights).
    """

    name: str
    n_elements: tuple[tuple[int, float], ...]
    elements: tuple[str, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        def fail(problem: str) -> NoReturn:
            raise ValueError(f"composition {self.name!r}: {problem}")

        w = np.asarray(self.weights, float)
        if not self.elements or len(w) != len(self.elements):
            fail(f"{len(self.elements)} elements and {len(w)} weights")
        if not (np.all(np.isfinite(w)) and np.all(w > 0)):
            fail("element weights must be finite and positive")
        counts = np.array([k for k, _ in self.n_elements], int)
        p_count = np.array([p for _, p in self.n_elements], float)
        if not len(counts) or np.any(counts < 1) or counts.max() > len(w):
            fail(f"element counts must lie in 1–{len(w)}, got {counts.tolist()}")
        if not (np.all(np.isfinite(p_count)) and np.all(p_count >= 0) and p_count.sum() > 0):
            fail("count weights must be finite, at least 0 and not all 0")

    def draw(self, rng: np.random.Generator, max_elements: int | None = None) -> list[str]:
        """Distinct elements of one structure, in random order; with ``max_elements``, the
        counts up to it keep their relative weights."""
        pairs = [(k, w) for k, w in self.n_elements if max_elements is None or k <= max_elements]
        p_count = np.array([w for _, w in pairs], float)
        if not pairs or p_count.sum() <= 0:
            raise ValueError(f"composition {self.name!r}: no element count up to {max_elements}")
        k = int(pairs[int(rng.choice(len(pairs), p=p_count / p_count.sum()))][0])
        w = np.asarray(self.weights, float)
        picks = rng.choice(len(self.elements), size=k, replace=False, p=w / w.sum())
        # rng.choice draws the heavy elements first: a site that cannot be placed must not
        # always cost the rarest one
        return [self.elements[int(i)] for i in rng.permutation(picks)]


#: Names of the compositions :func:`composition` knows. ``"pool"`` is :data:`ELEMENT_POOL`
#: as :func:`random_crystal` draws it without a composition.
COMPOSITIONS = ("pool", "icsd")


@functools.cache
def composition(name: str) -> Composition | None:
    """The named element statistics for :func:`random_crystal` (None for ``"pool"``).

    ``"icsd"``: the number of distinct elements as in the ICSD
    (:data:`ICSD_ELEMENT_COUNTS`), and the elements weighted by their occurrence in the
    ICSD bond-valence statistics that pymatgen ships (``pymatgen/core/icsd_bv.yaml``, the
    prior of its ``BVAnalyzer``), summed over oxidation states:
    ``ratagent/simulation/data/icsd_element_occurrence.csv`` (75 elements, O 30 %, S 5 %,
    F 5 %, …; provenance in ``data/PROVENANCE.md``).
    """
    if name == "pool":
        return None
    if name != "icsd":
        raise ValueError(f"unknown composition {name!r}; known: {', '.join(COMPOSITIONS)}")
    path = files("ratagent.simulation") / "data" / "icsd_element_occurrence.csv"
    text = path.read_text(encoding="utf-8")
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    return Composition(name, ICSD_ELEMENT_COUNTS, tuple(r["element"] for r in rows),
                       tuple(float(r["occurrences"]) for r in rows))


@dataclass(frozen=True, eq=False)
class Crystal:
    """All atoms of one unit cell.

    Parameters
    ----------
    sg_number : int
        Space-group number 1–230.
    hall : str
        Hall symbol of the setting the coordinates refer to.
    cell : ndarray, shape (6,)
        a, b, c (Å), α, β, γ (degrees).
    frac : ndarray, shape (n, 3)
        Fractional coordinates of every atom in the cell.
    elements : tuple of str, length n
        Element symbols.
    b_iso : ndarray, shape (n,)
        Isotropic displacement B = 8π²U, Å².
    occupancy : ndarray, shape (n,)
    """

    sg_number: int
    hall: str
    cell: np.ndarray
    frac: np.ndarray
    elements: tuple[str, ...]
    b_iso: np.ndarray
    occupancy: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.elements)
        frac = np.asarray(self.frac, float).reshape(-1, 3)
        b = np.broadcast_to(np.asarray(self.b_iso, float), (n,)).copy()
        occ = np.broadcast_to(np.asarray(self.occupancy, float), (n,)).copy()
        if frac.shape[0] != n:
            raise ValueError(f"frac has {frac.shape[0]} rows but there are {n} elements")
        if n == 0:
            raise ValueError("a crystal needs at least one atom")
        if np.any(b < 0) or not np.all(np.isfinite(b)):
            raise ValueError(f"b_iso must be finite and non-negative Å², got {b.tolist()}")
        object.__setattr__(self, "cell", lattice.check_cell(self.cell))
        object.__setattr__(self, "frac", frac % 1.0)
        object.__setattr__(self, "b_iso", b)
        object.__setattr__(self, "occupancy", occ)
        object.__setattr__(self, "elements", tuple(self.elements))

    def __len__(self) -> int:
        return len(self.elements)


def crystal_from_sites(
    sg_number: int,
    cell: Sequence[float],
    sites: Sequence[tuple[str, Sequence[float]]],
    *,
    b_iso: float | Sequence[float] = 0.0,
    occupancy: float | Sequence[float] = 1.0,
    hall: str | None = None,
) -> Crystal:
    """Build a :class:`Crystal` from the asymmetric unit, expanding orbits with gemmi.

    Parameters
    ----------
    sg_number : int
        Space-group number; its gemmi reference setting is used unless ``hall`` is given.
    cell : (a, b, c, α, β, γ)
    sites : sequence of (element, (x, y, z))
        One entry per Wyckoff site of the asymmetric unit.
    b_iso, occupancy : float or sequence (one per site)
    hall : str, optional
        Hall symbol of a non-reference setting.
    """
    hall = hall or symmetry.hall_symbol(sg_number)
    n_sites = len(sites)
    bs = np.broadcast_to(np.asarray(b_iso, float), (n_sites,))
    occs = np.broadcast_to(np.asarray(occupancy, float), (n_sites,))
    frac, els, b_all, occ_all = [], [], [], []
    for (el, xyz), b, occ in zip(sites, bs, occs, strict=True):
        pts = symmetry.orbit(np.asarray(xyz, float), hall)
        frac.append(pts)
        els += [el] * len(pts)
        b_all += [b] * len(pts)
        occ_all += [occ] * len(pts)
    return Crystal(
        sg_number,
        hall,
        np.asarray(cell, float),
        np.concatenate(frac),
        tuple(els),
        np.asarray(b_all),
        np.asarray(occ_all),
    )


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """``np.allclose(a, b, atol=1e-6)`` for small arrays, without its overhead."""
    return bool(np.all(np.abs(a - b) <= 1e-6 + 1e-5 * np.abs(b)))


@functools.lru_cache(maxsize=1024)
def _fixed_point_projectors(hall: str) -> tuple[np.ndarray | None, ...]:
    """For each operation g = (R, t) of the group, the affine map x ↦ P x + q onto its fixed set
    as a 4 × 4 matrix [[P, q], [0, 1]], or None.

    The map is x ↦ (1/n) Σₖ g'ᵏ(x), k = 0 … n − 1, with n the order of R and g' = (R, t − w),
    w = (1/n) Σₖ Rᵏ t the intrinsic translation; ops whose w is not a lattice vector (screws,
    glides) and the identity have no fixed point of their own (None). Since
    g'ᵏ(x) = Rᵏ x + Σ_{m<k} Rᵐ t', P = (1/n) Σₖ Rᵏ and q = (1/n) Σₖ Σ_{m<k} Rᵐ t'.
    """
    rots, trans = symmetry.space_group_ops(hall)
    eye = np.eye(3, dtype=np.int64)
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for rot, tran in zip(np.rint(rots).astype(np.int64), trans, strict=True):
        powers = [eye]
        while len(powers) <= 6 and not np.array_equal(powers[-1] @ rot, eye):
            powers.append(powers[-1] @ rot)
        n = len(powers)
        if n == 1 or n > 6:
            out.append(None)
            continue
        w = sum(pk @ tran for pk in powers) / n
        if not _close(w, np.round(w)):
            out.append(None)  # screw axis or glide plane: no fixed point
            continue
        t = tran - np.round(w)
        shifts = np.cumsum([np.zeros(3)] + [pk @ t for pk in powers[:-1]], axis=0)  # Σ_{m<k} Rᵐ t
        affine = np.eye(4)
        affine[:3, :3], affine[:3, 3] = sum(powers) / n, shifts.sum(0) / n
        affine.setflags(write=False)
        out.append(affine)
    return tuple(out)


def _special_position(hall: str, rng: np.random.Generator) -> np.ndarray:
    table = _fixed_point_projectors(hall)
    x = rng.random(3)
    order = rng.permutation(len(table))
    projectors = []
    for i in order:
        if table[i] is not None:
            projectors.append(table[i])
            if len(projectors) == (2 if rng.random() < 0.4 else 1):
                break
    if not projectors:
        return x
    # alternating projections onto the fixed sets, 12 rounds, as one affine map
    step = projectors[0]
    for affine in projectors[1:]:
        step = affine @ step
    rounds = np.linalg.matrix_power(step, 12)
    y = rounds[:3, :3] @ x + rounds[:3, 3]
    if len(projectors) > 1:
        first = projectors[0]
        if not _close(first[:3, :3] @ y + first[:3, 3], y):
            y = first[:3, :3] @ x + first[:3, 3]  # the two fixed sets do not meet here; keep one
    return y % 1.0


def _min_distance(
    frac: np.ndarray, new: np.ndarray, cell: np.ndarray | None, chol: np.ndarray | None = None
) -> float:
    """Smallest distance (Å) between ``new`` atoms and all atoms (``frac`` and ``new``).

    ``chol``, when given instead of ``cell``, is the Cholesky factor L of the cell's metric
    tensor G = L Lᵀ.
    """
    if chol is None:
        chol = np.linalg.cholesky(lattice.metric_tensor(cell))
    pts = np.concatenate([frac, new]) if len(frac) else new
    diff = new[:, None, :] - pts[None, :, :]
    diff -= np.rint(diff)  # minimum image in fractional coordinates (cells are not too skew)
    # |x|² = xᵀ G x = |Lᵀ x|² with G = L Lᵀ, i.e. the row vector x L for rows of fractions
    v = diff @ chol
    d2 = (v * v).sum(-1)
    own = np.arange(len(new))
    d2[own, len(frac) + own] = np.inf  # an atom and itself
    return float(np.sqrt(d2.min())) if d2.size else np.inf


_SHIFTS = np.array(list(np.ndindex(3, 3, 3))) - 1  # lattice translations with components −1, 0, 1


def shortest_distance(frac: np.ndarray, cell: np.ndarray) -> float:
    """Shortest distance (Å) between two atoms of a periodic structure, lattice images included.

    Every pair (an atom with itself too) at every translation within ±1 cell along each
    axis, so exact for cells whose reduced angles are not far from 90°; used to scale
    random cells, where that holds. Atoms closer than 10⁻⁹ Å count as one. The nearest
    neighbours come from a k-d tree of the 27 n images (n log n, not n² · 27).
    """
    from scipy.spatial import cKDTree

    frac = np.asarray(frac, dtype=float)
    chol = np.linalg.cholesky(lattice.metric_tensor(cell))  # row vectors x ↦ x L, Cartesian
    home = frac @ chol
    images = ((frac[None, :, :] + _SHIFTS[:, None, :]).reshape(-1, 3)) @ chol
    # the nearest image of each atom is itself (zero translation); the next is its nearest neighbour
    dist = cKDTree(images).query(home, k=2)[0]
    if np.all(dist[:, 1] >= 1e-9):
        return float(dist[:, 1].min())
    diff = (home[:, None, None, :] - images.reshape(len(_SHIFTS), len(frac), 3)[None]).reshape(-1, 3)
    d = np.linalg.norm(diff, axis=1)  # coincident atoms: every distance, those above 1e-9
    return float(d[d >= 1e-9].min())


def random_crystal(
    sg_number: int,
    rng: np.random.Generator,
    *,
    max_sites: int = 5,
    volume_per_atom: tuple[float, float] = (10.0, 22.0),
    b_iso: tuple[float, float] = (0.3, 1.5),
    min_distance: float = 1.6,
    max_atoms: int = _MAX_ATOMS,
    elements: Composition | None = None,
) -> Crystal:
    """A random crystal structure in space group ``sg_number`` (algorithm: module docstring).

    Parameters
    ----------
    sg_number : int
        1–230; gemmi's reference setting (rhombohedral groups hexagonal).
    rng : numpy.random.Generator
    max_sites : int
        Most Wyckoff sites in the asymmetric unit (at least one is placed).
    volume_per_atom : (low, high)
        Range of V / n_atoms, Å³ (inorganic solids: about 10–25 Å³).
    b_iso : (low, high)
        Range of isotropic B per element, Å².
    min_distance : float
        Closest allowed approach of two atoms, Å.
    max_atoms : int
        Most atoms in the unit cell.
    elements : Composition, optional
        Draw the distinct elements from these statistics (:func:`composition`), at most
        ``max_sites`` of them. The number of sites is raised to the number of elements,
        and the first sites placed take one element each; an element whose site cannot
        be placed (too many atoms, or too close) is left out. Without it, 2–4 draws from
        :data:`ELEMENT_POOL`, each site any of them.
    """
    hall = symmetry.hall_symbol(sg_number)
    if max_sites < 1:
        raise ValueError(f"max_sites must be at least 1, got {max_sites}")
    if not 0 < volume_per_atom[0] <= volume_per_atom[1]:
        raise ValueError(f"volume_per_atom must be an increasing positive range, got {volume_per_atom}")
    system = crystal_system(sg_number)
    shape = lattice.random_cell(system, 1.0, rng)
    v_atom = float(rng.uniform(*volume_per_atom))
    if elements is None:
        n_types = int(rng.integers(2, 5))
        palette = list(dict.fromkeys(rng.choice(ELEMENT_POOL, size=n_types)))
    else:
        palette = elements.draw(rng, max_sites)
    b_of = {el: float(rng.uniform(*b_iso)) for el in palette}
    n_wanted = int(rng.integers(1, max_sites + 1))
    if elements is not None:
        n_wanted = max(n_wanted, len(palette))
    shape_chol = np.linalg.cholesky(lattice.metric_tensor(shape))

    frac = np.zeros((0, 3))
    els: list[str] = []
    for _ in range(n_wanted):
        for _attempt in range(8):
            x = rng.random(3) if rng.random() < 0.5 else _special_position(hall, rng)
            pts = symmetry.orbit(x, hall)
            n_total = len(frac) + len(pts)
            if n_total > max_atoms:
                continue
            # Checking at the volume of the atoms placed so far is conservative: later
            # atoms only enlarge the cell.
            # the metric of the shape scaled by s is s² G: its Cholesky factor is s L
            scaled = shape_chol * (v_atom * n_total) ** (1.0 / 3.0)
            if _min_distance(frac, pts, None, scaled) < min_distance:
                continue
            # with a composition, each element takes a site of its own first
            missing = [e for e in palette if e not in els] if elements is not None else []
            el = missing[0] if missing else str(rng.choice(palette))
            frac = np.concatenate([frac, pts])
            els += [el] * len(pts)
            break
    if not els:  # nothing fitted: one atom at the most special site gemmi's ops give
        pts = symmetry.orbit(np.zeros(3), hall)
        frac, els = pts, [palette[0]] * len(pts)
    cell = shape.copy()
    cell[:3] *= (v_atom * len(els)) ** (1.0 / 3.0)
    # An atom's own lattice translations are atoms too, and the fallback above is not
    # checked: enlarge the cell until no two atoms (images included) are too close.
    cell[:3] *= max(1.0, min_distance / shortest_distance(frac, cell))
    if not math.isfinite(cell[0]):
        raise ValueError(f"could not build a cell for space group {sg_number}")
    return Crystal(
        sg_number, hall, cell, frac, tuple(els), np.array([b_of[e] for e in els]), np.ones(len(els))
    )
