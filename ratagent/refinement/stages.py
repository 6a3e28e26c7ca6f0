"""The non-linear stages of the Pawley fit: the problem of one reflection set, and its refinement.

See :mod:`.pawley` for the algorithm; here live steps 2–4: peak groups, the design
matrix at given non-linear parameters θ = (g, zero, U, V, W, X, Y, P), the variable-projection
residual and the staged ``scipy.optimize.least_squares`` refinement.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ratagent.instrument import Instrument
from ratagent.patterns import Pattern
from ratagent.refinement import linear
from ratagent.refinement.config import PawleyConfig
from ratagent.refinement.profile import (
    chebyshev_basis,
    design_columns,
    design_derivatives_available,
    design_jacobian,
    tch_fwhm_eta,
)
from ratagent.refinement.reflections import Reflections

__all__ = ["Problem", "bic", "parameter_bounds", "parameter_names", "refine", "solve", "split", "start_theta"]

# scale of one unit of each scaled non-linear parameter (what least_squares sees)
_ZERO_SCALE_DEG = 0.01
_PROFILE_SCALE = (1e-3, 1e-3, 1e-3, 1e-2, 1e-2, 1e-2)
_PROFILE_BOUNDS = ((0.0, 1.0), (-1.0, 1.0), (1e-6, 1.0), (0.0, 1.0), (0.0, 1.0), (-0.5, 0.5))
# the central differences of Γ and η (Problem.peak_derivatives), one row each: 2θ_B + h,
# 2θ_B − h, then U + s, U − s, V + s, … Y − s
_TWO_THETA_SHIFTS = np.r_[1.0, -1.0, np.zeros(10)]
_PROFILE_SHIFTS = np.r_[np.zeros((2, 5)), np.repeat(np.eye(5), 2, axis=0) * np.tile([1.0, -1.0], 5)[:, None]]


class Problem:
    """Pattern, reflections and parameterisation of one setting (internal)."""

    def __init__(
        self,
        pattern: Pattern,
        instrument: Instrument,
        refl: Reflections,
        config: PawleyConfig,
        cell,
        stride: int = 1,
    ):
        self.x = pattern.two_theta[::stride]
        self.y = pattern.intensity[::stride]
        self.weight = 1.0 / pattern.sigma_or_counting()[::stride]
        self.stride = stride
        self.instrument = instrument
        self.refl = refl
        self.config = config
        self.lat = refl.lattice
        g0 = self.lat.metric_params(cell)
        self.g0 = g0
        self.g_scale = np.maximum(np.abs(g0), 1e-3 * np.abs(g0).max()) * 1e-3
        self.basis = chebyshev_basis(self.x, config.n_background)
        self.radius = instrument.goniometer_radius_mm

    def peaks(self, g: np.ndarray, zero: float, prof: np.ndarray, broadening: float = 1.0):
        """Per (family, line): centre, FWHM, η, amplitude (line ratio), family index, line index."""
        inv_d2 = np.maximum(self.refl.inv_d2(g), 1e-12)
        out = []
        for i, (lam, ratio) in enumerate(
            zip(self.instrument.wavelengths_angstrom, self.instrument.line_ratios, strict=True)
        ):
            s = lam * np.sqrt(inv_d2) / 2.0
            ok = s < 1.0
            bragg = np.degrees(2.0 * np.arcsin(np.where(ok, s, 0.5)))
            theta = np.radians(bragg) / 2.0
            pos = (
                bragg + zero - np.degrees(2.0 * self.instrument.displacement_mm * np.cos(theta) / self.radius)
            )
            fwhm, eta = tch_fwhm_eta(bragg, *prof[:5])
            fam = np.flatnonzero(ok)
            out.append(
                (pos[ok], fwhm[ok] * broadening, eta[ok], np.full(fam.size, ratio), fam, np.full(fam.size, i))
            )
        return [np.concatenate(c) for c in zip(*out, strict=True)]

    def peak_derivatives(self, g: np.ndarray, zero: float, prof: np.ndarray, broadening: float = 1.0):
        """∂(centre, Γ, η)/∂θ of each peak of :meth:`peaks` (same order), three (m, K) arrays,
        θ = (g, zero, U, V, W, X, Y, P).

        1/d² is linear in g; the centre follows 2θ_B through Bragg's law and the
        displacement term; Γ and η follow 2θ_B and U…Y through the TCH formulas,
        differentiated by central differences (they are cheap and clamped).
        """
        n_g = g.size
        n_k = n_g + 7
        inv_d2 = np.maximum(self.refl.inv_d2(g), 1e-12)
        shape = np.asarray(prof[:5], float)  # U, V, W, X, Y
        step = 1e-6  # of each of them, for the central differences
        out = []
        for lam in self.instrument.wavelengths_angstrom:
            s = lam * np.sqrt(inv_d2) / 2.0
            fam = np.flatnonzero(s < 1.0)
            s = s[fam]
            bragg = np.degrees(2.0 * np.arcsin(s))
            theta = np.radians(bragg) / 2.0
            dbragg_dg = np.degrees(lam / (2.0 * np.sqrt(inv_d2[fam]) * np.sqrt(1.0 - s * s)))[:, None] * \
                self.refl.kappa[fam]
            dpos_dbragg = 1.0 + self.instrument.displacement_mm * np.sin(theta) / self.radius
            h = 1e-4  # degrees of 2θ
            # Γ and η at 2θ_B ± h, then at U…Y ± step one at a time: rows of one call
            f, e = tch_fwhm_eta(bragg + _TWO_THETA_SHIFTS[:, None] * h,
                                *(shape + _PROFILE_SHIFTS * step).T[:, :, None])
            dc, dw, de = (np.zeros((fam.size, n_k)) for _ in range(3))
            dc[:, :n_g] = dpos_dbragg[:, None] * dbragg_dg
            dc[:, n_g] = 1.0
            dw[:, :n_g] = ((f[0] - f[1]) / (2 * h) * broadening)[:, None] * dbragg_dg
            de[:, :n_g] = ((e[0] - e[1]) / (2 * h))[:, None] * dbragg_dg
            dw[:, n_g + 1 : n_g + 6] = ((f[2::2] - f[3::2]) / (2 * step) * broadening).T
            de[:, n_g + 1 : n_g + 6] = ((e[2::2] - e[3::2]) / (2 * step)).T
            out.append((dc, dw, de))
        return [np.concatenate(c) for c in zip(*out, strict=True)]

    def jacobian(self, theta: np.ndarray, group: np.ndarray, broadening: float, ne: linear.NormalEquations,
                 x: np.ndarray, passive: np.ndarray) -> np.ndarray:
        """The Jacobian ∂r/∂θ (n, K) of the variable-projection residual at θ, for the
        solution x = (c, I) on ``passive`` (:meth:`linear.NormalEquations.projection_jacobian`)."""
        g, zero, prof = split(self, theta)
        pos, fwhm, eta, amp, fam, _ = self.peaks(g, zero, prof, broadening)
        dc, dw, de = self.peak_derivatives(g, zero, prof, broadening)
        keep, share, n_groups = self._kept_shares(group, fam)
        column = group[fam[keep]]
        d, grad = design_jacobian(
            self.x, pos[keep], fwhm[keep], eta[keep], amp[keep] * share, column, n_groups,
            x[ne.n_free :][column], self.weight * ne.weighted_residual(x), dc[keep], dw[keep], de[keep],
            asymmetry=float(prof[5]), asymmetry_index=theta.size - 1, window_fwhm=self.config.window_fwhm)
        return -ne.projection_jacobian(d * self.weight[:, None], grad, passive)

    def _kept_shares(self, group: np.ndarray, fam: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Peaks of families in a group, each one's share of its group (by multiplicity), and
        the number of groups."""
        keep = group[fam] >= 0
        mult = self.refl.multiplicity.astype(float)
        n_groups = int(group.max()) + 1 if group.size and group.max() >= 0 else 0
        total = np.bincount(group[group >= 0], weights=mult[group >= 0], minlength=n_groups)
        return keep, mult[fam[keep]] / total[group[fam[keep]]], n_groups

    def groups(self, g, zero, prof, broadening=1.0) -> np.ndarray:
        """Group index of each family (−1 when its Kα1 peak is out of range): step 2 of the module."""
        pos, fwhm, _, _, fam, line = self.peaks(g, zero, prof, broadening)
        pos1, fwhm1, fam1 = pos[line == 0], fwhm[line == 0], fam[line == 0]
        group = np.full(len(self.refl), -1, np.int64)
        margin = self.config.window_fwhm * fwhm1
        inside = (pos1 + margin > self.x[0]) & (pos1 - margin < self.x[-1])
        pos1, fwhm1, fam1 = pos1[inside], fwhm1[inside], fam1[inside]
        if fam1.size == 0:
            return group
        order = np.argsort(pos1, kind="stable")
        gap = np.diff(pos1[order])
        tol = self.config.overlap_fwhm * np.minimum(fwhm1[order][1:], fwhm1[order][:-1])
        gid = np.r_[0, np.cumsum(gap > tol)]
        group[fam1[order]] = gid
        return group

    def design(self, g, zero, prof, group, broadening=1.0):
        pos, fwhm, eta, amp, fam, _ = self.peaks(g, zero, prof, broadening)
        keep, share, n_groups = self._kept_shares(group, fam)
        return design_columns(
            self.x,
            pos[keep],
            fwhm[keep],
            eta[keep],
            amp[keep] * share,
            group[fam[keep]],
            n_groups,
            asymmetry=float(prof[5]),
            window_fwhm=self.config.window_fwhm,
        )

    def normal(self, g, zero, prof, group, broadening=1.0) -> linear.NormalEquations:
        return linear.NormalEquations(
            self.design(g, zero, prof, group, broadening), self.basis, self.weight, self.y
        )


