"""Peak profiles and the design matrix of the Pawley fit (numpy, vectorised, windowed).

The profile is the simulator's (:mod:`ratagent.simulation.render`), so that a fit of
simulated data with the true model leaves only noise:

* Thompson–Cox–Hastings pseudo-Voigt (J. Appl. Cryst. 20, 79 (1987)) with
  Γ_G = √(U tan²θ + V tanθ + W), Γ_L = X / cosθ + Y tanθ (degrees 2θ, θ the Bragg angle
  of the line), Γ⁵ = Γ_G⁵ + 2.69269 Γ_G⁴Γ_L + 2.42843 Γ_G³Γ_L² + 4.47163 Γ_G²Γ_L³
  + 0.07842 Γ_GΓ_L⁴ + Γ_L⁵, η = 1.36603 q − 0.47719 q² + 0.11116 q³, q = Γ_L/Γ;
* truncated to ± ``window_fwhm`` · Γ and divided by its analytic area inside the window;
* times the Bérar–Baldinozzi asymmetry factor max(0, 1 − P · 2z e^(−z²) / tanθ), z = Δ/Γ.

:func:`design_columns` returns the profiles of all peak groups (n_points × n_groups), the
matrix the linear part of the fit works on, as :class:`BandedColumns`: each group's column
is non-zero on one run of grid points, so the column is stored as that run, and the normal
equations are summed band against overlapping band (:mod:`ratagent.refinement._banded`)
rather than through a general sparse matrix, whose assembly cost more than the sums.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from scipy.special import erf

from ratagent.instrument import tch_mix
from ratagent.refinement._banded import design_bands, design_derivatives, normal_blocks

__all__ = [
    "BandedColumns",
    "chebyshev_basis",
    "design_columns",
    "design_derivatives_available",
    "design_jacobian",
    "tch_fwhm_eta",
]

_GAUSS_NORM = 2.0 * math.sqrt(math.log(2.0) / math.pi)  # Γ · G(0) of a unit-area Gaussian
_GAUSS_K = 4.0 * math.log(2.0)
_ERF_K = 2.0 * math.sqrt(math.log(2.0))
# Window half-widths in grid points: each peak's is rounded up to the next of these, as the
# simulator's renderer does (``ratagent.simulation.renderer._WINDOW_BUCKETS``), so that the
# truncated profiles are the same function; one vectorised block serves each size.
_WINDOW_BUCKETS = np.array(
    (2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 724, 1024), dtype=np.int64
)


def tch_fwhm_eta(
    two_theta_deg: np.ndarray, u: float, v: float, w: float, x: float, y: float
) -> tuple[np.ndarray, np.ndarray]:
    """TCH total FWHM Γ (degrees) and Lorentzian fraction η at Bragg angles 2θ (module formulas).

    Γ_G² is clamped at 1e-8 deg² and Γ_L at 0 so that no parameter value gives NaN.
    """
    theta = np.radians(np.asarray(two_theta_deg, float)) / 2.0
    t = np.tan(theta)
    gg = np.sqrt(np.maximum(u * t * t + v * t + w, 1e-8))
    gl = np.maximum(x / np.cos(theta) + y * t, 0.0)
    fwhm, eta = tch_mix(gg, gl)
    return fwhm, np.clip(eta, 0.0, 1.0)


def _window_area(lo: np.ndarray, hi: np.ndarray, fwhm: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """∫ pV over [lo, hi]: η [atan(2hi/Γ) − atan(2lo/Γ)]/π + (1 − η)[erf(2√ln2 hi/Γ) − erf(2√ln2 lo/Γ)]/2."""
    lor = (np.arctan(2.0 * hi / fwhm) - np.arctan(2.0 * lo / fwhm)) / math.pi
    gau = 0.5 * (erf(_ERF_K * hi / fwhm) - erf(_ERF_K * lo / fwhm))
    return eta * lor + (1.0 - eta) * gau


def _windows(x: np.ndarray, centre: np.ndarray, fwhm: np.ndarray, amplitude: np.ndarray, window_fwhm: float):
    """The grid step, each peak's centre point c0 (extrapolated off the grid), the peaks
    whose window touches the grid (indices) and their window half-widths, in points."""
    n = x.size
    step = float(np.median(np.diff(x)))
    half = np.maximum(np.ceil(window_fwhm * fwhm / step - 1e-9), 1.0).astype(np.int64)  # 0.64/0.01 is 64
    c0 = np.rint(np.interp(centre, x, np.arange(n), left=np.nan, right=np.nan))
    # peaks centred off the grid: place them by extrapolating the step, keep if the window touches it
    off = np.isnan(c0)
    c0[off] = np.where(centre[off] < x[0], (centre[off] - x[0]) / step, n - 1 + (centre[off] - x[-1]) / step)
    c0 = np.rint(c0).astype(np.int64)
    idx = np.flatnonzero((c0 + half >= 0) & (c0 - half <= n - 1) & (amplitude != 0))
    pick = np.searchsorted(_WINDOW_BUCKETS, half[idx])
    sizes = np.where(pick < _WINDOW_BUCKETS.size, _WINDOW_BUCKETS[np.minimum(pick, _WINDOW_BUCKETS.size - 1)],
                     half[idx])
    return step, c0, idx, sizes


def design_derivatives_available() -> bool:
    """Whether :func:`design_jacobian` can run (it needs numba)."""
    return design_derivatives is not None


def design_jacobian(
    two_theta: np.ndarray,
    centre: np.ndarray,
    fwhm: np.ndarray,
    eta: np.ndarray,
    amplitude: np.ndarray,
    column: np.ndarray,
    n_columns: int,
    intensity: np.ndarray,
    probe: np.ndarray,
    dcentre: np.ndarray,
    dfwhm: np.ndarray,
    deta: np.ndarray,
    *,
    asymmetry: float = 0.0,
    asymmetry_index: int = -1,
    window_fwhm: float = 8.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives of the design A(θ) of :func:`design_columns` (same peaks and windows) by
    K parameters θ: ∂(A I)/∂θ (n, K) and (∂A/∂θ)ᵀ ``probe`` (n_columns, K).

    ``intensity`` (m,) is the intensity of each peak's column; ``probe`` (n,) any vector on
    the grid; ``dcentre``, ``dfwhm``, ``deta`` (m, K) are the derivatives of each peak's
    centre, Γ and η by θ; ``asymmetry_index`` is the position of the asymmetry P in θ (−1
    when it is not one of them). Needs numba (:func:`design_derivatives_available`).
    """
    if design_derivatives is None:
        raise RuntimeError("design_jacobian needs numba")
    x = np.asarray(two_theta, float)
    n_k = dcentre.shape[1]
    step, c0, idx, sizes = _windows(x, centre, fwhm, amplitude, window_fwhm)
    if not idx.size:
        return np.zeros((x.size, n_k)), np.zeros((n_columns, n_k))
    return design_derivatives(
        x, step, c0[idx], sizes.astype(np.int64),
        *(np.ascontiguousarray(a[idx], float) for a in (centre, fwhm, eta, amplitude, intensity)),
        np.ascontiguousarray(column[idx], np.int64), int(n_columns), np.ascontiguousarray(probe, float),
        float(asymmetry), *(np.ascontiguousarray(a[idx], float) for a in (dcentre, dfwhm, deta)),
        int(asymmetry_index), _GAUSS_NORM, _GAUSS_K, _ERF_K)


