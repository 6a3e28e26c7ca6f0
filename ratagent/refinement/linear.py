"""The linear part of the Pawley fit: background coefficients and non-negative peak intensities.

For fixed cell, zero and profile the model is linear, y ≈ B c + A I, with B the background
basis (coefficients c free) and A the peak-group profiles (intensities I ≥ 0). With
weights wⱼ = 1/σⱼ the problem min ‖W(y − Bc − AI)‖², I ≥ 0, is solved on its normal
equations M x = r, M = [B A]ᵀW²[B A], r = [B A]ᵀW²y, which are small
((n_bkg + n_groups)²) where the data are long, and cheap to form because A is banded.

The peak groups' block of M is banded (a group overlaps only its neighbours in 2θ), with
the few background columns as a dense border: each solve factors the band (banded
Cholesky, O(n w²) for bandwidth w) and eliminates the border by its Schur complement,
where a dense factorisation would cost O(n³).

The bound-constrained solve is block principal pivoting (Kim & Park, SIAM J. Sci.
Comput. 33, 3261 (2011); Portugal, Júdice & Vicente, Math. Comp. 63, 625 (1994)):
exchange every infeasible variable at once, fall back to one at a time when that stops
shrinking the infeasible set; it converges in a few dense solves when most intensities
are positive, which is the Pawley case.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg

if TYPE_CHECKING:
    from ratagent.refinement.profile import BandedColumns

__all__ = ["NormalEquations", "solve_nonnegative", "solve_passive"]

logger = logging.getLogger(__name__)

_RIDGE = 1e-10  # relative diagonal load: keeps exactly coincident profiles solvable


class NormalEquations:
    """M, r and the weighted design of y ≈ B c + A I (free c first, then I).

    ``design`` is a :class:`~ratagent.refinement.profile.BandedColumns`: its blocks are
    summed band against band.
    """

    def __init__(self, design: BandedColumns, background: np.ndarray, weight: np.ndarray, y: np.ndarray):
        wb = background * weight[:, None]
        wy = y * weight
        n_bkg = background.shape[1]
        m = np.zeros((n_bkg + design.shape[1],) * 2)
        m[:n_bkg, :n_bkg] = wb.T @ wb
        rhs_a = design.normal_blocks(weight * weight, background, y, m)
        self.matrix = m
        self.rhs = np.concatenate([wb.T @ wy, rhs_a])
        self.n_free = n_bkg
        self.band = design.gram_bandwidth()  # of the peak groups' block of M
        self._design, self._weight, self._wb, self._wy = design, weight, wb, wy

    def _bragg(self, intensities: np.ndarray) -> np.ndarray:
        """A I, unweighted."""
        return self._design @ intensities

    def weighted_residual(self, x: np.ndarray) -> np.ndarray:
        """W(y − Bc − AI) for x = (c, I)."""
        return self._wy - self._wb @ x[: self.n_free] - self._weight * self._bragg(x[self.n_free :])

    def projection_jacobian(self, wu: np.ndarray, grad: np.ndarray, passive: np.ndarray) -> np.ndarray:
        """Minus the Jacobian of the variable-projection residual r(θ) = W(y − M x̂(θ)), (n, K).

        ``wu`` = W ∂(A I)/∂θ at the solved x̂ = (c, I) (n, K) and ``grad`` = (∂A/∂θ)ᵀ W r
        (n_columns, K); M = [B A] on the ``passive`` variables. Golub & Pereyra's
        derivative, −∂r/∂θ = P⊥ W ∂(A I)/∂θ + W M (MᵀW²M)⁻¹ (∂M/∂θ)ᵀ W r, with
        P⊥ = I − W M (MᵀW²M)⁻¹ MᵀW (G. H. Golub, V. Pereyra, SIAM J. Numer. Anal. 10, 413
        (1973)); the second term vanishes with the residual (Kaufman's approximation).
        """
        a = self._design.tocsc()
        rhs = np.vstack([self._wb.T @ wu, a.T @ (wu * self._weight[:, None]) - grad])
        z = self.solve(rhs, passive)
        return wu - self._wb @ z[: self.n_free] - self._weight[:, None] * (a @ z[self.n_free :])

    def solve(self, r: np.ndarray, passive: np.ndarray) -> np.ndarray:
        """:func:`solve_passive` on M, with its band."""
        return solve_passive(self.matrix, r, passive, n_free=self.n_free, band=self.band)

    def nonnegative(self, passive: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """:func:`solve_nonnegative` on M and r, with its band."""
        return solve_nonnegative(self.matrix, self.rhs, self.n_free, passive, band=self.band)

    def model(self, x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(background, Bragg part) of the model for x = (c, I), unweighted."""
        return (self._wb @ x[: self.n_free]) / weight, self._bragg(x[self.n_free :])


def solve_passive(
    m: np.ndarray, r: np.ndarray, passive: np.ndarray, *, n_free: int = 0, band: int | None = None
) -> np.ndarray:
    """Solve M x = r on the passive variables (the others held at 0), Jacobi-scaled and lightly
    ridged; ``r`` is one right-hand side (n,) or several (n, K).

    With ``band``, a bound on the bandwidth of M past its first ``n_free`` rows and columns,
    the solve is banded (module docstring) where that is cheaper; else dense.
    """
    x = np.zeros_like(r, dtype=float)
    idx = np.flatnonzero(passive)
    if idx.size == 0:
        return x
    d = np.sqrt(np.maximum(m[idx, idx], 1e-300))
    rhs = r[idx] / (d if r.ndim == 1 else d[:, None])
    sol = None
    n_border = int(np.count_nonzero(idx < n_free))
    if band is not None and 4 * (band + 1) <= idx.size - n_border:
        sol = _solve_bordered_band(m, rhs, idx, d, n_border, band)
    if sol is None:
        sol = _solve_dense(m[np.ix_(idx, idx)] / d[:, None] / d[None, :], rhs)
    x[idx] = sol / (d if r.ndim == 1 else d[:, None])
    return x


def _solve_dense(scaled: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """S z = rhs for the Jacobi-scaled S, ridged; least squares where S is singular."""
    scaled[np.diag_indices_from(scaled)] += _RIDGE
    try:
        if rhs.ndim == 1:
            return scipy.linalg.solve(scaled, rhs, assume_a="pos", check_finite=False)
        # several right-hand sides: scipy's solve and cho_solve take 100× numpy's here
        return np.linalg.solve(scaled, rhs)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return np.linalg.lstsq(scaled, rhs, rcond=None)[0]


def _solve_bordered_band(
    m: np.ndarray, rhs: np.ndarray, idx: np.ndarray, d: np.ndarray, n_border: int, band: int
) -> np.ndarray | None:
    """The Jacobi-scaled, ridged system of :func:`solve_passive` on ``idx``, whose first
    ``n_border`` variables are a dense border and the rest a band of half-width ``band``
    (by its Cholesky factor and the border's Schur complement); None where the band is
    not positive definite (the dense solve decides then)."""
    f, b = idx[:n_border], idx[n_border:]
    df, db = d[:n_border], d[n_border:]
    nb = b.size
    w = min(band, nb - 1)
    # lower[k, j] = S[j + k, j], zero past the end (j + k ≥ nb): one gather of the band
    diag, col = np.arange(w + 1)[:, None], np.arange(nb)[None, :]
    row = np.minimum(col + diag, nb - 1)
    lower = np.where(col + diag < nb, m[b[row], b[col]] / (db[row] * db[col]), 0.0)
    lower[0] += _RIDGE
    try:
        factor = scipy.linalg.cholesky_banded(lower, lower=True, check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return None
    several = rhs.ndim == 2
    r_f, r_b = rhs[:n_border].reshape(n_border, -1), rhs[n_border:].reshape(nb, -1)
    cross = m[np.ix_(f, b)] / df[:, None] / db[None, :]  # border × band
    z = scipy.linalg.cho_solve_banded((factor, True), np.column_stack([cross.T, r_b]), check_finite=False)
    z_cross, z_r = z[:, :n_border], z[:, n_border:]
    if n_border:
        schur = m[np.ix_(f, f)] / df[:, None] / df[None, :] - cross @ z_cross
        x_f = _solve_dense(schur, r_f - cross @ z_r)
    else:
        x_f = np.zeros((0, z_r.shape[1]))
    sol = np.vstack([x_f, z_r - z_cross @ x_f])
    return sol if several else sol[:, 0]


def solve_nonnegative(
    m: np.ndarray,
    r: np.ndarray,
    n_free: int,
    passive: np.ndarray | None = None,
    max_iter: int = 200,
    *,
    band: int | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """min ½xᵀMx − rᵀx with x[n_free:] ≥ 0, by block principal pivoting.

    Parameters
    ----------
    m, r : normal equations.
    n_free : leading variables without a bound (background).
    passive : optional warm start, bool mask of the variables to start free of their bound.
    band : optional bound on the bandwidth of M past its first ``n_free`` rows (:func:`solve_passive`).

    Returns
    -------
    x, passive mask, converged (False when ``max_iter`` exchanges did not reach the KKT point).
    """
    n = r.size
    fixed_free = np.zeros(n, bool)
    fixed_free[:n_free] = True
    p = np.ones(n, bool) if passive is None else (passive | fixed_free)
    best_infeasible, backup = n + 1, 3
    for _ in range(max_iter):
        x = solve_passive(m, r, p, n_free=n_free, band=band)
        grad = m @ x - r  # dual variables y = Mx − r; KKT: y ≥ 0 where x = 0
        scale = np.sqrt(np.maximum(np.diag(m), 1e-300))
        tol = 1e-10 * (np.abs(r) + scale)
        infeasible = ~fixed_free & ((p & (x < 0)) | (~p & (grad < -tol)))
        count = int(infeasible.sum())
        if count == 0:
            return np.where(p, x, 0.0), p, True
        if count < best_infeasible:
            best_infeasible, backup = count, 3
            p = p ^ infeasible
        elif backup > 0:
            backup -= 1
            p = p ^ infeasible
        else:
            last = int(np.flatnonzero(infeasible)[-1])
            p[last] = ~p[last]
    logger.debug("block principal pivoting stopped after %d exchanges", max_iter)
    x = solve_passive(m, r, p, n_free=n_free, band=band)
    x[n_free:] = np.maximum(x[n_free:], 0.0)
    return x, p, False
