"""Autoindexing: ranked unit cells from the positions of the first powder lines.

Algorithm
---------
1. Take the first ``n_lines`` (default 20) lines, q = 1/d² = 4 sin²θ / λ².
2. For each lattice system from cubic down to monoclinic, solve trial cells from
   low-index assignments of the first lines and keep those that index nearly all of
   the first 12 lines (:mod:`ratagent.indexing.trials`; trial and error as in TREOR,
   Werner, Eriksson & Westdahl, J. Appl. Cryst. 18, 367 (1985)).
3. Refine each kept trial by linear least squares on all indexed lines with a zero
   shift z of the 2θ scale, :math:`q(2θ_{obs}) = r(hkl)\\cdot p + q'(2θ_{obs})\\, z`
   (weights make the residuals degrees of 2θ), re-indexing between cycles.
4. Find the lattice centring (P, A, B, C, I, F, R) that all indexed lines obey and that
   removes the most calculated lines; compute de Wolff's M20 and Smith–Snyder F_N
   (:mod:`ratagent.indexing.merit`).
5. Merge solutions that are the same lattice (Niggli reduction, keeping the highest
   symmetry that fits as well), drop supercells of better solutions of the same system,
   rank by M20 weighted by the indexed fraction and a 15 % preference per level of
   higher symmetry (:func:`_score`).
6. Call the best cell convincing when M20 ≥ ``min_m20`` (de Wolff's 10) with at most
   ``max_unindexed`` unindexed lines (impurities); otherwise say "no convincing cell".

Triclinic cells are not searched.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ratagent.indexing.merit import centring_mask, count_distinct, de_wolff_m, smith_snyder_f
from ratagent.indexing.peaks import PeakList, find_peaks
from ratagent.indexing.reduction import cell_from_form, cell_volume, lattice_q_values
from ratagent.indexing.trials import SYSTEMS, monomials, screen, solve_trials
from ratagent.patterns import Pattern

__all__ = ["SEARCH_ORDER", "CandidateCell", "IndexingResult", "index"]

log = logging.getLogger(__name__)

#: Lattice systems searched, highest symmetry first.
SEARCH_ORDER = ("cubic", "tetragonal", "hexagonal", "orthorhombic", "monoclinic")
#: Smallest 2θ error counted in the figures of merit, degrees.
_MIN_ERROR_DEG = 0.001
#: Lattice points per conventional cell of each centring.
_CENTRING_POINTS = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "F": 4, "R": 3}
#: Ranking weight per symmetry level (see :func:`_score`).
_SYMMETRY_PREFERENCE = 1.15
_SYMMETRY_RANK = {
    "cubic": 5,
    "hexagonal": 4,
    "trigonal": 4,
    "tetragonal": 3,
    "orthorhombic": 2,
    "monoclinic": 1,
}


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

    @property
    def volume(self) -> float:
        """Cell volume in Å³."""
        return cell_volume(self.cell)

    @property
    def n_unindexed(self) -> int:
        return self.n_lines - self.n_indexed

    def describe(self) -> str:
        a, b, c, al, be, ga = self.cell
        return (
            f"{self.crystal_system} {self.centring}  a={a:.4f} b={b:.4f} c={c:.4f} "
            f"α={al:.3f} β={be:.3f} γ={ga:.3f}  V={self.volume:.1f} Å³  zero={self.zero_shift_deg:+.4f}°  "
            f"M{self.n_lines}={self.m20:.1f}  F{self.n_lines}={self.f_n:.1f}({self.mean_abs_d2theta_deg:.4f},"
            f"{self.n_calc})  indexed {self.n_indexed}/{self.n_lines}"
        )


@dataclass(frozen=True, eq=False)
class IndexingResult:
    """Ranked candidate cells (best first) and whether the best one convinces."""

    candidates: tuple[CandidateCell, ...]
    convincing: bool  # the first candidate passes the thresholds below
    min_m20: float  # threshold on M20 used
    max_unindexed: int  # most unindexed lines allowed among the N used
    n_lines: int  # lines used
    wavelength: float  # Å
    seconds: float  # wall time of the search
    message: str  # "no convincing cell: ..." or a description of the best

    @property
    def best(self) -> CandidateCell | None:
        """The best cell when it is convincing, else ``None``."""
        return self.candidates[0] if self.convincing else None

    def top(self, k: int = 3) -> tuple[CandidateCell, ...]:
        return self.candidates[:k]

    def __str__(self) -> str:
        lines = [self.message] + [f"  {i + 1}. {c.describe()}" for i, c in enumerate(self.candidates[:5])]
        return "\n".join(lines)


def _lines(
    data: PeakList | Pattern | Sequence[float] | np.ndarray,
    wavelength: float | None,
    n_lines: int,
    min_relative_intensity: float,
) -> tuple[np.ndarray, float]:
    if isinstance(data, Pattern):
        data = find_peaks(data)
    if isinstance(data, PeakList):
        if wavelength is not None and not math.isclose(wavelength, data.wavelength):
            raise ValueError(f"wavelength={wavelength} differs from the peak list's {data.wavelength}")
        wavelength = data.wavelength
        keep = data.intensity >= min_relative_intensity * data.intensity.max() if len(data) else []
        tth = np.asarray(data.two_theta)[keep]
    else:
        if wavelength is None:
            raise ValueError("wavelength (Å) is required with a plain array of 2θ positions")
        tth = np.asarray(data, dtype=float)
        if tth.ndim != 1:
            raise ValueError(f"2θ positions must be one-dimensional, got shape {tth.shape}")
    if not (math.isfinite(wavelength) and 0 < wavelength <= 20):
        raise ValueError(f"wavelength={wavelength!r} Å is not in (0, 20]")
    if not np.all(np.isfinite(tth)) or np.any((tth <= 0) | (tth >= 180)):
        raise ValueError(f"2θ positions must be finite and in (0, 180) degrees, got {tth.tolist()}")
    return np.sort(tth)[:n_lines], float(wavelength)


def _q(tth: np.ndarray, wl: float) -> np.ndarray:
    return (2.0 * np.sin(np.radians(tth) / 2.0) / wl) ** 2


def _dq_dtth(tth: np.ndarray, wl: float) -> np.ndarray:
    """dq/d(2θ) per degree, q = 4 sin²θ/λ²."""
    return 2.0 * np.sin(np.radians(tth)) / wl**2 * math.pi / 180.0


def _tth(q: np.ndarray, wl: float) -> np.ndarray:
    return np.degrees(2.0 * np.arcsin(np.clip(np.sqrt(q) * wl / 2.0, 0, 1)))


def _reflections(name: str, full: np.ndarray, q_max: float) -> tuple[np.ndarray, np.ndarray]:
    cell = cell_from_form(full)
    bound = [min(40, int(math.floor(x * math.sqrt(q_max))) + 1) for x in cell[:3]]
    r = [np.arange(-b, b + 1) for b in bound]
    hkl = np.stack(np.meshgrid(*r, indexing="ij"), axis=-1).reshape(-1, 3)
    q = monomials(hkl) @ full
    sel = (q > 0) & (q <= q_max)
    hkl, q = hkl[sel], q[sel]
    order = np.argsort(q)
    return hkl[order], q[order]


def _refine(
    name: str,
    p0: np.ndarray,
    tth: np.ndarray,
    wl: float,
    tol_deg: float,
    max_zero_deg: float,
) -> CandidateCell | None:
    sys_ = SYSTEMS[name]
    T = sys_.matrix
    q_obs, slope = _q(tth, wl), _dq_dtth(tth, wl)
    p, z = p0.copy(), 0.0
    q_max = float(_q(np.array([min(tth[-1] + 1.0, 179.0)]), wl)[0])
    for cycle in range(4):
        full = T @ p
        try:
            hkl, qc = _reflections(name, full, q_max)
        except ValueError:
            return None
        if len(qc) == 0:
            return None
        tc = _tth(qc, wl) + z
        j = np.clip(np.searchsorted(tc, tth), 1, len(tc) - 1)
        j = np.where(np.abs(tc[j - 1] - tth) < np.abs(tc[j] - tth), j - 1, j)
        d = tth - tc[j]
        tol = tol_deg * (2.0 if cycle == 0 else 1.0)
        hit = np.abs(d) <= tol
        if hit.sum() < 2 * (sys_.m + 1):  # at least twice as many lines as unknowns (cell + zero)
            return None
        rows = monomials(hkl[j[hit]]) @ T
        design = np.column_stack([rows, slope[hit]]) / slope[hit, None]
        sol, *_ = np.linalg.lstsq(design, q_obs[hit] / slope[hit], rcond=None)
        p_new, z_new = sol[:-1], float(sol[-1])
        if abs(z_new) > max_zero_deg:
            sol, *_ = np.linalg.lstsq(
                rows / slope[hit, None], (q_obs[hit] - slope[hit] * z) / slope[hit], rcond=None
            )
            p_new, z_new = sol, z
        full_new = T @ p_new
        if (
            full_new[0] <= 0
            or full_new[1] <= 0
            or full_new[2] <= 0
            or full_new[4] ** 2 >= 4 * full_new[0] * full_new[2]
        ):
            return None
        p, z = p_new, z_new
    full = T @ p
    hkl, qc = _reflections(name, full, q_max)
    tc = _tth(qc, wl) + z
    j = np.clip(np.searchsorted(tc, tth), 1, len(tc) - 1)
    j = np.where(np.abs(tc[j - 1] - tth) < np.abs(tc[j] - tth), j - 1, j)
    d = tth - tc[j]
    hit = np.abs(d) <= tol_deg
    # centring: every indexed line must keep at least one allowed hkl within tolerance
    best_c, best_mask = "P", np.ones(len(qc), dtype=bool)
    t_last = tth[-1] + tol_deg
    best_n = count_distinct(qc[tc <= t_last], np.inf)
    for c in sys_.centrings[1:]:
        mask = centring_mask(hkl, c)
        tcm = tc[mask]
        if len(tcm) == 0:
            continue
        near = np.abs(tth[hit, None] - tcm[None, :]).min(axis=1) <= tol_deg
        n_c = count_distinct(qc[mask][tcm <= t_last], np.inf)
        if near.all() and n_c < best_n:
            best_c, best_mask, best_n = c, mask, n_c
    hkl_m, tc_m, qc_m = hkl[best_mask], tc[best_mask], qc[best_mask]
    j = np.clip(np.searchsorted(tc_m, tth), 1, len(tc_m) - 1)
    j = np.where(np.abs(tc_m[j - 1] - tth) < np.abs(tc_m[j] - tth), j - 1, j)
    d = tth - tc_m[j]
    hit = np.abs(d) <= tol_deg
    if hit.sum() < 2 * (sys_.m + 1):
        return None
    q_corr = _q(tth - z, wl)
    # errors below a 2θ reading precision of _MIN_ERROR_DEG carry no information (exact data)
    abs_dq = np.maximum(np.abs(q_corr - qc_m[j]), slope * _MIN_ERROR_DEG)[hit]
    m20 = de_wolff_m(float(q_corr[-1]), abs_dq, best_n)
    f_n = smith_snyder_f(np.maximum(np.abs(d[hit]), _MIN_ERROR_DEG), len(tth), best_n)
    cell = cell_from_form(full)
    if name == "monoclinic" and cell[4] < 90.0:
        cell[4] = 180.0 - cell[4]  # same lattice with −a: the obtuse-β convention
    system = "trigonal" if best_c == "R" else name
    hkl_out = np.where(hit[:, None], hkl_m[j], 0)
    return CandidateCell(
        crystal_system=system,
        centring=best_c,
        cell=tuple(float(x) for x in cell),
        zero_shift_deg=z,
        m20=m20,
        f_n=f_n,
        n_lines=len(tth),
        n_indexed=int(hit.sum()),
        n_calc=best_n,
        mean_abs_d2theta_deg=float(np.mean(np.abs(d[hit]))),
        hkl=hkl_out.astype(int),
        indexed=hit,
    )


def _score(c: CandidateCell) -> float:
    """Ranking key: M20 × (indexed fraction)⁴, preferring higher symmetry by 15 % per level.

    M20 ignores unindexed lines; the fourth power of the indexed fraction makes one
    unindexed line in 20 cost 19 % and three cost 48 %.
    """
    frac = c.n_indexed / c.n_lines
    return c.m20 * frac**4 * _SYMMETRY_PREFERENCE ** _SYMMETRY_RANK[c.crystal_system]


def _merge(cands: list[CandidateCell], rtol: float = 2e-3) -> list[CandidateCell]:
    """Same lattice → one entry (the highest symmetry fitting nearly as well); drop supercells."""
    cands = sorted(cands, key=lambda c: -c.m20)
    groups: list[list[CandidateCell]] = []
    keys: list[np.ndarray] = []
    for c in cands:
        qv = lattice_q_values(c.cell, centring=c.centring)
        for g, k in zip(groups, keys, strict=True):
            if np.all(np.abs(qv - k) <= 2 * rtol * k):
                g.append(c)
                break
        else:
            groups.append([c])
            keys.append(qv)
    merged = []
    for g in groups:
        top = g[0].m20
        fits = [c for c in g if c.m20 >= 0.7 * top and c.n_indexed >= g[0].n_indexed]
        merged.append(max(fits, key=lambda c: (_SYMMETRY_RANK[c.crystal_system], c.m20)))
    merged.sort(key=_score, reverse=True)
    kept: list[CandidateCell] = []
    for c in merged:
        v = c.volume / _CENTRING_POINTS[c.centring]
        is_super = False
        for k in kept:
            ratio = v / (k.volume / _CENTRING_POINTS[k.centring])
            if (
                k.crystal_system == c.crystal_system
                and ratio > 1.5
                and abs(ratio - round(ratio)) < 0.02 * ratio
                and k.n_indexed >= c.n_indexed
            ):
                is_super = True
                break
        if not is_super:
            kept.append(c)
    return kept


def index(
    data: PeakList | Pattern | Sequence[float] | np.ndarray,
    *,
    wavelength: float | None = None,
    systems: Sequence[str] = SEARCH_ORDER,
    n_lines: int = 20,
    tolerance_deg: float = 0.03,
    screen_tolerance_deg: float = 0.06,
    max_unindexed: int = 3,
    min_m20: float = 10.0,
    max_zero_deg: float = 0.3,
    min_relative_intensity: float = 0.0,
    keep_per_system: int = 40,
    stop_m20: float | None = 40.0,
) -> IndexingResult:
    """Find unit cells that index the first lines of a powder pattern.

    Parameters
    ----------
    data : PeakList, Pattern or array of 2θ (degrees)
        Observed lines; a :class:`~ratagent.patterns.Pattern` goes through
        :func:`~ratagent.indexing.find_peaks` with its defaults first.
    wavelength : float, optional
        λ in Å; required with a plain array, else taken from ``data``.
    systems : lattice systems to search, from :data:`SEARCH_ORDER`
    n_lines : lines used (the first ones in 2θ)
    tolerance_deg : 2θ window within which a line counts as indexed after refinement
    screen_tolerance_deg : wider window of the trial screen, before refinement (the
        zero shift is not yet known there)
    max_unindexed : most lines among the first ``n_lines`` that may stay unindexed
        (impurity or spurious lines)
    min_m20 : M20 threshold of a convincing cell (de Wolff 1968: 10)
    max_zero_deg : largest |zero shift| refined
    min_relative_intensity : lines weaker than this fraction of the strongest are ignored
    keep_per_system : trial cells refined per lattice system
    stop_m20 : lower-symmetry systems are not searched once a cell with M20 ≥ this
        and at most one unindexed line is found (``None``: search all)

    Returns
    -------
    IndexingResult

    Raises
    ------
    ValueError
        On a missing or bad wavelength, 2θ values outside (0, 180)°, an unknown system,
        or non-positive tolerances.
    """
    t0 = time.perf_counter()
    for s in systems:
        if s not in SYSTEMS:
            raise ValueError(f"unknown lattice system {s!r}; expected some of {SEARCH_ORDER}")
    for name, v in (("tolerance_deg", tolerance_deg), ("screen_tolerance_deg", screen_tolerance_deg)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive, got {v!r}")
    if n_lines < 6:
        raise ValueError(f"n_lines={n_lines} is too few to index; use at least 6 (20 is usual)")
    tth, wl = _lines(data, wavelength, n_lines, min_relative_intensity)
    if len(tth) < 6:
        return IndexingResult(
            (),
            False,
            min_m20,
            max_unindexed,
            len(tth),
            wl,
            time.perf_counter() - t0,
            f"no convincing cell: only {len(tth)} lines (at least 6 needed)",
        )
    q_obs = _q(tth, wl)
    n_screen = min(len(tth), 12)
    tol_q = _dq_dtth(tth[:n_screen], wl) * screen_tolerance_deg
    max_missing = min(max_unindexed, max(1, (n_screen - 6) // 2))
    found: list[CandidateCell] = []
    for name in systems:
        ts = time.perf_counter()
        p = solve_trials(name, q_obs)
        best, _ = screen(name, p, q_obs[:n_screen], tol_q, max_missing, keep_per_system)
        for p0 in best:
            c = _refine(name, p0, tth, wl, tolerance_deg, max_zero_deg)
            if c is not None and c.n_unindexed <= max_unindexed:
                found.append(c)
        log.debug("%s: %d trials, %d screened, %.2f s", name, len(p), len(best), time.perf_counter() - ts)
        if stop_m20 is not None and any(c.m20 >= stop_m20 and c.n_unindexed <= 1 for c in found):
            break
    ranked = tuple(_merge(found))
    convincing = bool(ranked) and ranked[0].m20 >= min_m20 and ranked[0].n_unindexed <= max_unindexed
    if convincing:
        message = f"best cell: {ranked[0].describe()}"
    elif ranked:
        message = f"no convincing cell: best M{ranked[0].n_lines}={ranked[0].m20:.1f} < {min_m20}"
    else:
        message = "no convincing cell: no trial cell indexes the first lines"
    return IndexingResult(
        ranked, convincing, min_m20, max_unindexed, len(tth), wl, time.perf_counter() - t0, message
    )
