"""Least-squares refinement of one trial cell with a zero shift, and its figures of merit.

Each cycle indexes every observed line by its nearest calculated line (within a window
that narrows after the first cycle) and solves the weighted linear least-squares problem

.. math:: q(2θ_{obs}) = r(hkl)\\cdot p + q'(2θ_{obs})\\, z

for the system's form parameters p and the zero shift z of the 2θ scale (weights
1/q'(2θ) make the residuals degrees of 2θ). Then the lattice centring that all indexed
lines obey and that removes the most calculated lines is chosen (it may leave out one
weak line, or more when the primitive lattice's extra reflections would catch as many
of the lines left out by chance: :data:`CENTRING_CHANCE`), and de Wolff's M_N and
Smith–Snyder F_N are computed (:mod:`ratagent.indexing.merit`).

In the indexing, q is 1/d² in Å⁻² (the quadratic form of ITO, Visser 1969), not the
scattering vector Q = 4π sin θ / λ of :mod:`ratagent.patterns`; the functions that
convert are named for it (:func:`inv_d2_of_two_theta`, :func:`two_theta_of_inv_d2`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ratagent.indexing._reflections import enumerate_reflections
from ratagent.indexing.merit import (
    centring_mask,
    coincidence_chance,
    count_distinct,
    de_wolff_m,
    smith_snyder_f,
)
from ratagent.indexing.reduction import cell_from_form, cell_volume, form_from_cell, niggli_cell
from ratagent.indexing.trials import SYSTEMS, monomials

__all__ = [
    "CENTRING_CHANCE",
    "CENTRING_POINTS",
    "TRICLINIC_CALC_PER_LINE",
    "CandidateCell",
    "inv_d2_of_two_theta",
    "inv_d2_slope",
    "nearest_index",
    "reduced_monoclinic",
    "reduced_triclinic",
    "refine_cell",
    "reflections_of_form",
    "setting_system",
    "system_params",
    "two_theta_of_inv_d2",
]

#: Smallest 2θ error counted in the figures of merit, degrees.
_MIN_ERROR_DEG = 0.001
#: A centring may leave out two or more weak lines its primitive lattice indexes when at
#: least this is the chance that the reflections it removes catch so many of the lines
#: it leaves out (:func:`~ratagent.indexing.merit.coincidence_chance`).
CENTRING_CHANCE = 0.01

#: Most calculated lines per observed line of a triclinic cell (as the indexing's
#: stopping rule asks of a cell that ends the search): a triclinic cell predicting 6–8
#: per line indexes 20 lines of an orthorhombic or monoclinic pattern with M20 ≈ 20–35.
TRICLINIC_CALC_PER_LINE = 4.0

#: Smallest position uncertainty a line is weighted by in the least squares, degrees of
#: 2θ (a diffractometer's reproducibility; fitted σ of strong lines are far smaller).
SIGMA_FLOOR_DEG = 0.002

#: A line with a position uncertainty σ is indexed by a reflection within this many σ of
#: it, when that is wider than the tolerance: a weak, broad line is where its fit puts it
#: only to within its σ, while a strong line's window stays the tolerance. (The weak 400
#: and 511 lines of the measured sphalerite-type pattern dev 393 have σ ≈ 0.03° and lie
#: 0.03–0.06° from its cubic F cell's lines; with the fixed 0.03° window they went
#: unindexed and an orthorhombic cell came first.)
WINDOW_SIGMAS = 2.0

#: Lattice points per conventional cell of each centring.
CENTRING_POINTS = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "F": 4, "R": 3}


@dataclass(frozen=True, eq=False)
class CandidateCell:
    """One indexing solution.

    ``crystal_system`` is the lattice's: ``"trigonal"`` for a rhombohedral (R) hexagonal
    lattice, ``"hexagonal"`` for a primitive one (trigonal P groups share it).
    """

    crystal_system: str
    centring: str  # lattice centring P, A, B, C, I, F or R (obverse, hexagonal axes)
    cell: tuple[float, float, float, float, float, float]  # a, b, c (Å), α, β, γ (degrees)
    zero_shift_deg: float  # refined zero z of 2θ: 2θ_obs = 2θ_calc + z, degrees
    m20: float  # de Wolff M_N over the first N ≤ 20 lines
    f_n: float  # Smith–Snyder F_N, same lines
    n_lines: int  # N: lines used for the merits
    n_indexed: int  # indexed lines among them
    n_calc: int  # distinct calculated lines up to the N-th (centring applied)
    mean_abs_d2theta_deg: float  # mean |2θ_obs − 2θ_calc − z| of indexed lines, degrees
    hkl: np.ndarray = field(repr=False)  # (N, 3) indices per line, (0, 0, 0) where unindexed
    indexed: np.ndarray = field(repr=False)  # (N,) bool
    weak: np.ndarray = field(repr=False)  # (N,) bool: too weak to count against the cell when unindexed
    #: (N,) standard uncertainties of the line positions the cell was refined with
    #: (degrees), None for equal weights; a cell refined again from this one takes them
    sigma_deg: np.ndarray | None = field(default=None, repr=False)
    #: chance that the lines it adds to a cell indexing the same peaks, seen in the
    #: residual profile, are background (:func:`~ratagent.indexing.supercells.profile_supercell`)
    profile_chance: float | None = None

    @functools.cached_property
    def volume(self) -> float:
        """Cell volume in Å³."""
        return cell_volume(self.cell)

    @property
    def primitive_volume(self) -> float:
        """Volume per lattice point in Å³."""
        return self.volume / CENTRING_POINTS[self.centring]

    @property
    def n_unindexed(self) -> int:
        return self.n_lines - self.n_indexed

    @property
    def n_unindexed_strong(self) -> int:
        """Unindexed lines that are not weak (weak ones may be impurity lines)."""
        return int(np.count_nonzero(~self.indexed & ~self.weak))

    def describe(self) -> str:
        a, b, c, al, be, ga = self.cell
        chance = self.profile_chance
        profile = "" if chance is None else f"  lines beyond the peaks (chance {chance:.0e})"
        return (
            f"{self.crystal_system} {self.centring}  a={a:.4f} b={b:.4f} c={c:.4f} "
            f"α={al:.3f} β={be:.3f} γ={ga:.3f}  V={self.volume:.1f} Å³  zero={self.zero_shift_deg:+.4f}°  "
            f"M{self.n_lines}={self.m20:.1f}  F{self.n_lines}={self.f_n:.1f}({self.mean_abs_d2theta_deg:.4f},"
            f"{self.n_calc})  indexed {self.n_indexed}/{self.n_lines}"
            f" ({self.n_unindexed_strong} strong unindexed)" + profile
        )


def inv_d2_of_two_theta(tth: np.ndarray, wl: float) -> np.ndarray:
    """q = 1/d² = 4 sin²θ / λ², Å⁻², of 2θ in degrees."""
    return (2.0 * np.sin(np.radians(tth) / 2.0) / wl) ** 2


def inv_d2_slope(tth: np.ndarray, wl: float) -> np.ndarray:
    """dq/d(2θ) per degree, q = 4 sin²θ/λ²."""
    return 2.0 * np.sin(np.radians(tth)) / wl**2 * math.pi / 180.0


def two_theta_of_inv_d2(q: np.ndarray, wl: float) -> np.ndarray:
    """2θ (degrees) of q = 1/d², Å⁻² (inverse of :func:`inv_d2_of_two_theta`)."""
    return np.degrees(2.0 * np.arcsin(np.clip(np.sqrt(q) * wl / 2.0, 0, 1)))


def _coefficients(full: np.ndarray) -> list[float]:
    """A, B, C, D, E, F of one form as Python floats."""
    return np.asarray(full, dtype=float)[:6].tolist()


def _positive_det(A: float, B: float, C: float, D: float, E: float, F: float) -> float:
    """det G* of one form if it is positive definite, else 0.

    In Python floats: the same operations, in the same order, as
    :func:`~.trials.positive_forms` (``margin=0``) and :func:`~.trials.form_determinant`
    on arrays, at a tenth of their cost on one form (every cycle of a refinement asks).
    """
    det = A * B * C + D * E * F / 4 - A * F * F / 4 - B * E * E / 4 - C * D * D / 4
    return det if A > 0 and B > 0 and C > 0 and D * D < 4 * A * B and det > 0.0 else 0.0


def _axes(full: np.ndarray) -> tuple[float, float, float]:
    """a, b, c (Å) of a form: √ of the diagonal of G = G*⁻¹.

    Raises ValueError when the form is not positive definite.
    """
    A, B, C, D, E, F = form = _coefficients(full)
    det = _positive_det(*form)
    if not det:
        raise ValueError(f"quadratic form {form} is not positive definite")
    g = ((B * C - F * F / 4) / det, (A * C - E * E / 4) / det, (A * B - D * D / 4) / det)
    return math.sqrt(g[0]), math.sqrt(g[1]), math.sqrt(g[2])


def reduced_monoclinic(p: np.ndarray) -> np.ndarray:
    """Monoclinic parameters (A, B, C, E) with the a*–c* net Gauss-reduced: |E| ≤ A ≤ C.

    The reduced reciprocal net is the dual of the reduced direct one, so the cell has
    its shortest a and c with β in [90°, 120°] (after the obtuse-β convention): the same
    lattice as a trial with β = 150°, on the axes a reader expects.
    """
    A, B, C, E = (float(x) for x in p)
    for _ in range(100):
        if A > C:
            A, C = C, A
        m = round(E / (2 * A))
        if m == 0:
            break
        C, E = C - m * E + m * m * A, E - 2 * m * A
    return np.array([A, B, C, E])


def reduced_triclinic(p: np.ndarray) -> np.ndarray:
    """The form (A, B, C, D, E, F) of the Niggli-reduced cell of the lattice of form ``p``."""
    return form_from_cell(niggli_cell(cell_from_form(p)))


def nearest_index(ref: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the value of ascending, non-empty ``ref`` nearest each of ``t`` (the upper on a tie)."""
    if len(ref) == 1:
        return np.zeros(len(t), dtype=np.intp)
    j = np.clip(np.searchsorted(ref, t), 1, len(ref) - 1)
    return np.where(np.abs(ref[j - 1] - t) < np.abs(ref[j] - t), j - 1, j)