def design_columns(
    two_theta: np.ndarray,
    centre: np.ndarray,
    fwhm: np.ndarray,
    eta: np.ndarray,
    amplitude: np.ndarray,
    column: np.ndarray,
    n_columns: int,
    *,
    asymmetry: float = 0.0,
    window_fwhm: float = 8.0,
) -> BandedColumns:
    """Profiles of peaks summed into columns: A[j, c] = Σ_{m: column_m = c} a_m pV_m(2θ_j).

    Parameters
    ----------
    two_theta : (n,) grid, degrees, increasing (near-uniform: the window is counted in points
        of the median step).
    centre, fwhm, eta, amplitude : (m,) peak position (degrees), Γ (degrees), η and weight
        a_m (e.g. the Kα2 ratio times the peak's share of its group's intensity).
    column : (m,) int, the group (column) of each peak.
    n_columns : number of columns.
    asymmetry : Bérar–Baldinozzi P.
    window_fwhm : half-width of each peak's window in units of its Γ.

    Returns
    -------
    BandedColumns (n, n_columns); pV in units of 1/degree, so that a column times an
    integrated intensity (counts · degree) gives counts.
    """
    x = np.asarray(two_theta, float)
    n = x.size
    step, c0, idx_all, sizes = _windows(x, centre, fwhm, amplitude, window_fwhm)
    rows, cols, vals = [], [], []
    if idx_all.size:
        if design_bands is not None:
            lo, length, data = design_bands(
                x, step, c0[idx_all], sizes.astype(np.int64), *(np.ascontiguousarray(a[idx_all], float)
                for a in (centre, fwhm, eta, amplitude)), np.ascontiguousarray(column[idx_all], np.int64),
                int(n_columns), float(asymmetry), _GAUSS_NORM, _GAUSS_K, _ERF_K)
            return BandedColumns(n, lo, length, data)
        for k in np.unique(sizes):
            sel = idx_all[sizes == k]
            k = int(k)
            offs = np.arange(-k, k + 1)
            ci = c0[sel]
            j = ci[:, None] + offs
            inside = (j >= 0) & (j < n)
            jc = np.clip(j, 0, n - 1)
            # Δ from the grid where inside; outside, the nominal uniform step (only the area uses it)
            delta = np.where(inside, x[jc], x[0] + j * step) - centre[sel, None]
            g, e = fwhm[sel], eta[sel]
            mid = delta[:, k]
            area = _window_area(mid - (k + 0.5) * step, mid + (k + 0.5) * step, g, e)
            z = delta / g[:, None]
            z2 = z * z
            scale = (amplitude[sel] / (g * area))[:, None]
            val = scale * (
                e[:, None] * (2.0 / math.pi) / (1.0 + 4.0 * z2)
                + (1.0 - e[:, None]) * _GAUSS_NORM * np.exp(-_GAUSS_K * z2)
            )
            if asymmetry != 0.0:
                tan_t = np.tan(np.radians(centre[sel]) / 2.0)[:, None]
                val *= np.maximum(1.0 - asymmetry * 2.0 * z * np.exp(-z2) / tan_t, 0.0)
            rows.append(j[inside])
            cols.append(np.broadcast_to(column[sel, None], j.shape)[inside])
            vals.append(val[inside])
    if not rows:
        return BandedColumns.empty(n, n_columns)
    return BandedColumns.from_entries(
        np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), n, n_columns
    )


