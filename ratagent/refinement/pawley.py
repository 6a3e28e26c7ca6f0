"""Pawley refinement of one extinction group against a powder pattern.

Algorithm (:func:`pawley_fit`; steps 2–4 live in :mod:`.stages`)
-----------------------------------------------------------------
1. **Reflections.** For every setting of the EG that the cell's metric admits
   (:func:`~.reflections.settings_for_cell`), the allowed families down to the d reached
   by the pattern (:func:`~.reflections.allowed_reflections`).
2. **Groups.** Families whose Kα1 peaks lie within ``overlap_fwhm`` · Γ of each other are
   chained into one group with one intensity (Pawley/Le Bail practice); a family takes a
   share of its group's intensity in proportion to its multiplicity.
3. **Variable projection.** The non-linear parameters θ (reciprocal-metric coefficients
   g, zero shift, Caglioti U, V, W, Lorentzian X, Y, asymmetry P) are refined by
   ``scipy.optimize.least_squares``; at every θ the background coefficients c and the
   group intensities I are the solution of the linear problem
   min ‖W(y − Bc − A(θ)I)‖² (:mod:`.linear`), W = diag(1/σ). Within a stage the set of
   intensities held at zero is fixed, so the residual is smooth in θ; between stages it
   is recomputed by a full non-negative solve. The Jacobian is Golub & Pereyra's
   derivative of this residual (:meth:`.linear.NormalEquations.projection_jacobian`),
   from the profiles' analytic derivatives by centre, Γ, η and P (one compiled pass
   over the peaks' windows); ``PawleyConfig(analytic_jacobian=False)`` or a machine
   without numba differentiates it by finite differences instead.
4. **Stages** (:func:`~.stages.refine`). From the caller's cell and the instrument's zero
   and profile: cell + zero with every peak broadened by each factor of
   ``coarse_broadening`` in turn (so that a cell off by ~1 % still overlaps its peaks;
   the data thinned to every ⌊b/2⌋-th point there), then cell + zero + profile at the
   true width; a final non-negative solve gives the intensities. When the cell admits
   several settings of the EG, they are compared (lowest BIC) after such a fit with
   nothing forbidden (setting P 1), and the chosen one gets the last stage again.
5. **Statistics** (n points, p parameters, w = 1/σ):
   χ² = Σ w²(y − y_c)², Rwp = √(χ² / Σ w²y²), Rexp = √((n − p) / Σ w²y²),
   χ²_ν = χ²/(n − p), BIC = χ² + p ln n, with p = n_θ + n_background + n_groups (every
   free intensity is charged).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import gemmi
import numpy as np

from ratagent.crystallography import extinction_group
from ratagent.instrument import Instrument
from ratagent.patterns import Pattern
from ratagent.refinement import stages
from ratagent.refinement.config import PawleyConfig
from ratagent.refinement.reflections import (
    Reflections,
    allowed_reflections,
    check_cell,
    lattice_model,
    settings_for_cell,
)

__all__ = ["PawleyConfig", "PawleyResult", "Profile", "pawley_fit"]

_MIN_POINTS_PER_PARAM = 3  # data points per parameter below which a pattern is "too short"

logger = logging.getLogger(__name__)


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread while fitting, if ``threadpoolctl`` is installed.

    The normal equations are small (a few hundred unknowns); on them a multi-threaded
    BLAS spends more on synchronisation than on arithmetic (measured: a 200 × 200 solve
    takes 5 ms with OpenBLAS threads on a loaded 2-core machine, 0.4 ms with one), and one
    thread leaves the other core to the rest of the loop.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the fit is correct, only slower
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class Profile:
    """Refined peak shape: TCH pseudo-Voigt in GSAS conventions (see :mod:`.profile`)."""

    u: float  # Caglioti U, degrees²
    v: float  # Caglioti V, degrees²
    w: float  # Caglioti W, degrees²
    x: float  # Lorentzian X, degrees
    y: float  # Lorentzian Y, degrees
    asymmetry: float  # Bérar–Baldinozzi P


@dataclass(frozen=True, eq=False)
class PawleyResult:
    """The outcome of one Pawley fit (one EG in its best setting for the cell)."""

    eg: int  # extinction group 1–99
    setting: str  # gemmi extended H–M symbol of the setting fitted
    cell: tuple[float, float, float, float, float, float]  # refined a, b, c (Å), α, β, γ (degrees)
    zero_shift_deg: float  # refined zero shift, degrees 2θ
    profile: Profile
    background: np.ndarray  # Chebyshev coefficients, (n_background,)
    reflections: Reflections  # allowed families of the setting (hkl, multiplicity, all members)
    family_group: np.ndarray  # (n_families,) group of each family, -1 if outside the range
    family_two_theta: np.ndarray  # (n_families,) refined Kα1 position, degrees
    intensity: np.ndarray  # (n_refl,) integrated intensity of each group, counts · degree
    intensity_sigma: np.ndarray  # (n_refl,) its standard uncertainty (scaled by √max(χ²_ν, 1))
    group_two_theta: np.ndarray  # (n_refl,) multiplicity-weighted Kα1 position of each group
    calculated: np.ndarray  # (n_obs,) model y_c on the pattern's grid
    rwp: float
    rexp: float
    chi2: float  # Σ w²(y − y_c)²
    chi2_reduced: float  # χ² / (n_obs − n_params)
    bic: float  # χ² + n_params ln n_obs
    n_obs: int
    n_refl: int  # free intensities (groups)
    n_params: int  # n_refl + background terms + non-linear parameters
    converged: bool
    message: str
    fit: Any = None  # lmfit MinimizerResult of the non-linear refinement (None: evaluated at fixed θ)

    def fit_report(self) -> str:
        """lmfit's report of the non-linear refinement: values, uncertainties, correlations."""
        if self.fit is None:
            return "no non-linear refinement (evaluated at fixed parameters)"
        import lmfit

        return lmfit.fit_report(self.fit)

    def __repr__(self) -> str:
        cell = ", ".join(f"{v:.5g}" for v in self.cell)
        return (
            f"PawleyResult(eg={self.eg}, setting={self.setting!r}, cell=({cell}), rwp={self.rwp:.4f}, "
            f"rexp={self.rexp:.4f}, bic={self.bic:.1f}, n_refl={self.n_refl}, converged={self.converged})"
        )


