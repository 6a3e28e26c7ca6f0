"""Trial cells from low-index lines (TREOR-like), screened in one vectorised pass.

For each lattice system the quadratic form :math:`q = 1/d^2 = r(hkl) \\cdot p` is linear
in ``m`` unknown parameters ``p`` (cubic 1, tetragonal and hexagonal 2, orthorhombic 3,
monoclinic 4; see :data:`SYSTEMS`). Following Werner's trial-and-error method (TREOR:
Werner, Eriksson & Westdahl, J. Appl. Cryst. 18, 367 (1985)), ``m`` of the first
observed lines are given ``m`` distinct low-index rows r(hkl), the ``m × m`` system
``R p = q`` is solved, and each solution is kept when it indexes nearly all of the first
lines. Here every (line set × index set) trial is solved and screened at once in numpy;
sets of rows that differ only by a relabelling of axes (orthorhombic permutations,
monoclinic a↔c and β ↔ 180°−β) are solved once.

The screen (:func:`screen`) counts, for each trial, the lines whose q lies within a
tolerance of some q(hkl), by running over (h, k) and solving the quadratic in l, and
ranks trials by a de Wolff-like merit with an analytic estimate of the number of
calculated lines (the volume of the sphere of radius √q_max divided by the Laue
multiplicity).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from ratagent.indexing._count import count as _compiled_count
from ratagent.indexing._unique import unique_rows
from ratagent.indexing.merit import centring_mask

__all__ = [
    "DESCENTS",
    "SYSTEMS",
    "ZONES",
    "LatticeSystem",
    "descent_trials",
    "form_determinant",
    "forms_of",
    "in_zone",
    "least_q",
    "line_trials",
    "off_zone",
    "positive_forms",
    "screen",
    "solve_trials",
    "zone_seeds",
]

# Columns of the full form: q = h²A + k²B + l²C + hkD + hlE + klF.
_MONOMIALS = ("h2", "k2", "l2", "hk", "hl", "kl")


@dataclass(frozen=True, kw_only=True)
class LatticeSystem:
    """How one lattice system constrains the quadratic form.

    ``transform`` (6 × m) maps the system's parameters p onto (A, B, C, D, E, F).
    """

    name: str
    transform: tuple[tuple[float, ...], ...]  # (6, m): full form = transform @ p
    base_hkl_max: tuple[int, int, int]  # index ranges for base lines: |h|, k, l ≤ these
    base_sum_max: int  # |h| + k + l ≤ this for base lines
    negative_h: bool  # whether h < 0 gives new rows (oblique a*, c*, or hexagonal hk term)
    laue_multiplicity: int  # general-position multiplicity of the lattice's holohedry
    n_base_lines: int  # base lines drawn from the first this many observed lines
    centrings: tuple[str, ...]  # lattice centrings tested after indexing
    # base lines of higher index that a centred lattice's first lines need, as
    # (centring, hkl rows): used only in index sets whose every row that centring allows
    centred_base: tuple[str, tuple[tuple[int, int, int], ...]] | None = None

    @property
    def m(self) -> int:
        return len(self.transform[0])

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.transform, dtype=float)


SYSTEMS: dict[str, LatticeSystem] = {
    "cubic": LatticeSystem(
        name="cubic",
        transform=((1,), (1,), (1,), (0,), (0,), (0,)),
        base_hkl_max=(4, 4, 4),
        base_sum_max=6,
        negative_h=False,
        laue_multiplicity=48,
        n_base_lines=4,
        centrings=("P", "I", "F"),
    ),
    "tetragonal": LatticeSystem(
        name="tetragonal",
        transform=((1, 0), (1, 0), (0, 1), (0, 0), (0, 0), (0, 0)),
        base_hkl_max=(3, 3, 4),
        base_sum_max=6,
        negative_h=False,
        laue_multiplicity=16,
        n_base_lines=7,
        centrings=("P", "I"),
    ),
    "hexagonal": LatticeSystem(
        name="hexagonal",
        transform=((1, 0), (1, 0), (0, 1), (1, 0), (0, 0), (0, 0)),
        base_hkl_max=(3, 3, 6),
        base_sum_max=8,
        negative_h=False,
        laue_multiplicity=24,
        n_base_lines=7,
        centrings=("P", "R"),
    ),
    "orthorhombic": LatticeSystem(
        name="orthorhombic",
        transform=((1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0), (0, 0, 0), (0, 0, 0)),
        base_hkl_max=(2, 2, 2),
        base_sum_max=6,
        negative_h=False,
        laue_multiplicity=8,
        n_base_lines=7,
        centrings=("P", "C", "A", "B", "I", "F"),
        # an F lattice's first lines are 111, 311, 131, 113, 220…: with indices ≤ 2 only
        # 111 and the all-even lines, which leave a, b, c undetermined when a d glide
        # removes 200, 020, 002, 202… (simulated Fddd, a = 5.38, b = 5.62, c = 8.79 Å:
        # 111, 131, 040, 222, 311, 113, 151)
        centred_base=("F", ((1, 1, 3), (1, 3, 1), (3, 1, 1), (1, 3, 3), (3, 1, 3), (3, 3, 1))),
    ),
    "monoclinic": LatticeSystem(
        name="monoclinic",
        transform=((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 0, 0)),
        base_hkl_max=(2, 2, 2),
        base_sum_max=3,
        negative_h=True,
        laue_multiplicity=4,
        n_base_lines=7,  # 8: fewer top-1 and crystal-system hits on each half of the dev set
        centrings=("P", "C", "A", "I"),
    ),
    # trials from pairs of zones (:mod:`ratagent.indexing.triclinic`), not from base lines:
    # six lines and six index triples are too many combinations
    "triclinic": LatticeSystem(
        name="triclinic",
        transform=tuple(tuple(float(i == j) for j in range(6)) for i in range(6)),
        base_hkl_max=(1, 1, 1),
        base_sum_max=3,
        negative_h=True,
        laue_multiplicity=2,
        n_base_lines=12,
        centrings=("P",),
    ),
}


#: Lines among the first 7 a trial may leave unindexed in the cheap first pass of
#: :func:`screen`. Two, not one: a 3 % impurity can put two lines above 5 % of the
#: strongest among the first seven (simulated hexagonal P, a = 5.85, c = 3.15 Å: its
#: 2nd and 6th strong lines are the impurity's).
_FIRST_PASS_MISSING = 2
#: Lattice points per cell of the centrings each system may have (P, then C/I, F or R).
_LATTICE_POINTS = {
    "cubic": (1, 2, 4),
    "tetragonal": (1, 2),
    "hexagonal": (1, 3),
    "orthorhombic": (1, 2, 4),
    "monoclinic": (1, 2),
    "triclinic": (1,),
}


def monomials(hkl: np.ndarray) -> np.ndarray:
    """(h², k², l², hk, hl, kl) of each row of ``hkl`` (n, 3) → (n, 6) float."""
    h, k, l = (np.asarray(hkl, dtype=float)[:, i] for i in range(3))
    return np.stack([h * h, k * k, l * l, h * k, h * l, k * l], axis=1)


@cache
def forms_of(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Distinct design rows r(hkl) of the low-index base lines of a system, and one hkl each.

    The system's ``centred_base`` rows, if any, come last.

    Returns ``(rows, hkl)`` with shapes (n_rows, m) and (n_rows, 3).
    """
    sys_ = SYSTEMS[name]
    hmax, kmax, lmax = sys_.base_hkl_max
    hs = range(-hmax if sys_.negative_h else 0, hmax + 1)
    hkl = np.array(
        [
            (h, k, l)
            for h in hs
            for k in range(kmax + 1)
            for l in range(lmax + 1)
            if (h, k, l) != (0, 0, 0) and abs(h) + k + l <= sys_.base_sum_max
        ]
    )
    rows = monomials(hkl) @ sys_.matrix
    _, first = np.unique(np.round(rows, 6), axis=0, return_index=True)
    first = np.sort(first)
    rows, hkl = rows[first], hkl[first]
    if sys_.centred_base is not None:
        extra = np.array(sys_.centred_base[1])
        rows, hkl = np.concatenate([rows, monomials(extra) @ sys_.matrix]), np.concatenate([hkl, extra])
    return rows, hkl