def chebyshev_basis(two_theta: np.ndarray, n_terms: int) -> np.ndarray:
    """Chebyshev polynomials Tₖ(x), k < n_terms, x = 2(2θ − 2θ_min)/(2θ_max − 2θ_min) − 1; shape (n, n_terms).

    Tₖ by the recurrence T₀ = 1, T₁ = x, Tₖ₊₁ = 2x Tₖ − Tₖ₋₁ (the simulator's background basis).
    """
    if n_terms < 1:
        raise ValueError(f"n_terms must be ≥ 1, got {n_terms}")
    t = np.asarray(two_theta, float)
    x = 2.0 * (t - t[0]) / (t[-1] - t[0]) - 1.0
    terms = [np.ones_like(x), x]
    for _ in range(2, n_terms):
        terms.append(2.0 * x * terms[-1] - terms[-2])
    return np.stack(terms[:n_terms], axis=1)


class BandedColumns:
    """An (n_rows × n_columns) matrix whose column c is non-zero only on rows
    ``lo[c] … lo[c] + length[c] − 1``, stored packed in ``data`` from ``offsets[c]``."""

    def __init__(self, n_rows: int, lo: np.ndarray, length: np.ndarray, data: np.ndarray) -> None:
        self.shape = (int(n_rows), int(lo.size))
        self.lo = np.ascontiguousarray(lo, np.int64)
        self.length = np.ascontiguousarray(length, np.int64)
        self.offsets = np.r_[0, np.cumsum(self.length)].astype(np.int64)
        self.data = np.ascontiguousarray(data, float)
        # row and column of every stored value
        self.col_of = np.repeat(np.arange(lo.size), self.length)
        self.row_of = np.repeat(self.lo - self.offsets[:-1], self.length) + np.arange(self.data.size)

    @classmethod
    def empty(cls, n_rows: int, n_columns: int) -> BandedColumns:
        zeros = np.zeros(n_columns, np.int64)
        return cls(n_rows, zeros, zeros, np.zeros(0))

    @classmethod
    def from_entries(cls, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int,
                     n_columns: int) -> BandedColumns:
        """Sum (row, column, value) entries (duplicates add up) into banded columns."""
        lo = np.full(n_columns, n_rows, np.int64)
        hi = np.full(n_columns, -1, np.int64)
        np.minimum.at(lo, cols, rows)
        np.maximum.at(hi, cols, rows)
        length = np.maximum(hi - lo + 1, 0)
        lo = np.where(length > 0, lo, 0)
        offsets = np.r_[0, np.cumsum(length)]
        data = np.bincount(offsets[cols] + rows - lo[cols], weights=vals, minlength=int(offsets[-1]))
        return cls(n_rows, lo, length, data)

    def gram_bandwidth(self) -> int:
        """A bound on the bandwidth of AᵀW²A (any W): no two columns further apart than this
        share a row.

        For each column, the first earlier column whose rows reach past its start is found
        on the running maximum of the columns' ends; the bound is exact when the columns
        start in row order (the Pawley design's peak groups nearly do: their windows widen
        with 2θ).
        """
        full = np.flatnonzero(self.length > 0)
        if full.size < 2:
            return 0
        lo = self.lo[full]
        reach = np.maximum.accumulate(lo + self.length[full])  # the furthest end so far
        first = np.searchsorted(reach, lo, side="right")  # ≤ own position: a column reaches past its start
        return int(np.max(full - full[first]))

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        """A x for a vector x (n_columns,)."""
        return np.bincount(self.row_of, weights=self.data * x[self.col_of], minlength=self.shape[0])

    def normal_blocks(self, w2: np.ndarray, basis: np.ndarray, y: np.ndarray, out: np.ndarray) -> np.ndarray:
        """AᵀW²A and AᵀW²B (and its transpose) into ``out``, the normal matrix of [B A] with
        the n_b columns of a dense B first (zeros there at the call), for the weights
        squared ``w2`` (n_rows,); returns AᵀW²y."""
        basis = np.ascontiguousarray(basis, float)
        n_b = basis.shape[1]
        if normal_blocks is not None:
            order = np.argsort(self.lo, kind="stable")
            w2, y = np.ascontiguousarray(w2, float), np.ascontiguousarray(y, float)
            return normal_blocks(self.lo, self.length, self.offsets, self.data, w2, basis, y, order, out)
        a = self.tocsc()  # pragma: no cover - numba is a dependency
        wa = a.multiply(w2[:, None]).tocsc()
        out[n_b:, n_b:] = (a.T @ wa).toarray()
        out[n_b:, :n_b] = np.asarray(wa.T @ basis)
        out[:n_b, n_b:] = out[n_b:, :n_b].T
        return wa.T @ y

    def tocsc(self) -> sparse.csc_matrix:
        return sparse.csc_matrix((self.data, self.row_of, self.offsets), shape=self.shape)

    def toarray(self) -> np.ndarray:
        return self.tocsc().toarray()