def reflection_limit(pattern: Pattern, instrument: Instrument, config: PawleyConfig) -> float:
    """Smallest d worth enumerating: the shortest line at 2θ_max + 2°, less the cell tolerance, Å."""
    lam_min = min(instrument.wavelengths_angstrom)
    top = min(179.0, pattern.two_theta[-1] + 2.0)
    return lam_min / (2.0 * math.sin(math.radians(top) / 2.0)) * (1.0 - config.cell_tolerance)


def evaluate(
    eg: int,
    pattern: Pattern,
    instrument: Instrument,
    refl: Reflections,
    cell: np.ndarray,
    theta: np.ndarray,
    config: PawleyConfig,
    notes: list[str] | None = None,
    ok: bool = True,
    fit: Any = None,
) -> PawleyResult:
    """The fit of one reflection set at fixed non-linear parameters θ (final linear solve,
    statistics); ``fit`` is lmfit's result of the refinement that found θ, if any."""
    prob = stages.Problem(pattern, instrument, refl, config, cell)
    return _result(eg, prob, theta, list(notes or []), ok, fit)


def screening_bic(
    pattern: Pattern,
    instrument: Instrument,
    refl: Reflections,
    cell: np.ndarray,
    theta: np.ndarray,
    config: PawleyConfig,
) -> float:
    """χ² + p ln n of the linear fit of one reflection set at θ (to choose among settings)."""
    prob = stages.Problem(pattern, instrument, refl, config, cell)
    _, ne, x, _, _ = stages.solve(prob, theta)
    return stages.bic(ne, x, theta.size)