def reflections_of_form(
    full: np.ndarray, q_max: float, grid: list | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """hkl and q (ascending) of the form ``full`` up to ``q_max``, one of each pair hkl, h̄k̄l̄.

    q is even in hkl, so of each Friedel pair only the one whose first non-zero index is
    positive is listed: the same q values, each line once per pair, at half the cost.

    The box |h|, |k|, |l| ≤ a, b, c · √q_max + 1 is walked by a compiled loop
    (:mod:`ratagent.indexing._reflections`, 12× faster) where numba is installed. Without
    it, ``grid`` (a list, empty at first) keeps the box and its monomials between the
    cycles of one refinement: the box changes little from cycle to cycle, and the part of
    a larger box inside the current one is the same array, in the same order, as that box
    built afresh.
    """
    bound = np.array([min(40, int(math.floor(x * math.sqrt(q_max))) + 1) for x in _axes(full)])
    if enumerate_reflections is not None:  # compiled: the same reflections, no box in memory
        hkl, q = enumerate_reflections(np.asarray(full, float), *(int(b) for b in bound), float(q_max))
        order = np.argsort(q)
        return hkl[order], q[order]
    if grid is None:
        grid = []
    if not grid or np.any(bound > grid[0]):
        r = [np.arange(-b, b + 1) for b in bound]
        hkl_box = np.stack(np.meshgrid(*r, indexing="ij"), axis=-1).reshape(-1, 3)
        h, k, l = hkl_box.T
        hkl_box = hkl_box[(h > 0) | ((h == 0) & ((k > 0) | ((k == 0) & (l > 0))))]
        grid[:] = [bound, hkl_box, monomials(hkl_box)]
    box, hkl, mono = grid
    if np.any(bound < box):
        inside = np.all(np.abs(hkl) <= bound, axis=1)
        hkl, mono = hkl[inside], mono[inside]
    q = mono @ full
    sel = (q > 0) & (q <= q_max)
    hkl, q = hkl[sel], q[sel]
    order = np.argsort(q)
    return hkl[order], q[order]


def setting_system(crystal_system: str) -> str:
    """The lattice system whose parameters describe a cell of ``crystal_system``: a
    rhombohedral lattice (``"trigonal"``) on its hexagonal axes, any other as itself."""
    return "hexagonal" if crystal_system == "trigonal" else crystal_system


def system_params(
    name: str, cell: tuple[float, ...], factors: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Parameters p of lattice system ``name`` for ``cell``, its axes multiplied by ``factors``.

    Least squares on the cell's quadratic form, so a cell of higher symmetry gives the
    parameters of its own metric in a lower system, and a nearly fitting one the closest.
    """
    a, b, c = (x * f for x, f in zip(cell[:3], factors, strict=True))
    p, *_ = np.linalg.lstsq(SYSTEMS[name].matrix, form_from_cell((a, b, c, *cell[3:])), rcond=None)
    return p


def line_weights(sigma_deg: np.ndarray | None, n: int) -> np.ndarray:
    """Least-squares weights 1/√(σ² + σ₀²) of ``n`` lines, scaled to a mean of 1 (ones without σ).

    σ₀ = :data:`SIGMA_FLOOR_DEG` bounds the weight of a strong, sharp line, whose fitted
    σ (Poisson statistics only) can be far below the error of its position.
    """
    if sigma_deg is None:
        return np.ones(n)
    s = np.asarray(sigma_deg, dtype=float)
    if s.shape != (n,) or not np.all(np.isfinite(s) & (s >= 0)):
        raise ValueError(f"sigma_deg must be {n} finite values ≥ 0 (one per line), got {s.tolist()}")
    w = 1.0 / np.sqrt(s**2 + SIGMA_FLOOR_DEG**2)
    return w / w.mean()


#: Reduction of a refined form, by lattice system: the cell is reported on reduced axes.
_REDUCED = {"monoclinic": reduced_monoclinic, "triclinic": reduced_triclinic}


def min_lines(name: str) -> int:
    """Fewest lines a cell of lattice system ``name`` is solved from: unknowns + 2 checks."""
    return SYSTEMS[name].m + 3


def refine_cell(
    name: str,
    p0: np.ndarray,
    tth: np.ndarray,
    wl: float,
    tol_deg: float,
    max_zero_deg: float,
    weak: np.ndarray | None = None,
    centring_may_lose_strong: bool = False,
    centring: str | None = None,
    sigma_deg: np.ndarray | None = None,
    memo: dict | None = None,
    zero0: float = 0.0,
) -> CandidateCell | None:
    """Refine trial parameters ``p0`` of system ``name`` against lines ``tth`` (module docstring).

    Parameters
    ----------
    name : lattice system (a key of :data:`~ratagent.indexing.trials.SYSTEMS`)
    p0 : (m,) trial form parameters, Å⁻²
    tth : (N,) observed 2θ, degrees, ascending
    wl : wavelength, Å
    tol_deg : 2θ window of an indexed line after the first cycle (twice this in the first);
        a line whose ``sigma_deg`` is larger has :data:`WINDOW_SIGMAS` · σ instead
    max_zero_deg : largest |zero shift| refined; beyond it the zero stays fixed
    weak : (N,) bool, optional
        Lines that may stay unindexed without counting against the cell; the centring
        may give up one of them, never a line that is not weak (without ``weak``, any one),
        or more of them when the reflections it removes would index that many of the
        lines it leaves out with a chance of at least :data:`CENTRING_CHANCE`.
    centring_may_lose_strong : let the centring give up one line that is not weak too (a
        strong impurity line that the primitive cell indexes by chance); the caller ranks
        the result against the primitive cell (:func:`~ratagent.indexing.indexing.index`)
    centring : take this lattice centring (one of the system's) instead of testing them:
        ``"P"`` keeps the primitive lattice
    sigma_deg : (N,) standard uncertainties of ``tth`` (degrees), optional: each line is
        weighted by 1/√(σ² + σ₀²), σ₀ = :data:`SIGMA_FLOOR_DEG`, and indexed within the
        wider of ``tol_deg`` and :data:`WINDOW_SIGMAS` · σ; without them all lines weigh the
        same and have the same window
    memo : a dict shared by calls with the same arguments but ``p0`` (one trial list): a
        trial whose refinement ends where an earlier one's did (a quarter of them on
        measured patterns) gets a copy of that one's cell without its centring and
        figures of merit computed again
    zero0 : zero shift (degrees) the first cycle assumes: that of the lines the trial was
        solved from; at most ``max_zero_deg`` in size

    Returns
    -------
    CandidateCell, or None when the trial does not lead to a positive-definite form
    indexing at least twice as many lines as it has unknowns (all the lines that are not
    weak, when there are fewer, but at least :func:`min_lines`).

    Raises
    ------
    ValueError
        On a centring the system does not have, or ``|zero0|`` beyond ``max_zero_deg``.
    """
    sys_ = SYSTEMS[name]
    if centring is not None and centring not in sys_.centrings:
        raise ValueError(f"centring {centring!r} is not one of {name}'s {sys_.centrings}")
    if not abs(zero0) <= max_zero_deg:
        raise ValueError(f"zero0={zero0!r}° is beyond max_zero_deg={max_zero_deg!r}°")
    p = np.array(p0, dtype=float)
    if name == "triclinic":
        try:  # reduced axes bound the hkl box of the first cycle
            p = reduced_triclinic(p)
        except ValueError:
            return None
    # at least twice as many indexed lines as unknowns (cell + zero); a pattern with fewer
    # lines than that (a small cubic or hexagonal cell) must have every line indexed but
    # the weak ones (an impurity's line beside the five of a small tetragonal cell); a
    # two-parameter cell may leave one more out, as the screen allows, since the lines
    # promoted to strong where few are (indexing._weak_lines) can hold an impurity's
    # (simulated hexagonal P, a = 2.29, c = 2.44 Å: 5 lines and one of the impurity at
    # 1.1 %), and its 5 lines still check it twice (a three-parameter cell leaving one
    # of 8 lines out fits chance lines: Si's 7 and one impurity line, indexed by an
    # orthorhombic I cell with a 2.1 Å axis)
    weak_arr = np.zeros(len(tth), dtype=bool) if weak is None else np.asarray(weak, dtype=bool)
    spare = 1 if sys_.m <= 2 else 0
    need = min(2 * (sys_.m + 1), max(min_lines(name), int(np.count_nonzero(~weak_arr)) - spare))
    weight = line_weights(sigma_deg, len(tth))  # checks sigma_deg
    tol = np.full(len(tth), float(tol_deg))
    if sigma_deg is not None:
        tol = np.maximum(tol, WINDOW_SIGMAS * np.asarray(sigma_deg, dtype=float))
    fit = _refined_form(name, p, tth, wl, tol, max_zero_deg, weight, need, zero0)
    if fit is None:
        return None
    key = None if memo is None else (fit.full.tobytes(), fit.zero, fit.hit.tobytes())  # all the rest reads
    if key is not None and key in memo:
        done = memo[key]
        return None if done is None else replace(done)  # a cell of its own: cells compare by identity
    if centring is None:
        may_lose = "any" if weak is None else ("strong" if centring_may_lose_strong else "weak")
        best_c = _best_centring(fit, tth, tol, weak_arr, sys_.centrings, may_lose)
    else:
        best_c = centring
    cell = _candidate(name, fit, best_c, tth, wl, tol, need, weak_arr, sigma_deg)
    if key is not None:
        memo[key] = cell
    return cell


@dataclass(frozen=True, eq=False)
class _FormFit:
    """A refined form and the primitive lattice's reflections against the lines."""

    full: np.ndarray  # the six form coefficients, Å⁻²
    zero: float  # zero shift, degrees of 2θ
    hkl: np.ndarray  # (M, 3) reflections up to the last line
    qc: np.ndarray  # (M,) their 1/d²
    tc: np.ndarray  # (M,) their 2θ, with the zero shift
    hit: np.ndarray  # (N,) lines within the tolerance of a reflection


def _refined_form(name: str, p: np.ndarray, tth: np.ndarray, wl: float, tol: np.ndarray, max_zero_deg: float,
                  weight: np.ndarray, need: int, zero0: float = 0.0) -> _FormFit | None:
    """Up to four weighted least-squares cycles of the form and zero shift (module docstring).

    ``tol``: each line's 2θ window (:func:`refine_cell`). None when a cycle indexes fewer
    than ``need`` lines or leaves no positive-definite form.
    """
    T = SYSTEMS[name].matrix
    q_obs, slope = inv_d2_of_two_theta(tth, wl), inv_d2_slope(tth, wl)
    z = zero0
    q_max = float(inv_d2_of_two_theta(np.array([min(tth[-1] + 1.0, 179.0)]), wl)[0])
    grid: list = []  # hkl box shared by the cycles (:func:`_reflections`)
    # A cycle that indexes the same lines with the same rows r(hkl) as the one before
    # solves the same least-squares problem: every later cycle would repeat it, so the
    # refinement stops there with its reflections (the result is the same as after 4).
    previous, converged = b"", False
    for cycle in range(4):
        try:
            hkl, qc = reflections_of_form(T @ p, q_max, grid)
        except ValueError:
            return None
        if len(qc) == 0:
            return None
        tc = two_theta_of_inv_d2(qc, wl) + z
        j = nearest_index(tc, tth)
        hit = np.abs(tth - tc[j]) <= tol * (2.0 if cycle == 0 else 1.0)
        if hit.sum() < need:
            return None
        rows = monomials(hkl[j[hit]]) @ T
        key = hit.tobytes() + rows.tobytes()
        if cycle > 0 and key == previous:
            converged = True
            break
        previous = key
        scale = weight[hit] / slope[hit]  # residuals in 2θ, over their uncertainty
        design = np.column_stack([rows, slope[hit]]) * scale[:, None]
        sol, *_ = np.linalg.lstsq(design, q_obs[hit] * scale, rcond=None)
        p_new, z_new = sol[:-1], float(sol[-1])
        if abs(z_new) > max_zero_deg:
            fixed_zero = (q_obs[hit] - slope[hit] * z) * scale
            sol, *_ = np.linalg.lstsq(rows * scale[:, None], fixed_zero, rcond=None)
            p_new, z_new = sol, z
        if not _positive_det(*_coefficients(T @ p_new)):
            return None
        p, z = p_new, z_new
    if name in _REDUCED:
        p_red = _REDUCED[name](p)
        converged &= bool(np.allclose(p_red, p, rtol=0, atol=1e-12))
        p = p_red
    full = T @ p
    if not converged:
        hkl, qc = reflections_of_form(full, q_max, grid)
        tc = two_theta_of_inv_d2(qc, wl) + z
        hit = np.abs(tth - tc[nearest_index(tc, tth)]) <= tol
    return _FormFit(full, z, hkl, qc, tc, hit)


def _best_centring(fit: _FormFit, tth: np.ndarray, tol: np.ndarray, weak: np.ndarray,
                   centrings: Sequence[str], may_lose: str) -> str:
    """The lattice centring of ``centrings`` ranked first by the final merit.

    The indexed lines keep an allowed hkl within tolerance, but for at most one line
    (``may_lose``: ``"any"`` line, a ``"weak"`` one, or a ``"strong"`` one too: an
    impurity line that a primitive cell indexes by chance must not hide the centring); more
    weak lines only as :data:`CENTRING_CHANCE` allows. Ranked as the final merit would:
    (indexed fraction)⁴ / N_calc.
    """
    hkl, qc, tc, hit = fit.hkl, fit.qc, fit.tc, fit.hit
    t_last = tth[-1] + tol[-1]
    best_c = "P"
    n_primitive = count_distinct(qc[tc <= t_last], np.inf)
    best_merit = (hit.sum() / len(tth)) ** 4 / max(n_primitive, 1)
    span = float(tth[-1] - tth[0])
    for c in centrings[1:]:
        mask = centring_mask(hkl, c)
        tcm = tc[mask]
        if len(tcm) == 0:
            continue
        near = np.abs(tth[hit, None] - tcm[None, :]).min(axis=1) <= tol[hit]
        n_c = count_distinct(qc[mask][tcm <= t_last], np.inf)
        merit = (near.sum() / len(tth)) ** 4 / max(n_c, 1)
        lost = ~near
        n_lost = int(lost.sum())
        all_weak = bool(np.all(weak[hit][lost]))
        if n_lost <= 1:
            ok = may_lose in ("any", "strong") or all_weak
        else:
            # weak lines only, no more than the lines the centring removes catch by chance
            # among all the lines it leaves out (simulated I4₁/acd, a = 12.39, c = 10.22 Å:
            # two impurity lines at 1 % on its h + k + l odd lines, chance 0.04)
            n_out = n_lost + int(np.count_nonzero(~hit))
            chance = coincidence_chance(n_out, n_lost, n_primitive - n_c, span, float(np.median(tol)))
            ok = all_weak and chance >= CENTRING_CHANCE
        if ok and merit > best_merit:
            best_c, best_merit = c, merit
    return best_c


def _candidate(name: str, fit: _FormFit, centring: str, tth: np.ndarray, wl: float, tol: np.ndarray,
               need: int, weak: np.ndarray, sigma_deg: np.ndarray | None) -> CandidateCell | None:
    """The cell of a refined form with ``centring``: its indexing and figures of merit
    (None when it indexes fewer than ``need`` lines)."""
    mask = centring_mask(fit.hkl, centring)
    hkl_m, tc_m, qc_m = fit.hkl[mask], fit.tc[mask], fit.qc[mask]
    n_calc = count_distinct(qc_m[tc_m <= tth[-1] + tol[-1]], np.inf)
    j = nearest_index(tc_m, tth)
    d = tth - tc_m[j]
    hit = np.abs(d) <= tol
    if hit.sum() < need:
        return None
    q_corr = inv_d2_of_two_theta(tth - fit.zero, wl)
    # errors below a 2θ reading precision of _MIN_ERROR_DEG carry no information (exact data)
    abs_dq = np.maximum(np.abs(q_corr - qc_m[j]), inv_d2_slope(tth, wl) * _MIN_ERROR_DEG)[hit]
    cell = cell_from_form(fit.full)
    if name == "monoclinic" and cell[4] < 90.0:
        cell[4] = 180.0 - cell[4]  # same lattice with −a: the obtuse-β convention
    return CandidateCell(
        crystal_system="trigonal" if centring == "R" else name,
        centring=centring,
        cell=tuple(float(x) for x in cell),
        zero_shift_deg=fit.zero,
        m20=de_wolff_m(float(q_corr[-1]), abs_dq, n_calc),
        f_n=smith_snyder_f(np.maximum(np.abs(d[hit]), _MIN_ERROR_DEG), len(tth), n_calc),
        n_lines=len(tth),
        n_indexed=int(hit.sum()),
        n_calc=n_calc,
        mean_abs_d2theta_deg=float(np.mean(np.abs(d[hit]))),
        hkl=np.where(hit[:, None], hkl_m[j], 0).astype(int),
        indexed=hit,
        weak=weak,
        sigma_deg=None if sigma_deg is None else np.asarray(sigma_deg, dtype=float),
    )
