"""Autoindexing: ranked unit cells from the positions of the first powder lines.

Algorithm
---------
1. Take the first ``n_lines`` (default 20) lines, q = 1/d² = 4 sin²θ / λ². Lines weaker
   than ``weak_fraction`` (5 %) of the strongest are *weak*: a few per cent of an
   impurity phase gives such lines, so trial cells are built and screened from the
   strong lines only, and unindexed weak lines are tolerated. When a lattice system has
   fewer strong lines than it needs (one line dominates, or a small cell has few), the
   strongest weak lines are promoted (:func:`_weak_lines`) to build its trials; all
   cells are ranked on the strong lines of the system that needs the most.
2. For each lattice system from cubic down to monoclinic, solve trial cells from
   low-index assignments of the first strong lines and keep those that index nearly all
   of the first 12 strong lines (:mod:`ratagent.indexing.trials`; trial and error as in
   TREOR, Werner, Eriksson & Westdahl, J. Appl. Cryst. 18, 367 (1985)); the best 1500
   are also re-ranked on all the lines, weak ones included, and the best of both lists
   go on; with fewer than 12 strong lines, trials are also solved and screened on the
   first lines, weak ones included (few strong lines may not reach the indices that
   determine the cell); orthorhombic trials also from tetragonal trials that index the
   first strong lines, with their symmetry broken by one line
   (:func:`~ratagent.indexing.trials.descent_trials`: a ≈ b cells whose first lines are
   all 00l and hhl), and from base lines 113, 133… for F lattices; tetragonal and
   hexagonal trials also from the zone of a alone (hk0) or c alone (00l) solved from the
   strong lines, the other parameter from one more line
   (:func:`~ratagent.indexing.trials.zone_seeds`, :func:`~ratagent.indexing.trials.line_trials`:
   strong lines all hk0, as with needles lying flat, or all 00l, as with platelets);
   orthorhombic trials also from a rectangular zone of the strong lines, with one or both
   axes doubled (a centred lattice's zone), plus a third axis from one more line;
   monoclinic trials also from a rectangular zone plus a third axis
   (:mod:`ratagent.indexing.zones`, after ITO); triclinic trials, whenever the
   monoclinic search runs, only from pairs of oblique zones that share a row
   (:mod:`ratagent.indexing.triclinic`, ITO's zone method). Of the trials grown from
   each seed (a higher system's cell, a zone), the best few are kept as well as the
   best of all. A trial absorbs the zero shift of the 2θ scale into its cell, and its
   lines then drift out of the screen's window (``screen_tolerance_deg``) with angle; a
   cubic trial, with one parameter, cannot fit the drift at all, so cubic trials are
   also solved and screened on lines corrected by the zero shifts of
   :data:`ZERO_TRIALS_DEG` (and refined from there, step 3).
3. Refine each kept trial by linear least squares on all indexed lines with a zero
   shift z of the 2θ scale, re-indexing between cycles, each line weighted by the
   uncertainty σ of its position when ``data`` is a peak list
   (:func:`~ratagent.indexing.refine.line_weights`) and indexed within the tolerance or
   2σ, whichever is wider (:data:`~ratagent.indexing.refine.WINDOW_SIGMAS`); find the
   lattice centring (P, A, B, C, I, F, R) that all indexed lines obey and that removes the most
   calculated lines; compute de Wolff's M20 and Smith–Snyder F_N; a monoclinic cell
   is put on its reduced axes (shortest a and c, 90° ≤ β ≤ 120°) and a triclinic one
   Niggli-reduced; a monoclinic cell with β within 0.1° of 90° is also refined as
   orthorhombic (:mod:`ratagent.indexing.refine`, :mod:`ratagent.indexing.merit`).
4. Merge solutions that are the same lattice (Niggli reduction, keeping the highest
   symmetry that fits as well), drop supercells of better solutions of the same system,
   add the supercells of the leading cells that index a strong line they leave out
   (:func:`~ratagent.indexing.supercells.strong_supercells`), rank by M20 corrected for
   the parameters fitted, weighted by the indexed fractions of strong and of all lines,
   and a 15 % preference per level of higher symmetry (:func:`_score`); a cell of higher
   symmetry that indexes every line a better-ranked cell does, and more, with no more
   calculated lines, goes before it (:func:`_prefer_dominant`), but a supercell that
   adds only chance lines (weak ones) to a smaller cell of symmetry as high goes after
   it (:func:`_prefer_finer`); a supercell of a leading cell that indexes two or more of
   its unindexed lines beyond chance goes just before it (the smallest such supercell
   that larger ones extend only by chance: :mod:`ratagent.indexing.supercells`); so does
   a finer lattice of a leading cell (a supercell, or the primitive lattice of a centred
   cell) whose extra lines, too weak for the peak search, the residual profile shows
   beyond chance (only when ``data`` is a :class:`~ratagent.indexing.peaks.PeakList`
   from :func:`~ratagent.indexing.find_peaks`, which carries that residual:
   :func:`~ratagent.indexing.supercells.profile_supercell`); a leading centred cell
   whose centring left a weak line out is followed by its primitive cell
   (:func:`_with_primitive`).
5. Call the best cell convincing when it leaves at most ``max_unindexed`` strong lines
   unindexed and M20 ≥ ``min_m20`` (de Wolff's 10, meant for at most one or two
   unindexed lines), doubled for each unindexed strong line beyond the first (large
   cells index random lines with M20 ≈ 10 when three may be left out); otherwise say
   "no convincing cell".
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ratagent.indexing._unique import unique_rows
from ratagent.indexing.peaks import PeakList, find_peaks
from ratagent.indexing.reduction import higher_metric_cells, keys_match, lattice_key, niggli_cell
from ratagent.indexing.refine import (
    TRICLINIC_CALC_PER_LINE,
    CandidateCell,
    inv_d2_of_two_theta,
    inv_d2_slope,
    min_lines,
    refine_cell,
    setting_system,
    system_params,
)
from ratagent.indexing.supercells import (
    CHANCE_LEVEL,
    adds_only_chance,
    better_supercell,
    by_chance,
    profile_supercell,
    strong_supercells,
)
from ratagent.indexing.trials import (
    DESCENTS,
    SYSTEMS,
    ZONES,
    descent_trials,
    in_zone,
    line_trials,
    off_zone,
    screen,
    solve_trials,
    zone_seeds,
)
from ratagent.indexing.triclinic import triclinic_trials
from ratagent.indexing.zones import monoclinic_zone_trials, off_zone_lines, rectangular_zones
from ratagent.patterns import Pattern

__all__ = ["KEEP_PER_SYSTEM", "LAB_TOLERANCE_DEG", "SEARCH_ORDER", "WIDTH_LINES", "ZERO_TRIALS_DEG",
           "CandidateCell", "IndexingResult", "index", "line_tolerance"]

log = logging.getLogger(__name__)

#: The 2θ window (degrees) of a line indexed by a cell, the one laboratory indexing is
#: usually run with, and the widest :func:`line_tolerance` gives.
LAB_TOLERANCE_DEG = 0.03
#: The strongest peaks whose median width narrows the window (:func:`line_tolerance`).
WIDTH_LINES = 10
#: Lattice systems searched, highest symmetry first.
SEARCH_ORDER = ("cubic", "tetragonal", "hexagonal", "orthorhombic", "monoclinic", "triclinic")
#: Strong lines the trials are screened on.
_SCREEN_LINES = 12
#: Trial cells refined per lattice system from each screened list. The screen's merit
#: only estimates the number of calculated lines (from the cell volume, which undercounts
#: the few lines of a small cell), so the true cell can rank far down among trials that
#: index the same lines (55th for a simulated tetragonal I cell, a = 3.89, c = 1.73 Å,
#: with 6 lines); refinement, which counts them exactly, takes 1.5–2 ms a trial. The
#: monoclinic search, the slowest, keeps 40.
KEEP_PER_SYSTEM = {
    "cubic": 120,
    "tetragonal": 120,
    "hexagonal": 120,
    "orthorhombic": 120,
    "monoclinic": 40,
    "triclinic": 40,
}
#: Zero shifts (degrees of 2θ) the lines are also corrected by before the trials of a
#: lattice system are solved and screened. A trial solved from uncorrected lines absorbs
#: the zero shift into its cell, and its calculated lines drift from the observed ones
#: with angle beyond the screen's window: a measured garnet (cubic I, a = 11.86 Å, zero
#: +0.08°, RRUFF dev pattern 195) whose first strong lines are 400 and 420 at 30° and 34°
#: failed the screen at 62° and 71°, and a rhombohedral cell ranked first. (A quarter of
#: the convincing cells of the measured dev patterns refine to a zero shift beyond
#: 0.05°.) Tetragonal and hexagonal trials, whose second parameter takes up part of the
#: drift, gain nothing more on half A of the dev set from the same corrections, cost a
#: quarter more time, and put false hexagonal cells first on other patterns.
ZERO_TRIALS_DEG: dict[str, tuple[float, ...]] = {"cubic": (-0.2, -0.1, 0.1, 0.2)}
#: Trials kept by the screen on the strong lines and re-ranked on all lines.
_DEEP_SCREEN = 1500
#: Trials of a higher system, screened on the first strong lines, that the lower system's
#: search moves off their symmetry (:func:`~ratagent.indexing.trials.descent_trials`), and
#: the lower system's trials kept from them: the best of all, and the best of each seed
#: (trials from one seed, a √3 supercell's hk0 zone, can fill the first list: simulated
#: hexagonal P, a = 6.93, c = 1.60 Å, whose strong lines are all hk0).
_DESCENT_SEEDS = 10
_DESCENT_KEEP = 40
_SEED_KEEP = 4
#: A monoclinic cell whose β is this close to 90° (degrees) is also refined as orthorhombic.
_RIGHT_ANGLE_DEG = 0.1
#: Mean |Δ2θ| (degrees) within which a description of a lattice fits its lines as well as
#: laboratory line positions are known: sample displacement and transparency shift lines
#: by about 0.01° 2θ, which a zero shift does not absorb but a lower-symmetry cell's extra
#: parameters partly do (see :func:`_merge`).
_POSITION_ACCURACY_DEG = 0.01
#: Leading cells refined again with a centring that may give up a strong line.
_CENTRING_CHECKS = 10
#: Leading cells whose supercells are tried on the strong lines they leave out.
_SUPERCELL_CHECKS = 5
#: Leading triclinic and monoclinic cells refined again in the system of their metric,
#: and the obliquity (degrees) within which a twofold axis of the metric counts.
_METRIC_CHECKS = 5
_METRIC_TOLERANCE_DEG = 1.0
#: Ranking weight per symmetry level (see :func:`_score`).
_SYMMETRY_PREFERENCE = 1.15
_SYMMETRY_RANK = {
    "cubic": 5,
    "hexagonal": 4,
    "trigonal": 4,
    "tetragonal": 3,
    "orthorhombic": 2,
    "monoclinic": 1,
    "triclinic": 0,
}


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

    def passes(self, cell: CandidateCell) -> bool:
        """Whether ``cell`` would convince were it ranked first (:func:`_m20_needed`)."""
        return cell.n_unindexed_strong <= self.max_unindexed and cell.m20 >= _m20_needed(cell, self.min_m20)

    def leading(self, k: int = 2) -> tuple[CandidateCell, ...]:
        """The best cell, then the best cell of each higher-symmetry system that convinces too.

        At most ``k`` cells; empty when the best cell does not convince. A cell of the
        wrong lattice system convinces often enough on measured patterns
        (``benchmarks/indexing_accuracy.py --rruff``) that the Pawley fits should see a
        runner-up of higher symmetry that passes the same threshold: its fits have fewer
        free intensities, so it wins only where the data support it. Lower-symmetry
        runners-up and other cells of a system already taken are left out: free
        intensities favour them whatever the data (a monoclinic description of an
        orthorhombic lattice, a supercell), so the figures of merit decide there.
        """
        if not self.convincing or k < 1:
            return ()
        taken = [self.candidates[0]]
        ranks = {_SYMMETRY_RANK[taken[0].crystal_system]}
        for c in self.candidates[1:]:
            rank = _SYMMETRY_RANK[c.crystal_system]
            if len(taken) < k and rank > min(ranks) and rank not in ranks and self.passes(c):
                taken.append(c)
                ranks.add(rank)
        return tuple(taken)

    def __str__(self) -> str:
        lines = [self.message] + [f"  {i + 1}. {c.describe()}" for i, c in enumerate(self.candidates[:5])]
        return "\n".join(lines)


def _lines(
    data: PeakList | Sequence[float] | np.ndarray,
    wavelength: float | None,
    n_lines: int,
    min_relative_intensity: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """The first ``n_lines`` 2θ (ascending), their intensity relative to the strongest,
    the standard uncertainties of their 2θ (``None`` for a plain array), and λ."""
    if isinstance(data, PeakList):
        if wavelength is not None and not math.isclose(wavelength, data.wavelength):
            raise ValueError(f"wavelength={wavelength} differs from the peak list's {data.wavelength}")
        wavelength = data.wavelength
        keep = data.intensity >= min_relative_intensity * data.intensity.max() if len(data) else []
        tth = np.asarray(data.two_theta)[keep]
        inten = np.asarray(data.intensity, dtype=float)[keep]
        sigma = np.asarray(data.two_theta_sigma, dtype=float)[keep]
    else:
        if wavelength is None:
            raise ValueError("wavelength (Å) is required with a plain array of 2θ positions")
        tth = np.asarray(data, dtype=float)
        if tth.ndim != 1:
            raise ValueError(f"2θ positions must be one-dimensional, got shape {tth.shape}")
        inten, sigma = np.ones(len(tth)), None
    if not (math.isfinite(wavelength) and 0 < wavelength <= 20):
        raise ValueError(f"wavelength={wavelength!r} Å is not in (0, 20]")
    if not np.all(np.isfinite(tth)) or np.any((tth <= 0) | (tth >= 180)):
        raise ValueError(f"2θ positions must be finite and in (0, 180) degrees, got {tth.tolist()}")
    order = np.argsort(tth)[:n_lines]
    tth, inten = tth[order], inten[order]
    if sigma is not None:
        # a failed profile fit leaves no σ: weigh that line as the least certain one
        sigma = sigma[order]
        bad = ~(np.isfinite(sigma) & (sigma >= 0))
        sigma[bad] = sigma[~bad].max() if np.any(~bad) else 0.0
    top = inten.max() if len(inten) and inten.max() > 0 else 1.0
    return tth, inten / top, sigma, float(wavelength)


def _weak_lines(rel: np.ndarray, weak_fraction: float, need: int, few: bool) -> np.ndarray:
    """Which lines are weak, for a lattice system that needs ``need`` strong lines.

    Lines below ``weak_fraction`` of the strongest are weak. When fewer than ``need``
    lines are strong (one line dominates the pattern, or a small cell has few lines),
    trials cannot be built from the strong ones, and the strongest weak lines join them:
    up to the 12 of the screen; with ``few`` lines in all (a small cell), up to ``need``
    and every line above a fifth of ``weak_fraction``. The weakest lines (an impurity's,
    most likely) stay weak and may remain unindexed.
    """
    weak = rel < weak_fraction
    if np.count_nonzero(~weak) < need:
        k = min(len(rel), need if few else max(need, _SCREEN_LINES))
        weak = rel < np.sort(rel)[-k]  # k ≥ 1: index() declines patterns with too few lines
        if few:  # only lines far below the weak ones (< 1 %) may stay out
            weak &= rel < weak_fraction / 5
    return weak


def _refined(
    name: str,
    trials: np.ndarray,
    tth: np.ndarray,
    wl: float,
    tol_deg: float,
    max_zero_deg: float,
    weak: np.ndarray,
    sigma: np.ndarray | None,
    max_unindexed: int,
    zero0: float = 0.0,
) -> list[CandidateCell]:
    """The refined cells of ``trials`` of system ``name`` that leave at most ``max_unindexed``
    strong lines unindexed; ``zero0``: the zero shift the trials were solved with."""
    memo: dict = {}
    cells = (refine_cell(name, p0, tth, wl, tol_deg, max_zero_deg, weak, sigma_deg=sigma, memo=memo,
                         zero0=zero0)
             for p0 in trials)
    return [c for c in cells if c is not None and c.n_unindexed_strong <= max_unindexed]


def _higher_metric(
    found: list[CandidateCell],
    tth: np.ndarray,
    wl: float,
    tol_deg: float,
    max_zero_deg: float,
    sigma: np.ndarray | None,
    max_unindexed: int,
) -> list[CandidateCell]:
    """The leading triclinic and monoclinic cells refined again in the higher lattice system
    their metric has (:func:`~ratagent.indexing.reduction.higher_metric_cells`).

    A triclinic cell with α and γ within a few hundredths of a degree of 90° is a
    monoclinic lattice; its extra freedom lets it index a chance line more, and the
    merge (:func:`_merge`) keeps the higher symmetry only when the lattice is there in
    it. Of the cells of each system, the best :data:`_METRIC_CHECKS` by :func:`_score`.
    """
    out: list[CandidateCell] = []
    for system in ("triclinic", "monoclinic"):
        cells = sorted((c for c in found if c.crystal_system == system), key=_score, reverse=True)
        for c in cells[:_METRIC_CHECKS]:
            for name, conv in higher_metric_cells(c.cell, c.centring, _METRIC_TOLERANCE_DEG):
                if _SYMMETRY_RANK[name] <= _SYMMETRY_RANK[system]:
                    continue
                r = refine_cell(name, system_params(name, conv), tth, wl, tol_deg, max_zero_deg, c.weak,
                                sigma_deg=sigma)
                if r is not None and r.n_unindexed_strong <= max_unindexed:
                    out.append(r)
    return out


def _score(c: CandidateCell) -> float:
    """Ranking key: M20 × √((n − p)/n) × f_s⁴ × f², preferring higher symmetry by 15 % per level.

    f_s is the indexed fraction of the lines that are not weak, f that of all lines.
    M20 ignores unindexed lines; the fourth power makes one unindexed strong line in 20
    cost 19 % and three cost 48 %; an unindexed weak line (a likely impurity) costs 10 %.
    (f⁴ ranked the true cell first in a few more simulated cases, 40 per system, but on
    measured RRUFF patterns, whose weak lines are often spurious, it let large cells
    that index those lines outrank the right one.)

    M20 is inversely proportional to the mean error of the n indexed lines, which a
    least-squares fit with p free parameters (the cell's and the zero shift) shrinks by
    about √((n − p)/n): the factor makes cells with different numbers of parameters
    compare on the error they would show on new lines. With few lines it matters: on
    8 lines of a simulated cubic P cell (a = 4.892 Å), an orthorhombic cell with a
    1.73 Å axis and a tetragonal one fit the positions 2.8 and 1.6 times more closely
    with 4 and 3 parameters, and the cubic cell ranked 4th.
    """
    n_strong = max(int(np.count_nonzero(~c.weak)), 1)
    frac_strong = 1.0 - c.n_unindexed_strong / n_strong
    frac = c.n_indexed / c.n_lines
    p = SYSTEMS[setting_system(c.crystal_system)].m + 1
    fitted = math.sqrt(max(c.n_indexed - p, 1) / c.n_indexed)
    symmetry = _SYMMETRY_PREFERENCE ** _SYMMETRY_RANK[c.crystal_system]
    return c.m20 * fitted * frac_strong**4 * frac**2 * symmetry


def _m20_needed(c: CandidateCell, min_m20: float) -> float:
    """M20 a cell needs to convince: doubled per unindexed strong line beyond the first.

    A cell resting on n < 6 indexed lines (the few lines of a small cubic, tetragonal or
    hexagonal cell) needs 2 (6/n)² times as much, and may predict at most 2n lines: a
    larger tetragonal or hexagonal cell fits five random lines with M5 of 30–300, but
    predicts 20–70 lines there.
    """
    need = min_m20 * 2.0 ** max(0, c.n_unindexed_strong - 1)
    if c.n_indexed < 6:
        need = math.inf if c.n_calc > 2 * c.n_indexed else need * 2.0 * (6.0 / c.n_indexed) ** 2
    return need


def _settles(c: CandidateCell, stop_m20: float) -> bool:
    """Whether a cell is good enough to skip the monoclinic search.

    M20 ≥ ``stop_m20``, at most one unindexed strong line and two unindexed lines, and at
    most four calculated lines per observed one (a large cell indexes anything).
    """
    indexes_all = c.n_unindexed_strong <= 1 and c.n_unindexed <= 2
    return c.m20 >= stop_m20 and indexes_all and c.n_calc <= 4 * c.n_lines


def _merge(
    cands: list[CandidateCell], tth: np.ndarray, tol_deg: float, rtol: float = 2e-3
) -> list[CandidateCell]:
    """Same lattice → one entry (the highest symmetry fitting nearly as well); drop supercells.

    A description fits nearly as well as the best one (highest M20) when its M20 is at
    least 70 % of it and it indexes as many lines, or when the lines the best one indexes
    beyond it are chance at the best one's density of calculated lines
    (:func:`~ratagent.indexing.supercells.by_chance` ≥ ``CHANCE_LEVEL``: a triclinic
    description of a monoclinic lattice catches one line of an impurity more). One that
    indexes every line the best one does needs half its M20 only: the extra parameters
    of a lower-symmetry description, and its split calculated lines, fit the same lines
    closer (a monoclinic lattice as triclinic, α and γ within 0.02° of 90°: M20 145
    against 101). Nor does it need any share of the M20 when its lines fit within
    :data:`_POSITION_ACCURACY_DEG`: M20 grows as 1/ε, and a lower-symmetry cell that
    fits 0.001° where the higher one fits 0.007° outranks it by a factor of seven on
    errors below what the positions are known to (measured dev pattern 424, Fm-3m: a
    rhombohedral description of its cubic F lattice, M7 2290 against 664).
    """
    cands = sorted(cands, key=lambda c: -c.m20)
    groups: list[list[CandidateCell]] = []
    keys: list[tuple[np.ndarray, int]] = []
    # the smallest q of each group's key (NaN: an empty key): two lattices match only if
    # these do, so only those groups are compared in full, in the same order
    first = np.empty(len(cands))
    for c in cands:
        qv = lattice_key(c.cell, c.centring)
        near = np.ones(len(groups), bool)
        if len(qv[0]):
            known = first[: len(groups)]
            near = np.isnan(known) | (np.abs(qv[0][0] - known) <= 2.0 * rtol * known)
        for i in np.flatnonzero(near):
            if keys_match(qv, keys[i], rtol):
                groups[i].append(c)
                break
        else:
            first[len(groups)] = qv[0][0] if len(qv[0]) else np.nan
            groups.append([c])
            keys.append(qv)
    merged = []
    for g in groups:
        top = g[0].m20
        fits = [
            c
            for c in g
            if (np.all(c.indexed | ~g[0].indexed)
                and (c.m20 >= 0.5 * top or c.mean_abs_d2theta_deg <= _POSITION_ACCURACY_DEG))
            or (
                c.m20 >= 0.7 * top
                and (
                    c.n_indexed >= g[0].n_indexed
                    or by_chance(g[0], c.n_unindexed, g[0].n_indexed - c.n_indexed, tth, tol_deg)
                    >= CHANCE_LEVEL
                )
            )
        ]
        merged.append(max(fits, key=lambda c: (_SYMMETRY_RANK[c.crystal_system], c.m20)))
    merged.sort(key=_score, reverse=True)
    kept: list[CandidateCell] = []
    for c in merged:
        v = c.primitive_volume
        is_super = False
        for k in kept:
            ratio = v / k.primitive_volume
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


def _centred_alternative(
    c: CandidateCell, tth: np.ndarray, wl: float, tol_deg: float, max_zero_deg: float
) -> CandidateCell | None:
    """``c`` refined again with a centring that may give up one strong line, if that changes it.

    The refinement keeps the primitive cell when a centring would leave a strong line
    unindexed, but that line may be an impurity's that the primitive cell indexes by
    chance (simulated Cmc2₁, a = 5.70, b = 4.64, c = 11.82 Å, whose h + k odd line at 6 %
    is the impurity's): both go to the ranking, where the unindexed strong line costs
    the centred cell (f_s⁴) and its fewer calculated lines favour it (M20).
    """
    alt = _refined_again(c, tth, wl, tol_deg, max_zero_deg, centring_may_lose_strong=True)
    return alt if alt is not None and alt.centring != c.centring else None


def _refined_again(
    c: CandidateCell, tth: np.ndarray, wl: float, tol_deg: float, max_zero_deg: float, **options: bool | str
) -> CandidateCell | None:
    """``c`` refined afresh from its own cell (hexagonal axes for a rhombohedral lattice),
    with :func:`~ratagent.indexing.refine.refine_cell`'s centring ``options`` and the
    line uncertainties ``c`` was refined with."""
    name = setting_system(c.crystal_system)
    p0 = system_params(name, c.cell)
    return refine_cell(name, p0, tth, wl, tol_deg, max_zero_deg, c.weak, sigma_deg=c.sigma_deg, **options)


def _with_primitive(
    ranked: list[CandidateCell],
    tth: np.ndarray,
    wl: float,
    tol_deg: float,
    max_zero_deg: float,
    depth: int = 3,
) -> list[CandidateCell]:
    """Put the primitive cell just after a leading centred one whose centring gave up a line.

    The refinement takes a centring that leaves one weak line unindexed (an impurity's,
    most likely), but that line can be the phase's only visible reflection of the
    primitive lattice (simulated Pnnm, a = 3.13, b = 6.97, c = 6.55 Å, indexed as I with
    its 120 at 2 % left out). The primitive cell then goes just after it, unless it is
    among the first ``depth`` already.
    """
    out = list(ranked)
    for parent in ranked[:depth]:
        if parent.centring == "P":
            continue
        alt = _refined_again(parent, tth, wl, tol_deg, max_zero_deg, centring="P")
        if (
            alt is None
            or alt.n_indexed <= parent.n_indexed
            or alt.n_unindexed_strong > parent.n_unindexed_strong
            or not np.all(alt.indexed | ~parent.indexed)
        ):
            continue
        key = lattice_key(alt.cell, "P")
        same = [keys_match(lattice_key(c.cell, c.centring), key, 2e-3) for c in out]
        if any(same[:depth]):
            continue
        out = [c for c, s in zip(out, same, strict=True) if not s]
        out.insert(out.index(parent) + 1, alt)
    return out


def _dominates(x: CandidateCell, y: CandidateCell, tth: np.ndarray, tol_deg: float) -> bool:
    """Whether ``x``, of higher symmetry than ``y`` or as high, explains the lines better.

    ``x`` must index every line ``y`` does and more, and either predict no more lines
    (of higher symmetry then: better on every count but the fit of the positions, which
    fewer parameters make worse) or index so many of the lines ``y`` leaves out that
    chance, at ``x``'s density of calculated lines, would do so with a probability below
    :data:`~ratagent.indexing.supercells.CHANCE_LEVEL` (:func:`~ratagent.indexing.supercells.by_chance`).
    """
    rx, ry = _SYMMETRY_RANK[x.crystal_system], _SYMMETRY_RANK[y.crystal_system]
    if rx < ry or x.n_indexed <= y.n_indexed or not np.all(x.indexed | ~y.indexed):
        return False
    if rx > ry and x.n_calc <= y.n_calc:
        return True
    return by_chance(x, y.n_unindexed, x.n_indexed - y.n_indexed, tth, tol_deg) < CHANCE_LEVEL


def _prefer_dominant(
    ranked: list[CandidateCell], tth: np.ndarray, tol_deg: float, depth: int = 10
) -> list[CandidateCell]:
    """Move a cell of the first ``depth`` just before the first cell it dominates (:func:`_dominates`).

    M20 rewards a small error and few calculated lines, and the ranking forgives
    unindexed weak lines (an impurity's, mostly); so a small cell, often of lower
    symmetry and with a short axis, can index the strong lines closely, leave the weak
    lines of the phase out, and outrank the true cell (simulated cubic P, a = 5.685 Å,
    beaten by a tetragonal 5.686 × 2.010 Å cell indexing one line fewer with one
    calculated line more; simulated orthorhombic cells beaten by monoclinic cells of a
    third of their volume that leave half the lines out).
    """
    return _move_before(ranked, lambda x, y: _dominates(x, y, tth, tol_deg), depth)


def _move_before(
    ranked: list[CandidateCell] | tuple[CandidateCell, ...],
    goes_before: Callable[[CandidateCell, CandidateCell], bool],
    depth: int,
) -> list[CandidateCell]:
    """Move each cell of the first ``depth`` just before the first cell above it that
    ``goes_before(cell, other)`` says it should precede."""
    out = list(ranked)
    for j in range(1, min(len(out), depth)):
        i = next((i for i in range(j) if goes_before(out[j], out[i])), None)
        if i is not None:
            out.insert(i, out.pop(j))
    return out


def _prefer_finer(
    ranked: list[CandidateCell] | tuple[CandidateCell, ...], tth: np.ndarray, tol_deg: float, depth: int = 5
) -> list[CandidateCell]:
    """Move a cell of the first ``depth`` just before a supercell of it that adds only chance lines.

    A supercell can go first by the lines it gains over a smaller cell
    (:func:`_prefer_dominant`), most of which a supercell in between, ranked after it,
    indexes too; the lines it adds to that one are then chance
    (:func:`~ratagent.indexing.supercells.adds_only_chance`), and the smaller cell goes
    first (simulated hexagonal P, a = 5.53, c = 5.82 Å, behind a = 11.07 Å, which indexes
    one of its four unindexed lines more with three times the calculated lines).
    A cell its lines in the residual profile put there (``profile_chance``) stays, and
    so does one of higher symmetry (cubic F before an orthorhombic A cell of half its
    volume that indexes NaCl's lines as well).
    """

    def finer(m: CandidateCell, sup: CandidateCell) -> bool:
        return (
            sup.profile_chance is None
            and _SYMMETRY_RANK[m.crystal_system] >= _SYMMETRY_RANK[sup.crystal_system]
            and adds_only_chance(sup, m, tth, tol_deg)
        )

    return _move_before(ranked, finer, depth)


def _promote_supercells(
    ranked: list[CandidateCell] | tuple[CandidateCell, ...],
    finer: Callable[[CandidateCell], CandidateCell | None],
) -> tuple[CandidateCell, ...]:
    """Put the finer lattice ``finer(parent)`` finds for a leading cell just before it.

    ``finer``: a supercell indexing the lines the parent leaves out
    (:func:`~ratagent.indexing.supercells.better_supercell`), or one whose extra lines
    the residual profile shows (:func:`~ratagent.indexing.supercells.profile_supercell`).
    """
    ranked = list(ranked)
    for parent in list(ranked[:3]):
        if parent not in ranked:
            continue
        sup = finer(parent)
        if sup is None:
            continue
        key = lattice_key(sup.cell, sup.centring)
        same = [i for i, c in enumerate(ranked) if keys_match(lattice_key(c.cell, c.centring), key, 2e-3)]
        if same and same[0] < ranked.index(parent):
            continue  # already ranked above its subcell
        # the same lattice found with higher symmetry keeps that description (a
        # rhombohedral supercell that is metrically cubic F), with the new evidence
        higher = [
            ranked[i]
            for i in same
            if _SYMMETRY_RANK[ranked[i].crystal_system] > _SYMMETRY_RANK[sup.crystal_system]
        ]
        if higher:
            sup = dataclasses.replace(higher[0], profile_chance=sup.profile_chance)
        ranked = [c for i, c in enumerate(ranked) if i not in same]
        ranked.insert(ranked.index(parent), sup)
    return tuple(ranked)


def index(
    data: PeakList | Pattern | Sequence[float] | np.ndarray,
    *,
    wavelength: float | None = None,
    systems: Sequence[str] = SEARCH_ORDER,
    n_lines: int = 20,
    tolerance_deg: float | None = None,
    screen_tolerance_deg: float | None = None,
    max_unindexed: int = 3,
    min_m20: float = 10.0,
    max_zero_deg: float = 0.3,
    min_relative_intensity: float = 0.0,
    weak_fraction: float = 0.05,
    keep_per_system: int | None = None,
    stop_m20: float | None = 40.0,
    min_translation: float = 1.5,
    min_cubic_p: float = 0.0,
) -> IndexingResult:
    """Find unit cells that index the first lines of a powder pattern.

    Parameters
    ----------
    data : PeakList, Pattern or array of 2θ (degrees)
        Observed lines; a :class:`~ratagent.patterns.Pattern` goes through
        :func:`~ratagent.indexing.find_peaks` with its defaults first. The residual
        profile a peak list from :func:`~ratagent.indexing.find_peaks` carries is
        searched for superstructure lines too weak to be peaks (step 4); a peak list's
        position uncertainties ``two_theta_sigma`` weight the refinement (step 3; a
        line without a finite σ weighs as the least certain one).
    wavelength : float, optional
        λ in Å; required with a plain array, else taken from ``data``.
    systems : lattice systems to search, from :data:`SEARCH_ORDER`
    n_lines : lines used (the first ones in 2θ)
    tolerance_deg : 2θ window within which a line counts as indexed after refinement (a
        line of a peak list whose position is less certain: 2σ, when that is wider).
        Default: :func:`line_tolerance` of ``data`` (0.03°, or the lines' width where
        they are narrower)
    screen_tolerance_deg : wider window of the trial screen, before refinement (the
        zero shift is not yet known there; default: twice ``tolerance_deg``)
    max_unindexed : most lines among the first ``n_lines`` that are not weak and may
        stay unindexed (impurity or spurious lines)
    min_m20 : M20 threshold of a convincing cell (de Wolff 1968: 10), doubled for each
        unindexed strong line beyond the first
    max_zero_deg : largest |zero shift| refined
    min_relative_intensity : lines weaker than this fraction of the strongest are ignored
    weak_fraction : lines weaker than this fraction of the strongest of the first
        ``n_lines`` are *weak*: trial cells are built and screened from the other lines
        only, and unindexed weak lines do not count towards ``max_unindexed`` (a few
        per cent of an impurity phase gives such lines). Without intensities (a plain
        array of 2θ) no line is weak.
    keep_per_system : trial cells refined per lattice system from each screened list
        (``None``: :data:`KEEP_PER_SYSTEM`)
    stop_m20 : monoclinic and triclinic cells are not searched once a cell of higher symmetry with
        M20 ≥ this, at most one unindexed strong line and two unindexed lines, and at
        most 4 calculated lines per observed one is found (``None``: search all)
    min_translation : cells whose lattice has a translation shorter than this (Å) are
        dropped. A translation joins like atoms, which no crystal holds closer than about
        2.2 Å (Be metal, a = 2.29 Å; C, B and N lattices are longer); the default leaves
        room for strained or simulated cells and removes the cells with a 1.1–1.5 Å axis
        that index a few lines of a large cubic cell (simulated Pm-3n, a = 7.90 Å, whose
        8 lines a tetragonal I cell, c = 1.12 Å, indexed with M8 = 2773)
    min_cubic_p : primitive cubic cells with a shorter than this (Å) are dropped. The first
        six lines of a simple cubic cell a are those of the body-centred cell a√2 (whose
        seventh, 321, it lacks), and all are those of the face-centred cell 2a; no crystal
        has a primitive cubic lattice under
        about 2.6 Å: with one atom per cell that is simple cubic, known only for α-Po
        (a = 3.35 Å), and the smallest CsCl-type cells, the beryllides BeNi and BeCo, have
        a ≈ 2.61 Å. A bcc metal's four lines with Cu Kα (Mo, a = 3.15 Å) index as cubic P,
        a = 2.23 Å, as well as cubic I (0: no bound)

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
    if isinstance(data, Pattern):
        data = find_peaks(data)
    if tolerance_deg is None:
        tolerance_deg = line_tolerance(data)
    if screen_tolerance_deg is None:
        screen_tolerance_deg = 2.0 * tolerance_deg
    _check_settings(systems, tolerance_deg, screen_tolerance_deg, n_lines, weak_fraction, min_translation,
                    min_cubic_p)
    tth, rel, sigma, wl = _lines(data, wavelength, n_lines, min_relative_intensity)
    fewest = min(min_lines(s) for s in systems)
    if len(tth) < fewest:
        return IndexingResult((), False, min_m20, max_unindexed, len(tth), wl, time.perf_counter() - t0,
                              f"no convincing cell: only {len(tth)} lines (at least {fewest} needed)")
    search = _Search(tth=tth, rel=rel, sigma=sigma, wl=wl, q_all=inv_d2_of_two_theta(tth, wl),
                     tol_all=inv_d2_slope(tth, wl) * screen_tolerance_deg, few=len(tth) <= 2 * fewest,
                     tolerance_deg=tolerance_deg, screen_tolerance_deg=screen_tolerance_deg,
                     max_unindexed=max_unindexed, max_zero_deg=max_zero_deg, weak_fraction=weak_fraction)
    found: list[CandidateCell] = []
    for name in systems:
        # Only the slow monoclinic search is skipped on a good higher-symmetry cell: a
        # wrong cell of one system can index the strong lines well enough to stop the
        # search before the right system, but is then outranked by the right cell.
        # (the triclinic search, cheaper, follows the monoclinic one whenever that runs: a
        # monoclinic supercell can index a triclinic pattern's 20 lines with M20 > 40)
        lines = _system_lines(search, name, keep_per_system)
        if lines is None:
            continue
        if name == "monoclinic" and stop_m20 is not None and any(_settles(c, stop_m20) for c in found):
            break
        ts = time.perf_counter()
        cells = _triclinic_cells(search, lines) if name == "triclinic" else _system_cells(search, lines)
        for zero in (z for z in ZERO_TRIALS_DEG.get(name, ()) if abs(z) <= max_zero_deg):
            shifted = search.shifted(zero)
            shifted_lines = _system_lines(shifted, name, keep_per_system)  # as many strong lines
            cells += _system_cells(shifted, shifted_lines) if shifted_lines is not None else []
        found += cells
        log.debug("%s: %d cells, %.2f s", name, len(cells), time.perf_counter() - ts)
    ranked = _ranked(found, search, data, systems, min_m20, min_translation, min_cubic_p)
    return _result(ranked, search, min_m20, time.perf_counter() - t0)


def line_tolerance(data: PeakList | Sequence[float] | np.ndarray) -> float:
    """The 2θ window (degrees) within which :func:`index` counts a line as indexed, by default.

    :data:`LAB_TOLERANCE_DEG` (0.03°, the usual window for laboratory data), or the
    median FWHM of the :data:`WIDTH_LINES` strongest peaks of a peak list where that is
    narrower. Where lines are narrow (a synchrotron's 0.01–0.02°) a 0.03° window lets a wrong
    cell of low symmetry index most lines by chance: a simulated diopside pattern at
    0.7293 Å (FWHM 0.017°) indexed 15 of its first 20 lines in a wrong monoclinic P cell
    (M20 = 142), which won, while its C2/c cell indexes all 20 within the lines' width and
    leads the search then. On the measured laboratory patterns of the dev set the
    narrowest lines are 0.034° wide, so their window stays 0.03°. A plain array of
    positions has no widths: 0.03°.
    """
    if not isinstance(data, PeakList) or len(data) == 0:
        return LAB_TOLERANCE_DEG
    widths = np.asarray(data.fwhm, dtype=float)[np.argsort(data.height)[::-1][:WIDTH_LINES]]
    widths = widths[np.isfinite(widths) & (widths > 0)]
    return float(min(LAB_TOLERANCE_DEG, np.median(widths))) if len(widths) else LAB_TOLERANCE_DEG


def _check_settings(systems: Sequence[str], tolerance_deg: float, screen_tolerance_deg: float, n_lines: int,
                    weak_fraction: float, min_translation: float, min_cubic_p: float) -> None:
    """The ``ValueError`` :func:`index` raises for a bad setting, naming it."""
    for s in systems:
        if s not in SYSTEMS:
            raise ValueError(f"unknown lattice system {s!r}; expected some of {SEARCH_ORDER}")
    for name, v in (("tolerance_deg", tolerance_deg), ("screen_tolerance_deg", screen_tolerance_deg)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive, got {v!r}")
    if n_lines < 6:
        raise ValueError(f"n_lines={n_lines} is too few to index; use at least 6 (20 is usual)")
    if not (math.isfinite(weak_fraction) and 0 <= weak_fraction < 1):
        raise ValueError(f"weak_fraction must be in [0, 1), got {weak_fraction!r}")
    for name, v in (("min_translation", min_translation), ("min_cubic_p", min_cubic_p)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be ≥ 0 Å, got {v!r}")


@dataclass(frozen=True, eq=False)
class _Search:
    """The lines of one search and the settings every lattice system shares."""

    tth: np.ndarray  # 2θ of the lines used, degrees
    rel: np.ndarray  # their intensities relative to the strongest
    sigma: np.ndarray | None  # their position uncertainties, degrees
    wl: float  # Å
    q_all: np.ndarray  # 1/d² of every line
    tol_all: np.ndarray  # the screen's window of every line, in 1/d²
    few: bool  # so few lines that the system needing most must index them all
    tolerance_deg: float
    screen_tolerance_deg: float
    max_unindexed: int
    max_zero_deg: float
    weak_fraction: float
    # zero shift (degrees) taken off the lines the trials are solved and screened on
    # (``q_all``, ``tol_all``: :meth:`shifted`); refinement starts from it on the lines ``tth``
    trial_zero_deg: float = 0.0

    def refined(self, name: str, trials: np.ndarray, weak: np.ndarray) -> list[CandidateCell]:
        """:func:`_refined` on these lines."""
        return _refined(name, trials, self.tth, self.wl, self.tolerance_deg, self.max_zero_deg, weak,
                        self.sigma, self.max_unindexed, self.trial_zero_deg)

    def tol(self, tth: np.ndarray) -> np.ndarray:
        """The screen's window of lines at ``tth``, in 1/d²."""
        return inv_d2_slope(tth, self.wl) * self.screen_tolerance_deg

    def shifted(self, zero_deg: float) -> _Search:
        """This search with its trials solved and screened on lines corrected by ``zero_deg``."""
        tth = self.tth - zero_deg
        return dataclasses.replace(self, q_all=inv_d2_of_two_theta(tth, self.wl), tol_all=self.tol(tth),
                                   trial_zero_deg=zero_deg)


@dataclass(frozen=True, eq=False)
class _SystemLines:
    """The lines one lattice system's trials are built and screened from."""

    name: str
    weak: np.ndarray  # lines of :data:`_Search.tth` left out of the trials
    q_strong: np.ndarray  # 1/d² of the others
    tol_strong: np.ndarray  # their screen windows
    n_screen: int  # the first strong lines the trials are screened on
    max_missing: int  # of those, most left unindexed
    n_weak: int
    more_lines: bool  # lines beyond those of the first screen
    keep: int  # trials refined from each screened list

    @property
    def q_screen(self) -> np.ndarray:
        return self.q_strong[: self.n_screen]

    @property
    def tol_q(self) -> np.ndarray:
        return self.tol_strong[: self.n_screen]


def _system_lines(search: _Search, name: str, keep_per_system: int | None) -> _SystemLines | None:
    """The lines lattice system ``name`` searches on; None when it has too few strong lines."""
    weak = _weak_lines(search.rel, search.weak_fraction, min_lines(name), search.few)
    q_strong = search.q_all[~weak]
    if len(q_strong) < min_lines(name):
        return None
    n_screen = min(len(q_strong), _SCREEN_LINES)
    # few lines (a small cell of high symmetry): every one must be indexed
    max_missing = min(search.max_unindexed, max(1, (n_screen - 6) // 2)) if n_screen >= 6 else 0
    return _SystemLines(
        name=name, weak=weak, q_strong=q_strong, tol_strong=search.tol_all[~weak], n_screen=n_screen,
        max_missing=max_missing, n_weak=int(np.count_nonzero(weak)), more_lines=len(search.tth) > n_screen,
        keep=KEEP_PER_SYSTEM[name] if keep_per_system is None else keep_per_system,
    )


def _triclinic_cells(search: _Search, lines: _SystemLines) -> list[CandidateCell]:
    """Triclinic cells from ITO zones (:func:`~ratagent.indexing.triclinic.triclinic_trials`).

    Zones of the strong lines, and of all the lines (the first lines of the lattice can be
    weak); screened on the strong lines and on all of them. Six free parameters fit random
    lines when they predict many, so at most ``TRICLINIC_CALC_PER_LINE`` per line.
    """
    name, q_all = lines.name, search.q_all
    p = triclinic_trials(lines.q_strong, lines.tol_strong, axis_lines=q_all)
    if lines.n_weak:
        p = np.concatenate([p, triclinic_trials(q_all, search.tol_all)])
    best, _ = screen(name, p, lines.q_screen, lines.tol_q, lines.max_missing, lines.keep,
                     TRICLINIC_CALC_PER_LINE)
    if lines.more_lines:
        again, _ = screen(name, p, q_all, search.tol_all, lines.max_missing + lines.n_weak, lines.keep,
                          TRICLINIC_CALC_PER_LINE, first_pass=False)
        best = unique_rows(np.concatenate([best, again]))
    cells = search.refined(name, best, lines.weak)
    return [c for c in cells if c.n_calc <= TRICLINIC_CALC_PER_LINE * c.n_lines]


def _system_cells(search: _Search, lines: _SystemLines) -> list[CandidateCell]:
    """The refined cells of every trial of a system above triclinic: solved from the strong
    lines (:func:`_solved_trials`) and descended from higher systems and zones
    (:func:`_descended_trials`)."""
    name = lines.name
    trials = [_solved_trials(search, lines), *_descended_trials(search, lines)]
    best = unique_rows(np.concatenate(trials))
    found = []
    for c in search.refined(name, best, lines.weak):
        found.append(c)
        if name == "monoclinic" and abs(c.cell[4] - 90.0) <= _RIGHT_ANGLE_DEG:
            # a right-angled monoclinic cell is an orthorhombic metric: refined as such
            # it finds its own centring (C, F, I need not be a monoclinic one), and the
            # merge keeps it when it fits as well
            p_o = system_params("orthorhombic", c.cell)
            found += search.refined("orthorhombic", p_o[None, :], lines.weak)
    return found


def _solved_trials(search: _Search, lines: _SystemLines) -> np.ndarray:
    """Trials solved from sets of strong lines (and monoclinic zones), screened."""
    name, q_all, tth = lines.name, search.q_all, search.tth
    p = solve_trials(name, lines.q_strong)
    if name == "monoclinic":
        p = np.concatenate([p, monoclinic_zone_trials(lines.q_strong, lines.tol_strong, axis_lines=q_all)])
    # screen on the first strong lines; also re-rank the survivors on all the lines:
    # among thousands of trials that index the strong lines the true cell can rank a
    # few hundredth, while the weak lines of the true phase tell it apart. Both lists
    # are refined (on measured patterns, spurious weak lines favour large cells in
    # the second one)
    deep, _ = screen(name, p, lines.q_screen, lines.tol_q, lines.max_missing, max(lines.keep, _DEEP_SCREEN))
    best = deep[: lines.keep]
    if len(deep) > lines.keep and lines.more_lines:
        again, _ = screen(name, deep, q_all, search.tol_all, lines.max_missing + lines.n_weak, lines.keep,
                          first_pass=False)
        best = unique_rows(np.concatenate([best, again]))
    if lines.n_screen < _SCREEN_LINES and len(tth) > lines.n_screen:
        # few strong lines (one line dominates): they may not determine the cell with
        # low indices, nor tell the trials apart; solve trials from the first lines,
        # weak ones included, too, and screen them there (simulated Cmmm, a = 3.50,
        # b = 5.39, c = 5.79 Å: 6 of 20 lines above 5 %, whose indices span only
        # c* and a* + b* but for 131; cells with a 1.6 Å axis indexing them won)
        n_first = min(len(tth), _SCREEN_LINES)
        extra = int(np.count_nonzero(lines.weak[:n_first]))
        first, _ = screen(name, solve_trials(name, q_all), q_all[:n_first], search.tol_all[:n_first],
                          lines.max_missing + extra, lines.keep, first_pass=False)
        best = unique_rows(np.concatenate([best, first]))
    return best


def _on_all_lines(search: _Search, lines: _SystemLines, per_seed: list[np.ndarray]) -> np.ndarray:
    """The best ``_DESCENT_KEEP`` trials of all seeds' and the best ``_SEED_KEEP`` of each
    seed's (``per_seed``: one array of trials per seed), screened on all lines."""

    def best_of(trials: np.ndarray, n_keep: int) -> np.ndarray:
        missing = lines.max_missing + lines.n_weak
        return screen(lines.name, trials, search.q_all, search.tol_all, missing, n_keep, first_pass=False)[0]

    kept = [best_of(t, _SEED_KEEP) for t in per_seed]
    kept.append(best_of(np.concatenate(per_seed), _DESCENT_KEEP))
    return np.concatenate(kept)


def _descended_trials(search: _Search, lines: _SystemLines) -> list[np.ndarray]:
    """Trials moved off a higher system's cells, and built from one zone's strong lines
    with the last parameters from the other lines; each screened on all lines."""
    name, q_all, q_strong = lines.name, search.q_all, lines.q_strong
    out = []
    for high, low in DESCENTS:
        if low == name:
            # cells that the first strong lines cannot tell from the higher system's
            n_first = min(len(q_strong), SYSTEMS[high].n_base_lines)
            seeds, _ = screen(high, solve_trials(high, q_strong), q_strong[:n_first], lines.tol_q[:n_first],
                              1, _DESCENT_SEEDS)
            if len(seeds):
                down = [descent_trials(high, name, s, q_all) for s in seeds]
                out.append(_on_all_lines(search, lines, down))
    for zone, (_, free) in enumerate(ZONES.get(name, ())):
        # strong lines of one zone (hk0, or 00l), the last parameter in the others
        zs, _ = screen(name, in_zone(name, zone, zone_seeds(name, zone, q_strong), float(q_all[-1])),
                       lines.q_screen, lines.tol_q, lines.max_missing, _DESCENT_SEEDS)
        if len(zs):
            off = off_zone(name, zone, zs, q_all, search.tol_all)
            free_n = np.asarray(free)
            out.append(_on_all_lines(search, lines, [line_trials(name, z, free_n, q_all, use=u[None])
                                                     for z, u in zip(zs, off, strict=True)]))
    if name == "orthorhombic":
        # strong lines of one rectangular zone (all 0kl, say), the third axis from one
        # more line, as ITO's zones; a centred lattice's zone has one or both axes
        # halved (F: 0kl with k, l even; simulated Fmmm, a = 3.17, b = 7.40,
        # c = 17.84 Å, whose h ≠ 0 lines are all weak), so each is also doubled
        ab = rectangular_zones(q_strong, lines.tol_strong)
        if len(ab):
            ab = np.concatenate([ab * f for f in ((1, 1), (0.25, 1), (1, 0.25), (0.25, 0.25))])
            starts = np.column_stack([ab, np.zeros(len(ab))])
            off = off_zone_lines(ab, q_all, search.tol_all)
            c_axis = np.array([0.0, 0.0, 1.0])
            out.append(_on_all_lines(search, lines, [line_trials(name, z, c_axis, q_all, use=u[None])
                                                     for z, u in zip(starts, off, strict=True)]))
    return out


def _ranked(found: list[CandidateCell], search: _Search, data: Any, systems: Sequence[str], min_m20: float,
            min_translation: float, min_cubic_p: float) -> tuple[CandidateCell, ...]:
    """The cells of every system, with their higher-metric, centred and super cells, ranked;
    cells no crystal has (:func:`index`'s ``min_translation``, ``min_cubic_p``) left out."""
    tth, wl, tol, zero = search.tth, search.wl, search.tolerance_deg, search.max_zero_deg
    found = found + _higher_metric(found, tth, wl, tol, zero, search.sigma, search.max_unindexed)
    if min_translation > 0:
        found = [c for c in found if niggli_cell(c.cell, c.centring)[0] >= min_translation]
    if min_cubic_p > 0:
        found = [c for c in found
                 if not (c.crystal_system == "cubic" and c.centring == "P" and c.cell[0] < min_cubic_p)]
    # every cell is ranked on the same strong lines: those of the system that needs the
    # most (simulated Pnma, a = 8.80, b = 4.28, c = 4.94 Å, one line dominant: its five
    # strong lines sufficed for hexagonal trials but not for orthorhombic ones, so the
    # true cell was ranked on the two promoted impurity lines it leaves out and
    # hexagonal cells indexing 7 of 20 lines on none). With few lines (a small cell),
    # only those above weak_fraction: promoted to the 7 that monoclinic cells need, all
    # 6 lines of a simulated cubic F cell (5 lines and a 3 % impurity's at 4.5 %) were
    # strong, and an orthorhombic C cell with a 2.05 Å axis that indexes all 6 went first
    most = max(min_lines(s) for s in systems)
    rank_weak = (search.rel < search.weak_fraction if search.few
                 else _weak_lines(search.rel, search.weak_fraction, most, few=False))
    found = [dataclasses.replace(c, weak=rank_weak) for c in found]
    merged = _merge(found, tth, tol)
    alternatives = [_centred_alternative(c, tth, wl, tol, zero) for c in merged[:_CENTRING_CHECKS]]
    alternatives = [a for a in alternatives if a is not None and a.n_unindexed_strong <= search.max_unindexed]
    alternatives += [s for c in merged[:_SUPERCELL_CHECKS]
                     for s in strong_supercells(c, tth, wl, tol, zero, min_m20)]
    # a supercell of a triclinic subcell may have the metric of the true monoclinic cell
    alternatives += _higher_metric(alternatives, tth, wl, tol, zero, search.sigma, search.max_unindexed)
    if alternatives:
        merged = _merge(merged + alternatives, tth, tol)
    ranked = _prefer_finer(_prefer_dominant(merged, tth, tol), tth, tol)
    ranked = _promote_supercells(ranked, lambda c: better_supercell(c, tth, wl, tol, zero, min_m20))
    if isinstance(data, PeakList) and data.residual is not None:
        residual, peaks_tth = data.residual, data.two_theta
        ranked = _promote_supercells(
            ranked, lambda c: profile_supercell(c, residual, peaks_tth, tth, wl, tol, zero, min_m20))
    return tuple(_with_primitive(list(ranked), tth, wl, tol, zero))


def _result(ranked: tuple[CandidateCell, ...], search: _Search, min_m20: float,
            seconds: float) -> IndexingResult:
    """The result of a search: whether its best cell convinces, and why not."""
    need = _m20_needed(ranked[0], min_m20) if ranked else min_m20
    convincing = (bool(ranked) and ranked[0].m20 >= need
                  and ranked[0].n_unindexed_strong <= search.max_unindexed)
    if convincing:
        message = f"best cell: {ranked[0].describe()}"
    elif ranked and math.isinf(need):
        message = (f"no convincing cell: the best cell rests on {ranked[0].n_indexed} lines "
                   f"but predicts {ranked[0].n_calc} there")
    elif ranked:
        message = (f"no convincing cell: best M{ranked[0].n_lines}={ranked[0].m20:.1f} < {need:g} "
                   f"({ranked[0].n_unindexed_strong} strong lines unindexed)")
    else:
        message = "no convincing cell: no trial cell indexes the first lines"
    return IndexingResult(ranked, convincing, min_m20, search.max_unindexed, len(search.tth), search.wl,
                          seconds, message)