def pawley_fit(
    pattern: Pattern,
    cell: object,
    eg: int,
    instrument: Instrument | None = None,
    config: PawleyConfig | None = None,
) -> PawleyResult:
    """Pawley-refine extinction group ``eg`` against ``pattern`` from an approximate ``cell``.

    Parameters
    ----------
    pattern : Pattern
    cell : sequence of 6 floats
        Approximate (a, b, c, α, β, γ), Å and degrees, in the setting the EG is to be fitted in.
    eg : int
        Extinction group 1–99.
    instrument : Instrument, optional
        Wavelengths, line ratios, displacement, and the starting zero and profile. Default:
        a single line at ``pattern.wavelength`` with :class:`~ratagent.instrument.Instrument`'s
        profile defaults.
    config : PawleyConfig, optional

    Returns
    -------
    PawleyResult

    Raises
    ------
    ValueError
        On a bad cell, an unknown EG, a pattern too short for the parameters, an instrument
        whose first wavelength differs from the pattern's, or an EG whose lattice the cell
        does not have (e.g. a cubic EG and a monoclinic cell).
    """
    with single_threaded_blas():
        config = config or PawleyConfig()
        cell_arr = check_cell(cell)
        instrument = instrument_for(pattern, instrument)
        options = eg_reflections(eg, pattern, instrument, cell_arr, config)
        if len(options) == 1:
            refl = options[0][1]
            theta, notes, ok, fit = stages.refine(pattern, instrument, refl, cell_arr, config)
            return evaluate(eg, pattern, instrument, refl, cell_arr, theta, config, notes, ok, fit)
        # several settings: refine once with nothing forbidden, pick the setting there, then polish it
        p1 = gemmi.find_spacegroup_by_name("P 1")
        ref = allowed_reflections(
            options[0][1].lattice, p1, cell_arr, reflection_limit(pattern, instrument, config)
        )
        theta, _, _, _ = stages.refine(pattern, instrument, ref, cell_arr, config)
        scores = [screening_bic(pattern, instrument, r, cell_arr, theta, config) for _, r in options]
        refl = options[int(np.argmin(scores))][1]
        logger.debug("EG %d: setting %s chosen among %d", eg, refl.setting, len(options))
        theta, notes, ok, fit = stages.refine(pattern, instrument, refl, cell_arr, config, start=theta)
        return evaluate(eg, pattern, instrument, refl, cell_arr, theta, config, notes, ok, fit)


def eg_reflections(
    eg: int, pattern: Pattern, instrument: Instrument, cell: np.ndarray, config: PawleyConfig
) -> list[tuple[gemmi.SpaceGroup, Reflections]]:
    """(setting, allowed reflections) for every setting of ``eg`` the cell admits.

    Raises ValueError when the cell admits none, or the pattern is too short to fit.
    """
    info = extinction_group(eg)
    settings = settings_for_cell(eg, cell)
    if not settings:
        raise ValueError(
            f"cell {cell.tolist()} does not have the {info.lattice_family} metric of EG {eg} ({info.symbol})"
        )
    d_min = reflection_limit(pattern, instrument, config)
    out = [(s, allowed_reflections(lattice_model(eg, s), s, cell, d_min)) for s in settings]
    n_min = _MIN_POINTS_PER_PARAM * (out[0][1].lattice.n_params + 7 + config.n_background)
    if len(pattern) < n_min:
        raise ValueError(f"pattern has {len(pattern)} points; fitting EG {eg} needs at least {n_min}")
    return out


def instrument_for(pattern: Pattern, instrument: Instrument | None) -> Instrument:
    """The instrument to fit with: the given one (checked against the pattern's λ) or a single line."""
    if instrument is None:
        return Instrument.synchrotron(pattern.wavelength)
    if not math.isclose(instrument.wavelength, pattern.wavelength, rel_tol=1e-4):
        raise ValueError(
            f"instrument wavelength {instrument.wavelength} Å differs from "
            f"the pattern's {pattern.wavelength} Å"
        )
    return instrument


#: Reciprocal condition number (1-norm estimate) below which σ(I) comes from the pseudo-inverse.
_MIN_RCOND = 1e-9


