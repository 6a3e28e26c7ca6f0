"""Peak search in a powder pattern: positions with uncertainties, intensities, widths.

Algorithm (:func:`find_peaks`)
------------------------------
1. Background by SNIP; Kα2 removed by Rachinger stripping when the second line is
   given (:mod:`ratagent.indexing.background`).
2. Candidates are minima of the Savitzky–Golay smoothed second derivative (Savitzky &
   Golay, Anal. Chem. 36, 1627 (1964)) that lie ``min_snr`` standard deviations below
   zero, the deviation propagated from Poisson counts (or the given σ) through the filter
   (σ²_{d2} = Σ c_j² σ²_{i+j}), plus an additive term where the measured point-to-point
   scatter is larger (scaled or processed data, :func:`_excess_variance`); the second
   derivative also finds shoulders that have no maximum of their own (flagged
   ``shoulder``). Weak lines are found by a matched filter: a zero-mean Ricker wavelet
   as wide as the peaks (Du, Kibbe & Lin, Bioinformatics 22, 2059 (2006)) sums the whole
   peak, not a few points of its top, and ignores a slowly varying background; its
   candidates must lie ``matched_snr`` standard deviations above zero. Wavelets two and
   three times as wide add the lines broader than the strongest one that neither finds
   (:func:`_broad_candidates`). Every candidate must also stand ``min_snr`` deviations
   above the background in the Gaussian-smoothed net counts.
3. Neighbouring candidates (closer than 3 FWHM) are fitted together by least squares
   with area-normalised pseudo-Voigt profiles plus a constant,

   .. math:: pV(x) = S\\,[\\eta\\,\\frac{2}{\\pi w}\\frac{1}{1 + 4(x-x_0)^2/w^2}
             + (1-\\eta)\\,\\frac{2}{w}\\sqrt{\\frac{\\ln 2}{\\pi}}\\,e^{-4\\ln 2\\,(x-x_0)^2/w^2}]

   (S area, w FWHM, η mixing); standard uncertainties come from the Jacobian,
   cov = (JᵀJ)⁻¹ χ²_ν.
4. Kβ satellites are dropped when the anode's Kβ1 wavelength is given: a peak within
   max(0.02°, 0.3 FWHM) of where Kβ1 puts a stronger peak, with at most
   :data:`KBETA_MAX_RATIO` of its area (:func:`kbeta_satellites`). A β filter leaves
   about 1 % of Kβ; such a line belongs to no cell of the phase, and an indexing that
   counts it either loses a line or favours a cell free enough to index it. On the
   measured dev set, 214 peaks in 158 of 454 patterns sit at the Kβ1 position of one of
   their ten strongest peaks, 175 of them at 0.5–3 % of its area; at three wrong
   wavelengths (1.30, 1.36, 1.42 Å against Cu Kβ1 1.392 Å) 20–27 peaks do, 8 or fewer
   of them below 3 %. The agent's indexing keeps them (measured in docs/design.md).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import find_peaks as _scipy_find_peaks
from scipy.signal import savgol_coeffs

from ratagent.indexing.background import rachinger_strip, snip_background
from ratagent.instrument import Instrument
from ratagent.patterns import Pattern, q_from_two_theta

__all__ = ["KBETA_MAX_RATIO", "PeakList", "ResidualFilter", "find_peaks", "kbeta_satellites", "pseudo_voigt"]

log = logging.getLogger(__name__)


#: Largest area of a Kβ satellite relative to its Kα1 parent (step 4 of the module
#: docstring): a β filter leaves 0.5–3 %; unfiltered Kβ (about 18 %) is not handled.
KBETA_MAX_RATIO = 0.03


def kbeta_satellites(
    two_theta: np.ndarray,
    area: np.ndarray,
    fwhm: np.ndarray,
    kbeta_ratio: float,
    max_ratio: float = KBETA_MAX_RATIO,
) -> np.ndarray:
    """Which peaks are Kβ satellites of a stronger peak (bool, one per peak).

    ``kbeta_ratio`` is λ(Kβ1) / λ(Kα1): a Kα1 line at 2θ has its Kβ1 line at
    2 arcsin(ratio · sin θ). A peak is a satellite when it lies within max(0.02°, 0.3 FWHM of
    the parent) of that position for a parent with at least 1 / ``max_ratio`` times its
    area.
    """
    tth = np.asarray(two_theta, dtype=float)
    area = np.asarray(area, dtype=float)
    fwhm = np.asarray(fwhm, dtype=float)
    if not (math.isfinite(kbeta_ratio) and 0 < kbeta_ratio < 1):
        raise ValueError(f"kbeta_ratio must be λ(Kβ)/λ(Kα1) in (0, 1), got {kbeta_ratio!r}")
    beta = 2.0 * np.degrees(np.arcsin(kbeta_ratio * np.sin(np.radians(tth / 2.0))))
    window = np.maximum(0.02, 0.3 * fwhm)
    near = np.abs(tth[:, None] - beta[None, :]) <= window[None, :]  # [satellite, parent]
    weak = area[:, None] <= max_ratio * area[None, :]
    return np.any(near & weak, axis=1)


def pseudo_voigt(x: np.ndarray, center: float, area: float, fwhm: float, eta: float) -> np.ndarray:
    """Area-normalised pseudo-Voigt (formula in the module docstring)."""
    u = (x - center) / fwhm
    lor = 2.0 / (math.pi * fwhm) / (1.0 + 4.0 * u * u)
    gau = 2.0 / fwhm * math.sqrt(math.log(2) / math.pi) * np.exp(-4.0 * math.log(2) * u * u)
    return area * (eta * lor + (1.0 - eta) * gau)


@dataclass(frozen=True, eq=False)
class ResidualFilter:
    """What the fitted peaks leave in the profile, as a matched-filter significance on a 2θ grid.

    The net counts less the fitted profiles of every peak found, convolved with the
    search's Ricker wavelet and divided by the propagated standard deviation: a line too
    weak to pass ``matched_snr`` still raises it by a few σ at its position, so reading
    it where a cell predicts lines that were not found tells whether some are there
    (:func:`~ratagent.indexing.supercells.profile_evidence`).
    """

    two_theta: np.ndarray  # uniform grid, degrees (Kα1 positions)
    snr: np.ndarray  # σ units; NaN where the wavelet overhangs the pattern's ends
    fwhm_deg: float  # peak width the wavelet is matched to, degrees

    def at(self, two_theta: np.ndarray) -> np.ndarray:
        """The significance at each 2θ (linear interpolation; NaN outside the grid)."""
        t = np.asarray(two_theta, dtype=float)
        return np.interp(t, self.two_theta, self.snr, left=np.nan, right=np.nan)


@dataclass(frozen=True, eq=False)
class PeakList:
    """Peaks found in one pattern, ascending in 2θ (all arrays of shape (n,))."""

    two_theta: np.ndarray  # fitted Kα1 positions, degrees
    two_theta_sigma: np.ndarray  # standard uncertainty of the position, degrees
    intensity: np.ndarray  # integrated net intensity (area, counts·degree)
    height: np.ndarray  # net peak height, counts
    fwhm: np.ndarray  # full width at half maximum, degrees
    shoulder: np.ndarray  # bool: found without a maximum of its own
    wavelength: float  # λ of the positions (Kα1), Å
    residual: ResidualFilter | None = None  # what the fitted peaks leave (from find_peaks)

    def __post_init__(self) -> None:
        n = len(self.two_theta)
        for name in ("two_theta_sigma", "intensity", "height", "fwhm", "shoulder"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, two_theta has {n}")

    def __len__(self) -> int:
        return len(self.two_theta)

    @property
    def q(self) -> np.ndarray:
        """Q = 4π sin θ / λ, Å⁻¹."""
        return q_from_two_theta(self.two_theta, self.wavelength)

    @property
    def d(self) -> np.ndarray:
        """d = 2π / Q, Å."""
        return 2.0 * np.pi / self.q

    @classmethod
    def from_positions(
        cls,
        two_theta: np.ndarray,
        wavelength: float,
        intensity: np.ndarray | None = None,
        sigma_deg: float | np.ndarray = 0.005,
    ) -> PeakList:
        """A peak list from bare positions (e.g. a table), with a nominal uncertainty or one per line."""
        order = np.argsort(np.asarray(two_theta, dtype=float))
        tth = np.asarray(two_theta, dtype=float)[order]
        n = len(tth)
        inten = np.ones_like(tth) if intensity is None else np.asarray(intensity, dtype=float)[order]
        sigma = np.asarray(sigma_deg, dtype=float)
        if sigma.ndim == 0:
            sigma = np.full(n, float(sigma))
        elif sigma.shape != (n,):
            raise ValueError(f"sigma_deg has shape {sigma.shape}; expected a number or ({n},), one per line")
        else:
            sigma = sigma[order]
        return cls(tth, sigma, inten, inten, np.full(n, np.nan), np.zeros(n, bool), float(wavelength))


def _fwhm_points(net: np.ndarray) -> float:
    """Rough FWHM (points) of the strongest peak of a background-free profile."""
    i = int(np.argmax(net))
    half = net[i] / 2.0
    lo = i
    while lo > 0 and net[lo] > half:
        lo -= 1
    hi = i
    while hi < len(net) - 1 and net[hi] > half:
        hi += 1
    return float(max(hi - lo, 3))


def _gaussian(w_pts: float) -> np.ndarray:
    """Unit-sum Gaussian of FWHM ``w_pts`` points, ±2 FWHM long."""
    sd = w_pts / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    j = np.arange(-int(math.ceil(2 * w_pts)), int(math.ceil(2 * w_pts)) + 1)
    g = np.exp(-0.5 * (j / sd) ** 2)
    return g / g.sum()


#: Widths of the wider matched filters, in FWHMs of the strongest peak (:func:`_broad_candidates`).
_BROAD_SCALES = (2.0, 3.0)


def _ricker(w_pts: float) -> np.ndarray:
    """Zero-mean Ricker (Mexican-hat) wavelet matched to a peak of FWHM ``w_pts`` points."""
    sd = w_pts / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    j = np.arange(-int(math.ceil(5 * sd)), int(math.ceil(5 * sd)) + 1)
    r = (1.0 - (j / sd) ** 2) * np.exp(-0.5 * (j / sd) ** 2)
    return r - r.mean()


def _matched(net: np.ndarray, var: np.ndarray, ricker: np.ndarray, overhang: float = 0.0) -> np.ndarray:
    """Significance of the matched filter ``ricker`` on ``net`` (σ); ``overhang`` where the
    wavelet overhangs an end."""
    out = np.convolve(net, ricker, mode="same") / np.sqrt(np.convolve(var, ricker**2, mode="same"))
    half = len(ricker) // 2
    out[:half] = out[len(out) - half :] = overhang
    return out


def _broad_candidates(idx: np.ndarray, net: np.ndarray, var: np.ndarray, w_pts: float,
                      matched_snr: float) -> np.ndarray:
    """``idx`` and the maxima of wider matched filters farther than a filter width from them.

    Lines broaden with 2θ (tan θ, the Kα doublet) and a second phase may be finer-grained,
    so a measured pattern's weaker lines are often two to three times as wide as its
    strongest one; filters matched to that width sum only their tops (dev pattern 262 of
    the RRUFF set: lines of 3–6 % at 54.9° and 85.4°, 0.2° wide beside a 0.07° strongest
    line, reach 4.4 σ in the narrow filter and 10 σ or more in the wider ones). A wider
    filter's maxima near a line already found are that line (or its neighbours merged).
    """
    found = np.sort(idx)
    for scale in _BROAD_SCALES:
        width = scale * w_pts
        wide, _ = _scipy_find_peaks(_matched(net, var, _ricker(width)), height=matched_snr,
                                    distance=max(2, int(width / 2)))
        if len(found):
            wide = wide[np.abs(wide[:, None] - found[None, :]).min(axis=1) > width]
        found = np.sort(np.concatenate([found, wide]))
    return found


def _excess_variance(y: np.ndarray, var: np.ndarray) -> float:
    """Variance of the noise beyond ``var`` (≥ 0; ≈ 0 for Poisson counts), counts².

    Residuals r of a 5-point quadratic Savitzky–Golay smoothing have variance
    σ² (1 − 2c₀ + Σc_j²) for white noise. Their robust variance (1.4826 × MAD)², minus
    the median of the assumed one, is taken as an additive noise term: scaled or
    processed measured data (e.g. normalised to a maximum of 1000, detector noise) scatter
    more than √counts in the background, while the tops of the peaks stay near Poisson.
    """
    c = savgol_coeffs(5, 2)
    gain = 1.0 - 2.0 * c[2] + float(np.sum(c * c))
    resid = (y - np.convolve(y, c[::-1], mode="same"))[5:-5]
    if resid.size == 0:
        return 0.0
    robust = (1.4826 * float(np.median(np.abs(resid - np.median(resid))))) ** 2 / gain
    return max(0.0, robust - float(np.median(var[5:-5])))


def _alpha2(
    instrument: Instrument | None, alpha2: tuple[float, float] | None, wl: float
) -> tuple[float, float] | None:
    if instrument is not None and alpha2 is not None:
        raise ValueError("give either instrument or alpha2, not both")
    if instrument is not None:
        if not math.isclose(instrument.wavelength, wl, rel_tol=1e-4):
            raise ValueError(
                f"instrument wavelength {instrument.wavelength} Å differs from the pattern's {wl} Å"
            )
        if len(instrument.wavelengths_angstrom) < 2 or instrument.line_ratios[1] == 0:
            return None
        return instrument.wavelengths_angstrom[1], instrument.line_ratios[1] / instrument.line_ratios[0]
    return alpha2


def find_peaks(
    pattern: Pattern,
    *,
    instrument: Instrument | None = None,
    alpha2: tuple[float, float] | None = None,
    min_snr: float = 4.0,
    matched_snr: float = 5.0,
    fwhm_deg: float | None = None,
    max_peaks: int = 200,
    kbeta_angstrom: float | None = None,
) -> PeakList:
    """Find, fit and list the peaks of a powder pattern (algorithm in the module docstring).

    Parameters
    ----------
    pattern : Pattern
        Counts on an increasing 2θ grid; its wavelength is the Kα1 one.
    instrument : Instrument, optional
        If it has a second line (Kα2), that line is stripped before the search.
    alpha2 : (λ₂ in Å, I₂/I₁), optional
        The same, given directly. Without either, the pattern is taken as single-line.
    min_snr : float
        Detection threshold in standard deviations of the smoothed second derivative.
    matched_snr : float
        Detection threshold in standard deviations of the matched (Ricker) filter. It
        finds weak lines the second derivative misses; its threshold is higher because
        the SNIP background follows the noise and gives it false alarms of its own.
    fwhm_deg : float, optional
        Typical FWHM; estimated from the strongest peak when absent.
    max_peaks : int
        At most this many peaks (the most significant) are fitted.
    kbeta_angstrom : float, optional
        Kβ1 wavelength, Å (:attr:`Instrument.kbeta_angstrom`): its satellites of stronger
        peaks are dropped (step 4). Without it they are kept.

    Raises
    ------
    ValueError
        If ``min_snr``, ``matched_snr`` or ``fwhm_deg`` is not positive, ``kbeta_angstrom`` is not
        below the pattern's wavelength, both ``instrument`` and ``alpha2``
        are given, or the instrument's wavelength differs from the pattern's.
    """
    for name, v in (("min_snr", min_snr), ("matched_snr", matched_snr)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive, got {v!r}")
    if kbeta_angstrom is not None and not (math.isfinite(kbeta_angstrom)
                                           and 0 < kbeta_angstrom < pattern.wavelength):
        raise ValueError(f"kbeta_angstrom must lie between 0 and the pattern's Kα1 wavelength "
                         f"{pattern.wavelength} Å, got {kbeta_angstrom!r}")
    if fwhm_deg is not None and not (math.isfinite(fwhm_deg) and fwhm_deg > 0):
        raise ValueError(f"fwhm_deg must be positive, got {fwhm_deg!r}")
    a2 = _alpha2(instrument, alpha2, pattern.wavelength)
    x0 = np.asarray(pattern.two_theta, dtype=float)
    step = float(np.median(np.diff(x0)))
    x = x0[0] + step * np.arange(int(round((x0[-1] - x0[0]) / step)) + 1)
    y = np.interp(x, x0, pattern.intensity)  # uniform grid for the filters
    var = np.interp(x, x0, pattern.sigma**2) if pattern.sigma is not None else np.maximum(y, 1.0)
    var = var + _excess_variance(y, var)
    rough = y - snip_background(y, 50)
    w_pts = fwhm_deg / step if fwhm_deg is not None else _fwhm_points(rough)
    bg = snip_background(y, max(3, int(round(2.5 * w_pts))))
    net = y - bg
    if a2 is not None:
        net = rachinger_strip(x, net, a2[0] / pattern.wavelength, a2[1])
        var = var * (1.0 + a2[1] ** 2)
    win = max(5, int(round(w_pts)) | 1)
    coeffs = savgol_coeffs(win, 2, deriv=2)
    d2 = np.convolve(net, coeffs[::-1], mode="same")
    d2_sigma = np.sqrt(np.convolve(var, coeffs[::-1] ** 2, mode="same"))
    score = -d2 / d2_sigma
    # matched filter (module docstring): finds the weak lines the short window misses
    ricker = _ricker(w_pts)
    score = np.maximum(score, _matched(net, var, ricker) * (min_snr / matched_snr))
    idx, _ = _scipy_find_peaks(score, height=min_snr, distance=max(2, int(w_pts / 2)))
    idx = _broad_candidates(idx, net, var, w_pts, matched_snr)
    gauss = _gaussian(w_pts)
    smooth = np.convolve(net, gauss, mode="same")
    smooth_sigma = np.sqrt(np.convolve(var, gauss**2, mode="same"))
    idx = idx[smooth[idx] > min_snr * smooth_sigma[idx]]
    if len(idx) > max_peaks:
        idx = np.sort(idx[np.argsort(-score[idx])[:max_peaks]])
    maxima = set(_scipy_find_peaks(smooth)[0].tolist())
    reach = max(1, int(round(w_pts / 3)))
    shoulder = np.array(
        [not any(j in maxima for j in range(i - reach, i + reach + 1)) for i in idx], dtype=bool
    )
    rows = _fit_groups(x, net, var, idx, w_pts * step, step)
    if not rows:
        empty = np.zeros(0)
        residual = _residual(x, net, var, np.zeros((0, 6)), ricker, w_pts * step)
        return PeakList(empty, empty, empty, empty, empty, np.zeros(0, bool), pattern.wavelength, residual)
    arr = np.array(rows)
    order = np.argsort(arr[:, 0])
    arr, shoulder = arr[order], shoulder[order]
    # two candidates that converged onto one peak (or split it; closer than 0.6 FWHM no two
    # lines are resolved): keep the larger
    dup = np.flatnonzero(np.diff(arr[:, 0]) < 0.6 * np.minimum(arr[1:, 4], arr[:-1, 4]))
    drop = np.where(arr[dup, 2] < arr[dup + 1, 2], dup, dup + 1)
    keep = np.setdiff1d(np.arange(len(arr)), drop)
    arr, shoulder = arr[keep], shoulder[keep]
    log.debug("find_peaks: %d peaks, FWHM ≈ %.3f°", len(arr), w_pts * step)
    residual = _residual(x, net, var, arr, ricker, w_pts * step)
    if kbeta_angstrom is not None:
        satellite = kbeta_satellites(arr[:, 0], arr[:, 2], arr[:, 4], kbeta_angstrom / pattern.wavelength)
        if satellite.any():
            log.debug("find_peaks: %d Kβ satellites dropped at %s°", int(satellite.sum()),
                      np.round(arr[satellite, 0], 3).tolist())
            arr, shoulder = arr[~satellite], shoulder[~satellite]
    return PeakList(
        arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], shoulder, pattern.wavelength, residual
    )


def _residual(
    x: np.ndarray, net: np.ndarray, var: np.ndarray, rows: np.ndarray, ricker: np.ndarray, fwhm_deg: float
) -> ResidualFilter:
    """The matched filter of ``net`` less the fitted peaks ``rows`` (center, σ, area, height, fwhm, η)."""
    model = np.zeros_like(net)
    for c, _, area, _, fw, eta in rows:
        near = slice(np.searchsorted(x, c - 20 * fw), np.searchsorted(x, c + 20 * fw))
        model[near] += pseudo_voigt(x[near], c, area, fw, eta)
    return ResidualFilter(x, _matched(net - model, var, ricker, overhang=np.nan), fwhm_deg)


def _fit_groups(
    x: np.ndarray, net: np.ndarray, var: np.ndarray, idx: np.ndarray, w0: float, step: float
) -> list[tuple[float, float, float, float, float, float]]:
    """Fit groups of close peaks; rows (center, σ_center, area, height, fwhm, η), one per peak."""
    out: list[tuple[float, float, float, float, float, float]] = []
    if len(idx) == 0:
        return out
    groups, cur = [], [idx[0]]
    for i in idx[1:]:
        if (x[i] - x[cur[-1]]) < 3 * w0 and len(cur) < 6:
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    groups.append(cur)
    for g in groups:
        lo = np.searchsorted(x, x[g[0]] - 2.5 * w0)
        hi = np.searchsorted(x, x[g[-1]] + 2.5 * w0)
        xs, ys, sig = x[lo:hi], net[lo:hi], np.sqrt(np.maximum(var[lo:hi], 1.0))
        n = len(g)
        p0, lb, ub = [0.0], [-np.inf], [np.inf]
        for i in g:
            area = max(net[i], 1.0) * w0 * 1.06
            p0 += [x[i], area, w0, 0.5]
            lb += [x[i] - w0, 0.0, 0.3 * w0, 0.0]
            ub += [x[i] + w0, np.inf, 4.0 * w0, 1.0]

        def resid(
            p: np.ndarray, xs: np.ndarray = xs, ys: np.ndarray = ys, sig: np.ndarray = sig, n: int = n
        ) -> np.ndarray:
            model = np.full_like(xs, p[0])
            for k in range(n):
                model += pseudo_voigt(xs, *p[1 + 4 * k : 5 + 4 * k])
            return (model - ys) / sig

        try:
            fit = least_squares(resid, p0, bounds=(lb, ub), x_scale="jac", max_nfev=200 * len(p0))
            dof = max(len(xs) - len(p0), 1)
            chi2 = float(np.sum(fit.fun**2)) / dof
            cov = np.linalg.pinv(fit.jac.T @ fit.jac) * max(chi2, 1.0)
            sd = np.sqrt(np.clip(np.diag(cov), 0, None))
            params = fit.x
        except (ValueError, np.linalg.LinAlgError):
            params, sd = np.array(p0), np.full(len(p0), np.nan)
        for k in range(n):
            c, area, fw, eta = params[1 + 4 * k : 5 + 4 * k]
            height = float(pseudo_voigt(np.array([c]), c, area, fw, eta)[0])
            sc = float(sd[1 + 4 * k]) if np.isfinite(sd[1 + 4 * k]) else step
            out.append((float(c), max(sc, 1e-4 * step), float(area), height, float(fw), float(eta)))
    return out
