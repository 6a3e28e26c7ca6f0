"""Rank extinction-group candidates by Pawley fits and say which ones the data cannot tell apart.

Algorithm (:func:`rank`)
------------------------
1. **Settings.** For each candidate EG, the settings whose lattice the cell has
   (:func:`~.reflections.settings_for_cell`); an EG with none is skipped, with the reason.
2. **Reference fit.** Cell, zero shift and profile belong to the sample and the instrument,
   not to the EG, so they are refined with every reflection allowed (setting P 1,
   :func:`~.stages.refine`): fully in the lattice (system, unique axis) of the first
   candidate, and for every other lattice among the candidates only cell + zero, from
   that fit's cell (symmetrised), zero and profile. Every candidate is then fitted
   at those parameters: background and intensities of its own allowed reflections
   (:func:`~.pawley.evaluate`), in its best setting (lowest BIC). The differences between
   candidates are then differences of allowed reflections only, not of optimiser luck.
3. **Criterion.** With ĉ = max(1, the smallest χ²_ν of the fits compared) (so that a
   misfit common to all candidates, e.g. an imperfect profile on real data, does not
   inflate the evidence),
   B = χ²/ĉ + k·p − 2 ln π(EG): p parameters, k = ln n by default (the BIC), and
   ln π an optional log prior of the EG (none by default); weights
   wᵢ ∝ exp(−(Bᵢ − B_min)/2), normalised. ``parameter_penalty`` and ``log_prior`` let
   a caller choose k (a Pawley intensity is set by the few points under its own peak,
   not by all n) and a prior (e.g. a network posterior); the agent keeps the BIC, which
   ranked the measured dev set best (docs/design.md).
4. **Separability** of the leader L and each other candidate O. A *separating* group is
   one allowed by one EG whose every member hkl the other forbids; it is *resolved* when
   no group the other allows lies within ``resolution_fwhm`` · Γ of it. Its expected
   intensity, were it allowed, is the Wilson estimate μ = M · LP(θ) · ⟨I/(M·LP)⟩(s²)
   from the allowing fit's other groups (M the number of hkl in the group,
   s = sin θ/λ), and its noise σ(I) the fit's standard uncertainty; the pair's signal is
   S = √Σ (μ/σ)² over resolved separating groups of both directions. The evidence
   that L's absences and not O's are right is the Bayes factor K on those groups with a
   Wilson prior, as in extinction-symbol probabilities from Pawley intensities
   (Markvardsen, David, Johnson & Shankland, Acta Cryst. A57, 47 (2001)): per group,
   ln p(y | allowed) − ln p(y | absent) with I ~ Exp(μ) and y = I ± σ
   (:func:`_wilson_log_evidence`). O is **indistinguishable** from L when there is no
   resolved separating group, or S < ``snr_threshold``, or 2 ln K < ``min_delta_bic``
   (the absences are not proven: e.g. a reflection merely weak by chance), or
   B_O − B_L < ``min_delta_bic``.
5. **Count time.** S grows as √t, so S reaches the threshold after t · (threshold/S)².
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import gemmi
import numpy as np
from scipy.special import erfcx, log_ndtr

from ratagent.crystallography import extinction_group, systematically_absent
from ratagent.crystallography.cell import check_cell
from ratagent.instrument import Instrument
from ratagent.patterns import Pattern
from ratagent.refinement import pawley, stages
from ratagent.refinement.pawley import PawleyConfig, PawleyResult
from ratagent.refinement.reflections import allowed_reflections, lattice_model, settings_for_cell

__all__ = ["Evidence", "RankResult", "RankedCandidate", "Separation", "criterion", "rank"]

logger = logging.getLogger(__name__)

_P1 = "P 1"
# Lattices after the first start from its refined cell (symmetrised), zero and profile,
# and refine only cell + zero, briefly: the profile belongs to the instrument and sample.
_POLISH_NFEV = 30
_POLISH_TOLERANCE = 1e-5
_COUNT_TIME_KEYS = ("count_time_s", "count_time")


@dataclass(frozen=True)
class Evidence:
    """How strongly the data support one candidate."""

    weight: float  # probability-like weight exp(−ΔB/2), normalised over the candidates
    delta_bic: float  # B − B_min (module step 3); 0 for the leader
    criterion: float  # B = χ²/ĉ + k·p − 2 ln π (module step 3)


class RankedCandidate(NamedTuple):
    """One ranked candidate: unpacks as ``eg, result, evidence``."""

    eg: int
    result: PawleyResult
    evidence: Evidence


@dataclass(frozen=True)
class Separation:
    """What separates the leading EG from another candidate in these data."""

    eg: int  # the other candidate
    n_separating: int  # groups allowed by one EG and forbidden by the other (both directions)
    n_resolved: int  # of those, not overlapping a reflection the other allows
    snr: float  # S, expected signal-to-noise of the resolved separating groups together
    delta_bic: float  # B_other − B_leader
    distinguishable: bool
    reason: str
    count_time_factor: float  # (snr_threshold / S)²; inf when nothing resolved separates them
    suggested_count_time_s: float | None  # t · factor when S is below the threshold and t is known


@dataclass(frozen=True)
class RankResult:
    """Candidates best first, the set the data cannot tell apart, and what would separate them."""

    candidates: tuple[RankedCandidate, ...]
    indistinguishable: tuple[int, ...]  # the leader and every EG not separable from it
    separations: tuple[Separation, ...]  # leader vs each other candidate, in rank order
    skipped: tuple[tuple[int, str], ...]  # (EG, why it was not fitted)
    count_time_s: float | None  # the current count time, if known
    snr_threshold: float

    def __iter__(self) -> Iterator[RankedCandidate]:
        return iter(self.candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def best(self) -> RankedCandidate:
        """The leading candidate."""
        return self.candidates[0]

    @property
    def leading_pair(self) -> Separation | None:
        """Separation of the leader and the runner-up (None with one candidate)."""
        return self.separations[0] if self.separations else None

    @property
    def suggested_count_time_s(self) -> float | None:
        """Count time that would separate the leader from every candidate now below the noise."""
        times = [s.suggested_count_time_s for s in self.separations if s.suggested_count_time_s is not None]
        return max(times) if times else None


def criterion(chi2: float, n_params: int, n_obs: int, c_hat: float, penalty: float | None = None,
              log_prior: float = 0.0) -> float:
    """The ranking criterion B = χ²/ĉ + k·p − 2 ln π of one fit (module docstring, step 3).

    ``c_hat`` ≥ 1 is the overdispersion the data show: the smallest χ²_ν of the fits
    compared (that of the most flexible fit, not necessarily the leader's); every fit
    compared is scored with the same ĉ. ``penalty`` is k (None: ln n, the BIC) and
    ``log_prior`` ln π of the fitted EG (0: no prior).
    """
    k = math.log(n_obs) if penalty is None else penalty
    return chi2 / c_hat + n_params * k - 2.0 * log_prior


def _check_candidates(candidates: Sequence[int]) -> list[int]:
    if isinstance(candidates, int | np.integer):
        raise TypeError(f"candidates must be a sequence of EG numbers, got {candidates!r}")
    out: list[int] = []
    for eg in candidates:
        extinction_group(eg)  # raises ValueError / TypeError naming the value
        if int(eg) not in out:
            out.append(int(eg))
    if not out:
        raise ValueError("candidates is empty; give at least one EG number 1–99")
    return out


def count_time_of(pattern: Pattern, count_time_s: float | None = None) -> float | None:
    """``count_time_s``, else the pattern's own (``meta["count_time_s"]`` or ``["count_time"]``),
    else None, in seconds.

    Raises
    ------
    ValueError
        The count time is not a positive finite number; the message names where it came
        from (the argument, or the meta key and the pattern's ``meta["source"]`` file).
    """
    name, t = "count_time", count_time_s
    if t is None:
        key = next((k for k in _COUNT_TIME_KEYS if pattern.meta.get(k) is not None), None)
        if key is None:
            return None
        source = pattern.meta.get("source")
        name = f"meta[{key!r}]" + (f" of {source}" if source else " of the pattern")
        t = pattern.meta[key]
    try:
        value = float(t)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {t!r}")
    return value


def rank(
    pattern: Pattern,
    cell: object,
    candidates: Sequence[int],
    instrument: Instrument | None = None,
    *,
    config: PawleyConfig | None = None,
    count_time_s: float | None = None,
    snr_threshold: float = 5.0,
    min_delta_bic: float = 10.0,
    resolution_fwhm: float = 0.5,
    parameter_penalty: float | None = None,
    log_prior: Mapping[int, float] | None = None,
    tie_break: Mapping[int, float] | None = None,
) -> RankResult:
    """Fit every candidate EG and rank them (module algorithm).

    Parameters
    ----------
    pattern : Pattern
    cell : six floats
        Approximate (a, b, c, α, β, γ), Å and degrees.
    candidates : sequence of int
        EG numbers 1–99 (e.g. :func:`ratagent.crystallography.candidates` of a posterior).
    instrument : Instrument, optional
        Lines and starting zero/profile; default a single line at the pattern's wavelength.
    config : PawleyConfig, optional
    count_time_s : float, optional
        Current count time; default ``pattern.meta["count_time_s"]`` or ``["count_time"]``.
    snr_threshold : float
        S below which separating reflections count as "below the noise".
    min_delta_bic : float
        B difference below which two candidates are not told apart (10 ≈ weight ratio e⁻⁵).
    resolution_fwhm : float
        Separating reflections closer than this × FWHM to an allowed one are unresolved.
    parameter_penalty : float, optional
        k, the criterion's charge per fitted parameter (module step 3); default ln n.
    log_prior : mapping of int to float, optional
        ln π per EG, added to the criterion as −2 ln π (an EG not in it: 0).
    tie_break : mapping of int to float, optional
        Orders EGs whose criteria are equal (to 10⁻⁶: fits allowing the same reflections in
        the measured range), highest first; e.g. the network's posterior. Without it, or
        among equal values, the lower EG number goes first.

    Raises
    ------
    ValueError
        Bad cell, unknown EG, empty candidates, a pattern too short, no candidate whose
        lattice the cell has, or non-positive thresholds.
    """
    for name, value in (("snr_threshold", snr_threshold), ("resolution_fwhm", resolution_fwhm)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if min_delta_bic < 0:
        raise ValueError(f"min_delta_bic must be ≥ 0, got {min_delta_bic}")
    if parameter_penalty is not None and not (math.isfinite(parameter_penalty) and parameter_penalty > 0):
        raise ValueError(f"parameter_penalty must be a positive number or None, got {parameter_penalty!r}")
    prior = {} if log_prior is None else {int(eg): float(v) for eg, v in log_prior.items()}
    if not all(math.isfinite(v) for v in prior.values()):
        raise ValueError("log_prior must be finite for every EG: floor the probabilities before the log")
    config = config or PawleyConfig()
    cell_arr = check_cell(cell)
    egs = _check_candidates(candidates)
    t_now = count_time_of(pattern, count_time_s)
    with pawley.single_threaded_blas():
        instrument = pawley.instrument_for(pattern, instrument)
        results, skipped = _fit_all(pattern, cell_arr, egs, instrument, config)
    if not results:
        raise ValueError(f"no candidate EG fits the lattice of cell {cell_arr.tolist()}: {dict(skipped)}")
    c_hat = max(1.0, min(r.chi2_reduced for r in results.values()))
    crit = {eg: criterion(r.chi2, r.n_params, r.n_obs, c_hat, parameter_penalty, prior.get(eg, 0.0))
            for eg, r in results.items()}
    ties = tie_break or {}
    order = sorted(crit, key=lambda eg: (round(crit[eg], 6), -ties.get(eg, 0.0), eg))
    b_min = min(crit.values())
    raw = np.array([math.exp(-(crit[eg] - b_min) / 2.0) for eg in order])
    weights = raw / raw.sum()
    ranked = tuple(
        RankedCandidate(eg, results[eg], Evidence(float(w), crit[eg] - b_min, crit[eg]))
        for eg, w in zip(order, weights, strict=True)
    )
    leader = results[order[0]]
    seps = tuple(
        _separation(
            leader,
            results[eg],
            crit[eg] - b_min,
            instrument,
            t_now,
            snr_threshold,
            min_delta_bic,
            resolution_fwhm,
        )
        for eg in order[1:]
    )
    indist = (order[0], *(s.eg for s in seps if not s.distinguishable))
    return RankResult(ranked, indist, seps, tuple(skipped), t_now, snr_threshold)


def _fit_all(pattern, cell, egs, instrument, config):
    """Module steps 1–2: {EG: PawleyResult} and [(EG, reason)] for those skipped."""
    d_min = pawley.reflection_limit(pattern, instrument, config)
    skipped: list[tuple[int, str]] = []
    by_lattice: dict = {}
    for eg in egs:
        settings = settings_for_cell(eg, cell)
        if not settings:
            info = extinction_group(eg)
            skipped.append((eg, f"cell does not have the {info.lattice_family} metric of {info.symbol}"))
            continue
        for s in settings:
            by_lattice.setdefault(lattice_model(eg, s), []).append((eg, s))
    results: dict[int, PawleyResult] = {}
    p1 = gemmi.find_spacegroup_by_name(_P1)
    polish = replace(config, refine_profile=False, max_nfev=_POLISH_NFEV, tolerance=_POLISH_TOLERANCE)
    first: np.ndarray | None = None  # refined (cell, zero, profile) of the first lattice
    for lattice, members in by_lattice.items():
        ref = allowed_reflections(lattice, p1, cell, d_min)
        n_min = 3 * (lattice.n_params + 7 + config.n_background)
        if len(pattern) < n_min:
            raise ValueError(
                f"pattern has {len(pattern)} points; a {lattice.system} fit needs at least {n_min}"
            )
        if first is None:
            theta, notes, ok, fit = stages.refine(pattern, instrument, ref, cell, config)
            first = np.r_[lattice.cell(theta[: lattice.n_params]), theta[lattice.n_params :]]
        else:
            start = np.r_[lattice.metric_params(first[:6]), first[6:]]
            theta, notes, ok, fit = stages.refine(pattern, instrument, ref, cell, polish, start=start)
        logger.debug("reference fit %s: %s", lattice, notes or "converged")
        best: dict[int, tuple[float, object]] = {}
        for eg, s in members:
            refl = allowed_reflections(lattice, s, cell, d_min)
            score = pawley.screening_bic(pattern, instrument, refl, cell, theta, config)
            if eg not in best or score < best[eg][0]:
                best[eg] = (score, refl)
        for eg, (_, refl) in best.items():
            res = pawley.evaluate(eg, pattern, instrument, refl, cell, theta, config, notes, ok, fit)
            if eg not in results or res.bic < results[eg].bic:
                results[eg] = res
    return results, skipped


def _lp(two_theta: np.ndarray, instrument: Instrument) -> np.ndarray:
    """Lorentz–polarisation (1 + cos²2θ_M cos²2θ) / ((1 + cos²2θ_M) sin²θ cosθ)."""
    cm2 = math.cos(math.radians(instrument.monochromator_2theta_deg)) ** 2
    th = np.radians(two_theta) / 2.0
    return (1.0 + cm2 * np.cos(2 * th) ** 2) / ((1.0 + cm2) * np.sin(th) ** 2 * np.cos(th))


def _separating_groups(res: PawleyResult, other: PawleyResult) -> np.ndarray:
    """Bool per group of ``res``: every member hkl is forbidden in ``other``'s setting."""
    refl = res.reflections
    absent = systematically_absent(gemmi.find_spacegroup_by_name(other.setting), refl.members)
    allowed_count = np.bincount(refl.member_family, weights=~absent, minlength=len(refl))
    fam_sep = allowed_count == 0
    inside = res.family_group >= 0
    n_groups = res.intensity.size
    not_sep = np.bincount(res.family_group[inside], weights=~fam_sep[inside], minlength=n_groups)
    return not_sep == 0


def _resolved(
    res: PawleyResult, sep: np.ndarray, other: PawleyResult, resolution_fwhm: float, instrument
) -> np.ndarray:
    """Separating groups of ``res`` with no group of ``other`` within resolution_fwhm · Γ."""
    from ratagent.refinement.profile import tch_fwhm_eta

    tt = res.group_two_theta[sep]
    fwhm, _ = tch_fwhm_eta(tt, *(getattr(res.profile, n) for n in ("u", "v", "w", "x", "y")))
    others = np.sort(other.group_two_theta)
    if others.size == 0:
        return np.ones(tt.size, bool)
    i = (
        np.clip(np.searchsorted(others, tt), 1, others.size - 1)
        if others.size > 1
        else np.zeros(tt.size, int)
    )
    near = np.minimum(np.abs(others[i] - tt), np.abs(others[np.maximum(i - 1, 0)] - tt))
    return near > resolution_fwhm * fwhm


def _wilson_log_evidence(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """ln p(y | allowed) − ln p(y | absent) for an intensity estimate y ± σ (module step 4).

    Allowed: I ~ Exp(μ) (Wilson, acentric), y = I + N(0, σ²), so
    p(y) = (1/μ) exp(σ²/(2μ²) − y/μ) Φ(z) with z = y/σ − σ/μ; absent: y ~ N(0, σ²). The
    ratio is ln(σ√(2π)/μ) + z²/2 + ln Φ(z), and for z < 0 the last two terms are
    ln(½ erfcx(−z/√2)): no large terms cancel, and as μ/σ → 0 (an expected intensity far
    below the noise) the ratio tends to 0, so such a group adds no evidence either way.
    """
    mu = np.maximum(mu, 1e-12 * sigma)
    z = y / sigma - sigma / mu
    low = z < 0
    tail = np.where(low, np.log(0.5 * erfcx(-np.minimum(z, 0.0) / math.sqrt(2))),
                    0.5 * z**2 + log_ndtr(np.maximum(z, 0.0)))
    return np.log(sigma / mu) + 0.5 * math.log(2 * math.pi) + tail


def _expected(res: PawleyResult, sep: np.ndarray, resolved: np.ndarray, instrument: Instrument):
    """(μ, σ, y) of the resolved separating groups of ``res`` (Wilson estimate μ, module step 4)."""
    refl = res.reflections
    inside = res.family_group >= 0
    n_groups = res.intensity.size
    mult = np.bincount(res.family_group[inside], weights=refl.multiplicity[inside], minlength=n_groups)
    tt = res.group_two_theta
    lp = _lp(tt, instrument)
    s2 = (np.sin(np.radians(tt) / 2.0) / instrument.wavelength) ** 2
    norm = res.intensity / np.maximum(mult * lp, 1e-300)
    base = ~sep & (mult > 0)
    idx = np.flatnonzero(sep)[resolved]
    if base.sum() == 0:
        return np.zeros(idx.size), np.ones(idx.size), res.intensity[idx]
    order = np.argsort(s2[base])
    n_bins = max(1, int(base.sum()) // 10)
    chunks = np.array_split(order, n_bins)
    centres = np.array([s2[base][c].mean() for c in chunks])
    means = np.array([norm[base][c].mean() for c in chunks])
    mu = mult[idx] * lp[idx] * np.interp(s2[idx], centres, means)
    return mu, np.maximum(res.intensity_sigma[idx], 1e-300), res.intensity[idx]


def _separation(
    leader, other, delta_bic, instrument, t_now, threshold, min_delta_bic, resolution_fwhm
) -> Separation:
    s2, log_bf, n_sep, n_res = 0.0, 0.0, 0, 0
    for sign, (a, b) in ((-1.0, (leader, other)), (1.0, (other, leader))):
        sep = _separating_groups(a, b)
        if not sep.any():
            continue
        res = _resolved(a, sep, b, resolution_fwhm, instrument)
        n_sep += int(sep.sum())
        n_res += int(res.sum())
        mu, sigma, y = _expected(a, sep, res, instrument)
        s2 += float(np.sum((mu / sigma) ** 2))
        # evidence for the leader: its absences (the other allows) and its extra allowed groups
        log_bf -= sign * float(np.sum(_wilson_log_evidence(y, mu, sigma)))
    s = math.sqrt(s2)
    evidence = 2.0 * log_bf
    factor = (threshold / s) ** 2 if s > 0 else math.inf
    if n_res == 0:
        ok, why = False, "no resolved reflection separates them (same allowed peaks within the resolution)"
    elif s < threshold:
        ok, why = False, f"separating reflections are below the noise (S = {s:.2f} < {threshold:g})"
    elif evidence < min_delta_bic:
        ok, why = (
            False,
            f"Wilson evidence on the separating reflections 2 ln K = {evidence:.1f} < {min_delta_bic:g}",
        )
    elif delta_bic < min_delta_bic:
        ok, why = False, f"criterion difference {delta_bic:.1f} < {min_delta_bic:g}"
    else:
        ok, why = (
            True,
            (
                f"{n_res} resolved separating reflection group(s), S = {s:.1f}, 2 ln K = {evidence:.1f}, "
                f"ΔB = {delta_bic:.1f}"
            ),
        )
    suggest = t_now * factor if (t_now is not None and s < threshold and math.isfinite(factor)) else None
    return Separation(other.eg, n_sep, n_res, s, float(delta_bic), ok, why, float(factor), suggest)