def _inverse_diagonal(s: np.ndarray) -> np.ndarray:
    """The diagonal of S⁺ for a symmetric positive semi-definite S.

    From the Cholesky factor (LAPACK potrf, potri) where S is well conditioned, which
    is the inverse itself; the pseudo-inverse (SVD) where S is singular or nearly so.
    """
    import scipy.linalg

    lapack = scipy.linalg.lapack
    factor, info = lapack.dpotrf(s, lower=True, clean=True)
    if info == 0:
        rcond, info = lapack.dpocon(factor, np.linalg.norm(s, 1), uplo="L")
        if info == 0 and rcond >= _MIN_RCOND:
            inverse, info = lapack.dpotri(factor, lower=True)
            if info == 0:
                return np.diag(inverse).copy()
    return np.diag(np.linalg.pinv(s)).copy()


def _result(eg: int, prob: stages.Problem, theta: np.ndarray, notes: list[str], ok: bool,
            fit: Any = None) -> PawleyResult:
    group, ne, x, passive, nnls_ok = stages.solve(prob, theta)
    if not nnls_ok:
        ok = False
        notes.append("non-negative intensity solve did not reach its optimum")
    g, zero, prof = stages.split(prob, theta)
    r = ne.weighted_residual(x)
    n_obs = r.size
    n_refl = x.size - ne.n_free
    n_params = x.size + theta.size - (0 if prob.config.refine_profile else 6)
    chi2 = float(r @ r)
    wy2 = float(np.sum((prob.weight * prob.y) ** 2))
    dof = max(n_obs - n_params, 1)
    chi2_red = chi2 / dof
    # σ(I): the diagonal of the inverse normal matrix on the free intensities, scaled by the misfit
    sigma = np.zeros(n_refl)
    idx = np.flatnonzero(passive)
    if idx.size:
        sub = ne.matrix[np.ix_(idx, idx)]
        d = np.sqrt(np.maximum(np.diag(sub), 1e-300))
        var = np.zeros(x.size)
        var[idx] = _inverse_diagonal(sub / d[:, None] / d[None, :]) / d**2
        sigma = np.sqrt(np.maximum(var[ne.n_free :], 0.0) * max(chi2_red, 1.0))
    held = ~passive[ne.n_free :]
    if held.any():
        # intensities held at zero: σ from their own profile alone, 1/√(aᵀW²a)
        diag = np.diag(ne.matrix)[ne.n_free :]
        sigma[held] = np.sqrt(max(chi2_red, 1.0) / np.maximum(diag[held], 1e-300))
    pos, _, _, _, fam, line = prob.peaks(g, zero, prof)
    fam_tt = np.full(len(prob.refl), np.nan)
    fam_tt[fam[line == 0]] = pos[line == 0]
    mult = prob.refl.multiplicity.astype(float)
    inside = group >= 0
    gm = np.bincount(group[inside], weights=mult[inside], minlength=n_refl)
    gtt = np.bincount(
        group[inside], weights=(mult * np.nan_to_num(fam_tt))[inside], minlength=n_refl
    ) / np.maximum(gm, 1e-300)
    bkg, bragg = ne.model(x, prob.weight)
    cell = tuple(float(v) for v in prob.lat.cell(g))
    message = "; ".join(notes) if notes else "converged"
    return PawleyResult(
        eg=eg,
        setting=prob.refl.setting,
        cell=cell,
        zero_shift_deg=zero,
        profile=Profile(*(float(v) for v in prof)),
        background=x[: ne.n_free].copy(),
        reflections=prob.refl,
        family_group=group,
        family_two_theta=fam_tt,
        intensity=x[ne.n_free :].copy(),
        intensity_sigma=sigma,
        group_two_theta=gtt,
        calculated=bkg + bragg,
        rwp=math.sqrt(chi2 / wy2),
        rexp=math.sqrt(dof / wy2),
        chi2=chi2,
        chi2_reduced=chi2_red,
        bic=chi2 + n_params * math.log(n_obs),
        n_obs=n_obs,
        n_refl=n_refl,
        n_params=n_params,
        converged=ok,
        message=message,
        fit=fit,
    )


def setting_group(result: PawleyResult) -> gemmi.SpaceGroup:
    """The gemmi space group of the setting a result was fitted in."""
    return gemmi.find_spacegroup_by_name(result.setting)