def _column_symmetries(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(permutation, signs) of the parameter columns that relabel axes without changing the lattice."""
    if name == "orthorhombic":
        return [(np.array(p), np.ones(3)) for p in itertools.permutations(range(3))]
    if name == "monoclinic":
        swaps = (np.array([0, 1, 2, 3]), np.array([2, 1, 0, 3]))
        signs = (np.ones(4), np.array([1.0, 1.0, 1.0, -1.0]))
        return [(p, s) for p in swaps for s in signs]
    m = SYSTEMS[name].m
    return [(np.arange(m), np.ones(m))]


@cache
def _tuples(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Ordered m-tuples of distinct base rows, one per axis relabelling, with R⁻¹ of each.

    Returns ``(index_tuples (t, m), inverse matrices (t, m, m))``.
    """
    rows, hkl = forms_of(name)
    m = rows.shape[1]
    key = {tuple(np.round(r, 6)): i for i, r in enumerate(rows)}
    tuples = np.array(list(itertools.permutations(range(len(rows)), m)), dtype=np.int64)
    keep = np.ones(len(tuples), dtype=bool)
    centred = SYSTEMS[name].centred_base
    if centred is not None:
        # a higher-index row only with rows its centring allows
        n_plain = len(rows) - len(centred[1])
        allowed = centring_mask(hkl, centred[0])
        keep = (tuples < n_plain).all(axis=1) | allowed[tuples].all(axis=1)
    for perm, signs in _column_symmetries(name)[1:]:
        mapped_rows = rows[:, perm] * signs
        image = np.array([key.get(tuple(np.round(r, 6)), -1) for r in mapped_rows])
        mapped = image[tuples]
        ok = (mapped >= 0).all(axis=1)
        # keep the lexicographically smallest labelling of each orbit
        smaller = np.zeros(len(tuples), dtype=bool)
        undecided = np.ones(len(tuples), dtype=bool)
        for j in range(m):
            smaller |= undecided & (mapped[:, j] < tuples[:, j])
            undecided &= mapped[:, j] == tuples[:, j]
        keep &= ~(ok & smaller)
    tuples = tuples[keep]
    mats = rows[tuples]  # (t, m, m): row j of the system is r(hkl_j)
    det = np.linalg.det(mats)
    good = np.abs(det) > 1e-9
    return tuples[good], np.linalg.inv(mats[good])


def solve_trials(name: str, q_obs: np.ndarray, n_lines: int | None = None) -> np.ndarray:
    """All trial parameter vectors p of a system from its base lines and base rows.

    Parameters
    ----------
    name : a key of :data:`SYSTEMS`
    q_obs : observed q = 1/d² (Å⁻²), ascending
    n_lines : base lines are drawn from the first this many lines (system default)

    Returns
    -------
    ndarray, shape (n_trials, m): parameters with a positive-definite form only.
    """
    sys_ = SYSTEMS[name]
    m = sys_.m
    n_lines = min(n_lines or sys_.n_base_lines, len(q_obs))
    if n_lines < m:
        return np.empty((0, m))
    _, inv = _tuples(name)
    combos = np.array(list(itertools.combinations(range(n_lines), m)))
    qb = q_obs[combos]  # (c, m)
    p = np.einsum("tij,cj->cti", inv, qb).reshape(-1, m)
    return p[_positive_definite(sys_, p)]


def form_determinant(full: np.ndarray) -> np.ndarray:
    """det G* (Å⁻⁶) of forms (n, 6) (A, B, C, D, E, F)."""
    A, B, C, D, E, F = (full[..., i] for i in range(6))
    return A * B * C + D * E * F / 4 - A * F * F / 4 - B * E * E / 4 - C * D * D / 4


def positive_forms(full: np.ndarray, margin: float = 1e-3) -> np.ndarray:
    """Whether each form of ``full`` (n, 6) is positive definite, det G* > ``margin`` · ABC.

    Sylvester's criterion on G*; the margin drops nearly flat cells (with D = F = 0 it is
    E² < 4AC (1 − margin)).
    """
    A, B, C, D = full[:, 0], full[:, 1], full[:, 2], full[:, 3]
    return (A > 0) & (B > 0) & (C > 0) & (D * D < 4 * A * B) & (form_determinant(full) > margin * A * B * C)


def least_q(full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least q(hkl)/h² over k, l and q(hkl)/k² over h, l of forms (n, 6): 1/G₁₁ and 1/G₂₂.

    They bound the h and k that can index a line (G = G*⁻¹, the direct metric).
    """
    A, B, C, E, F = full[:, 0], full[:, 1], full[:, 2], full[:, 4], full[:, 5]
    det = np.maximum(form_determinant(full), 1e-30)
    return det / np.maximum(B * C - F * F / 4, 1e-30), det / np.maximum(A * C - E * E / 4, 1e-30)


def _positive_definite(sys_: LatticeSystem, p: np.ndarray) -> np.ndarray:
    """Whether each parameter vector of ``p`` (n, m) gives a positive-definite form (with margin)."""
    return positive_forms(p @ sys_.matrix.T)


#: Lattices of a higher system in the parameters of a lower one, and the one direction
#: that breaks the higher symmetry: (higher, lower) → (E (m_low × m_high), n (m_low,)),
#: p_low = E p_high + t n. Tetragonal → orthorhombic (a = b) only: its 00l and hhl lines
#: never split, so a pseudo-tetragonal cell's first lines can all be of these kinds. (A
#: hexagonal lattice's lines but 00l split on its orthohexagonal cell, so the orthorhombic
#: base lines themselves fix a pseudo-hexagonal cell.)
DESCENTS: dict[tuple[str, str], tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]] = {
    ("tetragonal", "orthorhombic"): (((1.0, 0.0), (1.0, 0.0), (0.0, 1.0)), (1.0, -1.0, 0.0)),
}


@cache
def _box_rows(name: str, hkl_max: int) -> np.ndarray:
    """Distinct rows r(hkl) of a system for h, k, l in 0…``hkl_max``, not all 0: (R, m)."""
    box = np.array([h for h in itertools.product(range(hkl_max + 1), repeat=3) if any(h)])
    rows = np.unique(np.round(monomials(box) @ SYSTEMS[name].matrix, 9), axis=0)
    rows.setflags(write=False)  # shared by every call
    return rows


def line_trials(
    name: str,
    p0: np.ndarray,
    n: np.ndarray,
    q_obs: np.ndarray,
    hkl_max: int = 4,
    use: np.ndarray | None = None,
) -> np.ndarray:
    """Trials p = p₀ + t n of system ``name`` that give one line of ``q_obs`` one hkl.

    For each start p₀ (rows of ``p0``, (k, m)), each line q (those of ``use`` (k, L), if
    given) and each hkl with indices 0…``hkl_max`` whose row r(hkl) is not orthogonal to
    ``n``: t = (q − r·p₀) / (r·n), as TREOR solves a cell's last parameter from the lines
    the others leave. Returns (n_trials, m) positive-definite parameters, duplicates
    removed.
    """
    sys_ = SYSTEMS[name]
    n = np.asarray(n, dtype=float)
    p0 = np.asarray(p0, dtype=float).reshape(-1, sys_.m)
    r = _box_rows(name, hkl_max)  # (R, m)
    rn = r @ n
    r, rn = r[np.abs(rn) > 1e-9], rn[np.abs(rn) > 1e-9]
    t = (np.asarray(q_obs, dtype=float)[None, :, None] - (p0 @ r.T)[:, None, :]) / rn  # (k, L, R)
    p = p0[:, None, None, :] + t[..., None] * n  # (k, L, R, m)
    if use is not None:
        p = p[np.asarray(use, dtype=bool)]
    p = p.reshape(-1, sys_.m)
    return unique_rows(np.round(p[_positive_definite(sys_, p)], 8))


def descent_trials(
    high: str, low: str, p_high: np.ndarray, q_obs: np.ndarray, hkl_max: int = 4
) -> np.ndarray:
    """Trials of system ``low`` near the cells ``p_high`` (k, m_high) of a higher system.

    When the first lines of a pseudo-symmetric cell (orthorhombic with a ≈ b, say) are
    all of the kinds that do not tell the higher symmetry from the lower (00l and hhl),
    every set of base lines drawn from them is singular for the lower system, and its
    trials never have the true cell; the higher system's trials index those lines. Each
    of them, written in the lower system (:data:`DESCENTS`), is moved along the one
    direction that breaks its symmetry until one observed line of ``q_obs`` takes one
    hkl (:func:`line_trials`).
    """
    e, n = (np.asarray(x, dtype=float) for x in DESCENTS[(high, low)])
    p0 = np.asarray(p_high, dtype=float).reshape(-1, e.shape[1]) @ e.T
    return line_trials(low, p0, n, q_obs, hkl_max)


#: One-parameter zones of a system whose lines alone leave the cell undetermined, as
#: (zone direction z, free direction n) in the system's parameters: tetragonal and
#: hexagonal hk0 (a only; c free) and 00l (c only; a free).
ZONES: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]] = {
    "tetragonal": (((1.0, 0.0), (0.0, 1.0)), ((0.0, 1.0), (1.0, 0.0))),
    "hexagonal": (((1.0, 0.0), (0.0, 1.0)), ((0.0, 1.0), (1.0, 0.0))),
}


def zone_seeds(name: str, zone: int, q_obs: np.ndarray, n_lines: int = 7) -> np.ndarray:
    """Starts p₀ = s z of zone ``zone`` of :data:`ZONES`: each of the first ``n_lines`` lines
    given each low-index row of the zone (r(hkl)·n = 0), s = q / (r·z). (k, m)."""
    z, n = (np.asarray(x, dtype=float) for x in ZONES[name][zone])
    rows, _ = forms_of(name)
    w = np.unique(np.round(rows[np.abs(rows @ n) < 1e-9] @ z, 9))
    w = w[w > 0]
    s = (np.asarray(q_obs, dtype=float)[:n_lines, None] / w[None, :]).ravel()
    return np.unique(np.round(s, 10))[:, None] * z


def in_zone(name: str, zone: int, p0: np.ndarray, q_max: float) -> np.ndarray:
    """``p0`` with the free direction of ``zone`` so large that no line up to ``q_max`` leaves
    the zone: the trials screen (:func:`screen`) as cells of the zone alone."""
    _, n = (np.asarray(x, dtype=float) for x in ZONES[name][zone])
    return np.asarray(p0, dtype=float) + 100.0 * q_max * n


def off_zone(name: str, zone: int, p0: np.ndarray, q_obs: np.ndarray, tol_q: np.ndarray) -> np.ndarray:
    """(k, L) bool: the lines of ``q_obs`` that no row of zone ``zone`` (indices ≤ 12) of each
    start of ``p0`` (k, m) indexes within ``tol_q``: those that can fix the free parameter."""
    _, n = (np.asarray(x, dtype=float) for x in ZONES[name][zone])
    r = _box_rows(name, 12)
    r = r[np.abs(r @ n) < 1e-9]
    qz = np.asarray(p0, dtype=float).reshape(-1, SYSTEMS[name].m) @ r.T  # (k, W)
    dist = np.abs(np.asarray(q_obs, dtype=float)[None, :, None] - qz[:, None, :]).min(axis=2)
    return dist > np.asarray(tol_q, dtype=float)[None, :]


def form_volume(full: np.ndarray) -> np.ndarray:
    """Cell volume 1/√det G* (Å³) of forms (n, 6)."""
    return 1.0 / np.sqrt(np.maximum(form_determinant(full), 1e-30))


@cache
def _plane(name: str, hmax: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (h, k) terms of a system and one (|h|, |k|) of each.

    Returns ``(terms, hk)``: terms (n, m + 2) are (r(h, k, 0) in parameter space…, h, k),
    with which q(hkl) = r(h,k,0)·p + l² C + l (h E + k F), a quadratic in l for each term;
    hk (n, 2). Negative k only where F ≠ 0 (triclinic): there (h, k) and (−h, −k) are
    distinct terms, each of whose upper root is the other's lower one.
    """
    sys_ = SYSTEMS[name]
    h_neg = sys_.negative_h or name == "hexagonal"
    k_neg = name == "triclinic"
    hh, kk = np.meshgrid(
        np.arange(-hmax if h_neg else 0, hmax + 1), np.arange(-hmax if k_neg else 0, hmax + 1), indexing="ij"
    )
    hk0 = np.stack([hh.ravel(), kk.ravel(), np.zeros(hh.size, int)], axis=1)
    rows = monomials(hk0) @ sys_.matrix
    zeros = np.zeros(len(rows))
    key = np.column_stack([rows, hk0[:, 0] if sys_.negative_h else zeros, hk0[:, 1] if k_neg else zeros])
    terms, first = np.unique(key, axis=0, return_index=True)
    return terms, np.abs(hk0[first, :2])


@cache
def _sorted_plane(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_plane`'s terms and (|h|, |k|) (as floats) sorted by |h|, then |k|, and the end
    of each |h| in them: ``terms[:h_end[h]]`` are the terms with |h| ≤ h."""
    terms, hk = _plane(name)
    order = np.lexsort((hk[:, 1], hk[:, 0]))
    hk = hk[order]
    h_end = np.searchsorted(hk[:, 0], np.arange(hk[:, 0].max() + 1), side="right").astype(np.int64)
    return np.ascontiguousarray(terms[order]), np.ascontiguousarray(hk, dtype=float), h_end


#: Trials :func:`_count` evaluates at once, and the most (trial, (h, k) term, line)
#: elements (float32) of one block.
_COUNT_CHUNK = 2048
_COUNT_BLOCK = 4_000_000


def _count(name: str, p: np.ndarray, q_obs: np.ndarray, tol_q: np.ndarray,
           max_missing: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lines indexed by each trial (within ``tol_q``) and the sum of |Δq|/tol over them.

    With ``max_missing``, a trial is given up at its ``max_missing + 1``-th unindexed
    line (its count then stops there: less than ``len(q_obs) − max_missing``). Compiled
    (:mod:`ratagent.indexing._count`) where numba is installed, else :func:`_count_numpy`,
    which computes the same in blocks of trials.
    """
    if len(p) and _compiled_count is not None:
        sys_ = SYSTEMS[name]
        full = p @ sys_.matrix.T
        terms, hk, h_end = _sorted_plane(name)
        q_max = float(q_obs[-1] + tol_q[-1])
        a_min, b_min = least_q(full)
        h_top = np.floor(np.sqrt(q_max / np.maximum(a_min, 1e-12)))
        k_top = np.floor(np.sqrt(q_max / np.maximum(b_min, 1e-12)))
        return _compiled_count(np.ascontiguousarray(full), np.ascontiguousarray(p, dtype=float),
                               terms, hk, h_end, q_obs.astype(np.float32), tol_q.astype(np.float32),
                               h_top, k_top, q_max, len(q_obs) if max_missing is None else int(max_missing))
    return _count_numpy(name, p, q_obs, tol_q)


def _count_numpy(name: str, p: np.ndarray, q_obs: np.ndarray,
                 tol_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_count` in numpy, every trial on every line.

    A term (h, k) can index a line only if |h| ≤ √(q_max / a′) and |k| ≤ √(q_max / b′),
    with a′ and b′ the least q(h, k, l)/h² and /k² over the other indices
    (:func:`least_q`). Trials are evaluated in blocks of equal bounds, each on the terms
    within them whose least q over l is within the last line: about as many terms as one
    trial needs.
    """
    sys_ = SYSTEMS[name]
    m = sys_.m
    full = p @ sys_.matrix.T
    terms, hk = _plane(name)
    n_l = len(q_obs)
    n_idx = np.empty(len(p), dtype=np.int64)
    err = np.empty(len(p))
    if len(p) == 0:
        return n_idx, err
    qo = q_obs.astype(np.float32)[None, :, None]
    tq = tol_q.astype(np.float32)[None, :]
    q_max = float(q_obs[-1] + tol_q[-1])
    a_min, b_min = least_q(full)
    h_top = np.floor(np.sqrt(q_max / np.maximum(a_min, 1e-12)))
    k_top = np.floor(np.sqrt(q_max / np.maximum(b_min, 1e-12)))
    order = np.lexsort((k_top, h_top))
    s, size = 0, _COUNT_CHUNK
    while s < len(p):
        e = min(len(p), s + size)
        idx = order[s:e]
        f, pc = full[idx], p[idx]
        in_box = (hk[:, 0] <= h_top[idx].max()) & (hk[:, 1] <= k_top[idx].max())
        box = terms[in_box]
        # least q over l of each (h, k) term: r·p − (hE + kF)² / 4C
        lin = f[:, 4, None] * box[None, :, m] + f[:, 5, None] * box[None, :, m + 1]
        lower = pc @ box[:, :m].T - lin**2 / (4 * f[:, 2, None])
        keep_rows = lower.min(axis=0) <= q_max
        rows, lin = box[keep_rows], lin[:, keep_rows]
        if len(rows) * (e - s) * n_l > _COUNT_BLOCK and e - s > 1:
            size = max(1, int(_COUNT_BLOCK // (len(rows) * n_l)))
            continue  # a smaller block of larger cells
        base = (pc @ rows[:, :m].T).astype(np.float32)[:, None, :]  # (c, 1, n_hk)
        C32 = f[:, 2].astype(np.float32)[:, None, None]
        c1 = lin.astype(np.float32)[:, None, :]  # h E + k F
        # q(h, k, l) − q_obs = C l² + c₁ l − u with u = q_obs − r(h, k, 0)·p; the nearest
        # integer to the upper root only: (h, k, l) and (−h, −k, −l) have the same q and
        # both are terms when the linear term is not 0 (the lower root of term (h, k) is
        # minus the upper root of term (−h, −k), which is (−h, k) where F = 0); with
        # c₁ = 0 the roots differ only in sign
        u = qo - base  # (c, lines, n_hk)
        l = u * (4 * C32)
        l += c1 * c1
        np.maximum(l, 0, out=l)
        np.sqrt(l, out=l)
        l -= c1
        l *= 1 / (2 * C32)
        np.rint(l, out=l)
        r = l * C32
        r += c1
        r *= l
        r -= u
        np.abs(r, out=r)
        best = r.min(axis=2)
        hit = best <= tq
        n_idx[idx] = hit.sum(axis=1)
        err[idx] = np.where(hit, best / tq, 0).sum(axis=1)
        s, size = e, _COUNT_CHUNK
    return n_idx, err


def screen(
    name: str,
    p: np.ndarray,
    q_obs: np.ndarray,
    tol_q: np.ndarray,
    max_missing: int,
    keep: int,
    max_calc_per_line: float = 8.0,
    first_pass: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank trial parameters by how well they index the observed lines.

    Parameters
    ----------
    name : lattice system
    p : (n, m) trial parameters
    q_obs, tol_q : (n_l,) observed q and tolerance, Å⁻²
    max_missing : trials leaving more lines unindexed are dropped
    keep : how many of the best trials to return, by a merit for a primitive lattice;
        ``keep // 2`` more by the merit of each centred lattice of the system
    max_calc_per_line : trials whose estimated number of calculated lines up to q_max
        exceeds this many per observed line (too large cells, which index anything) are
        dropped
    first_pass : drop first the trials that leave more than ``_FIRST_PASS_MISSING`` of
        the first 7 lines unindexed (cheap; off when those lines may hold several impurity lines)

    Returns
    -------
    (p_best (k, m), n_indexed (k,)), best first.
    """
    sys_ = SYSTEMS[name]
    if len(p) == 0:
        return p, np.zeros(0, dtype=int)
    n_l = len(q_obs)
    full = p @ sys_.matrix.T
    q_max = float(q_obs[-1] + tol_q[-1])
    n_est = (4.0 / 3.0) * math.pi * q_max**1.5 * form_volume(full) / sys_.laue_multiplicity
    ok = n_est <= max_calc_per_line * n_l
    p, full, n_est = p[ok], full[ok], n_est[ok]
    if len(p) == 0:
        return p, np.zeros(0, dtype=int)
    # Too small a*, b*, c* predict lines far below the first observed one: not a solution.
    a_eff = least_q(full)[0]
    small = np.minimum(np.minimum(a_eff, full[:, 1]), full[:, 2])
    ok = small >= q_obs[0] / 20.0
    p, full, n_est, a_eff = p[ok], full[ok], n_est[ok], a_eff[ok]
    order = np.argsort(-np.minimum(a_eff, full[:, 1]))
    p, full, n_est, a_eff = p[order], full[order], n_est[order], a_eff[order]
    # Pass 1 on the first lines only: most trials fail there, cheaply.
    if first_pass:
        n1 = min(n_l, 7)
        allowed = min(max_missing, _FIRST_PASS_MISSING)
        n_idx, _ = _count(name, p, q_obs[:n1], tol_q[:n1], allowed)
        ok = n_idx >= n1 - allowed
        p, full, n_est = p[ok], full[ok], n_est[ok]
    n_idx, err = _count(name, p, q_obs, tol_q, max_missing)
    good = n_idx >= n_l - max_missing
    if not good.any():
        return p[:0], n_idx[:0]
    p, n_idx, err, n_est = p[good], n_idx[good], err[good], n_est[good]
    mean_err = (err + 0.05) / n_idx  # in units of the tolerance; small offset: no infinite merit
    # merge trials that give the same form (same cell from different base lines)
    _, uniq = unique_rows(np.round(np.log(np.abs(p) + 1e-12), 3), return_index=True)
    p, n_idx, mean_err, n_est = p[uniq], n_idx[uniq], mean_err[uniq], n_est[uniq]
    # A centred lattice has 1/points of the lines the volume predicts: rank the trials once
    # per possible number of lattice points, or centred cells drown among primitive ones.
    chosen: list[np.ndarray] = []
    # (indexed fraction)⁴ as in the final ranking: low errors on few lines must not beat
    # a trial that indexes all of them
    frac4 = (n_idx / n_l) ** 4
    for points in _LATTICE_POINTS[name]:
        merit = frac4 * n_idx / (mean_err * np.maximum(n_est / points, n_idx))
        chosen.append(np.argsort(-merit)[: keep if points == 1 else max(1, keep // 2)])
    pick = np.unique(np.concatenate(chosen))
    merit = frac4[pick] * n_idx[pick] / (mean_err[pick] * np.maximum(n_est[pick], n_idx[pick]))
    pick = pick[np.argsort(-merit)]
    return p[pick], n_idx[pick]