def split(prob: Problem, theta: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """θ as (metric parameters g, zero shift, profile U, V, W, X, Y, P): its layout."""
    n_g = prob.g0.size
    return theta[:n_g], float(theta[n_g]), theta[n_g + 1 :]


def parameter_names(prob: Problem) -> list[str]:
    """Names of θ = (g, zero, U, V, W, X, Y, P): the metric parameters of the lattice system
    (``g1``…), ``zero`` (deg), the TCH profile ``U, V, W, X, Y`` and the asymmetry ``P``."""
    return [f"g{i + 1}" for i in range(prob.g0.size)] + ["zero", "U", "V", "W", "X", "Y", "P"]


def _stage(prob, base, free, scales, lower, upper, group, passive, broadening, config, coarse=False):
    """One least-squares stage over the free parameters; the new θ and lmfit's ``MinimizerResult``.

    The non-linear parameters are lmfit ``Parameters`` (:func:`parameter_names`) with
    their bounds, refined by ``scipy.optimize.least_squares`` (trf) through
    ``lmfit.minimize``; the residual solves the linear intensities and background at
    every θ (variable projection). The cell is constrained per lattice system by its
    metric parameters (1/d² is linear in them) rather than by ``expr`` on a, b, c, α, β,
    γ. Against the same solver called directly (``benchmarks/pawley.py``), lmfit takes
    0.9–1.2× the time, with the same leaders; the two may stop at slightly different
    optima (the scaled variables differ), by up to ~20 in B on a candidate.
    """
    import lmfit  # lazily: only fits need it

    names = parameter_names(prob)
    params = lmfit.Parameters()
    for i, n in enumerate(names):
        lo, hi = lower[i], upper[i]
        params.add(n, value=float(np.clip(base[i], lo + 1e-12 * abs(lo), hi - 1e-12 * abs(hi))),
                   min=lo, max=hi, vary=bool(free[i]))
    last: dict[bytes, tuple] = {}  # the fit at the θ of the last residual: its Jacobian comes next

    def fitted(p):
        theta = np.fromiter(p.valuesdict().values(), float, len(names))
        key = theta.tobytes()
        if key not in last:
            g, zero, prof = split(prob, theta)
            ne = prob.normal(g, zero, prof, group, broadening)
            last.clear()
            last[key] = (theta, ne, ne.solve(ne.rhs, passive))
        return last[key]

    def residual(p):
        _, ne, x = fitted(p)
        return ne.weighted_residual(x)

    def jacobian(p):
        theta, ne, x = fitted(p)
        return prob.jacobian(theta, group, broadening, ne, x, passive)[:, free]

    tol = max(config.tolerance, 1e-4) if coarse else config.tolerance
    with warnings.catch_warnings():
        # an ill-conditioned final Jacobian gives a negative variance: lmfit reports its
        # uncertainty as NaN (undefined), which is the answer, not a fault of the fit
        warnings.filterwarnings("ignore", "invalid value encountered in sqrt", RuntimeWarning, "lmfit")
        out = lmfit.minimize(residual, params, method="least_squares", max_nfev=config.max_nfev,
                             x_scale=scales[free], ftol=tol, xtol=tol, gtol=tol,
                             jac=jacobian if config.analytic_jacobian and design_derivatives_available()
                             else "2-point")
    new = np.array([out.params[n].value for n in names])
    return new, out


def solve(prob, theta, broadening=1.0, passive=None):
    g, zero, prof = split(prob, theta)
    group = prob.groups(g, zero, prof, broadening)
    ne = prob.normal(g, zero, prof, group, broadening)
    x, passive, ok = ne.nonnegative(passive)
    return group, ne, x, passive, ok


def bic(ne: linear.NormalEquations, x: np.ndarray, n_theta: int) -> float:
    r = ne.weighted_residual(x)
    return float(r @ r + (x.size + n_theta) * math.log(r.size))


def parameter_bounds(
    prob: Problem, theta0: np.ndarray, config: PawleyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of θ = (g, zero, U, V, W, X, Y, P) around a start."""
    n_g = prob.g0.size
    tol = config.cell_tolerance
    g0 = theta0[:n_g]
    span = tol * np.abs(g0).max()
    g_lo = np.where(g0 > 0, g0 * (1 + tol) ** -2, g0 - span)
    g_hi = np.where(g0 > 0, g0 * (1 - tol) ** -2, g0 + span)
    z0 = theta0[n_g]
    lower = np.r_[g_lo, z0 - config.zero_bound_deg, [b[0] for b in _PROFILE_BOUNDS]]
    upper = np.r_[g_hi, z0 + config.zero_bound_deg, [b[1] for b in _PROFILE_BOUNDS]]
    return lower, upper


def refine(
    pattern: Pattern,
    instrument: Instrument,
    refl: Reflections,
    cell: np.ndarray,
    config: PawleyConfig,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str], bool, Any]:
    """Stages (b) and (c) of the module for one reflection set; returns θ, notes, success and
    lmfit's ``MinimizerResult`` of the last stage (None when none ran).

    With ``start`` (θ of an earlier fit) the coarse stages are skipped: only the last stage runs.
    """
    prob = Problem(pattern, instrument, refl, config, cell)
    theta0 = start_theta(prob, instrument)
    n_g = prob.g0.size
    scales = np.r_[prob.g_scale, _ZERO_SCALE_DEG, _PROFILE_SCALE]
    lower, upper = parameter_bounds(prob, theta0, config)
    theta = np.clip(theta0 if start is None else start, lower, upper)
    cell_free = np.zeros(theta.size, bool)
    cell_free[: n_g + 1] = True
    notes, ok, fit = [], True, None
    coarse = config.coarse_broadening if start is None else ()
    plan = [(b, cell_free, f"cell+zero ×{b:g}") for b in coarse]
    plan.append((1.0, np.ones(theta.size, bool) if config.refine_profile else cell_free, "cell+zero+profile"))
    for broadening, free, name in plan:
        stride = max(1, int(broadening // 2))
        sub = prob if stride == 1 else Problem(pattern, instrument, refl, config, cell, stride)
        group, _, _, passive, _ = solve(sub, theta, broadening)
        if group.max(initial=-1) < 0:
            return theta, [f"{name}: no reflection inside the pattern"], False, fit
        coarse = broadening > 1.0
        theta, fit = _stage(
            sub, theta, free, scales, lower, upper, group, passive, broadening, config, coarse
        )
        if not fit.success and not coarse:
            ok = False
            notes.append(f"{name}: {fit.message}")
    edge = np.isclose(theta[: n_g + 1], lower[: n_g + 1], rtol=1e-6) | np.isclose(
        theta[: n_g + 1], upper[: n_g + 1], rtol=1e-6
    )
    if edge.any():
        ok = False
        notes.append("cell or zero shift at the edge of its allowed range")
    return theta, notes, ok, fit


def start_theta(prob: Problem, instrument: Instrument) -> np.ndarray:
    """θ at the start: the cell's metric, the instrument's zero shift and profile."""
    prof0 = [getattr(instrument, n) for n in ("u_deg2", "v_deg2", "w_deg2", "x_deg", "y_deg", "asymmetry")]
    return np.r_[prob.g0, instrument.zero_shift_deg, prof0]
