"""Profile columns against the simulator's renderer; the non-negative solve against scipy."""

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear, nnls

from ratagent.refinement.linear import solve_nonnegative
from ratagent.refinement.profile import chebyshev_basis, design_columns, tch_fwhm_eta
from ratagent.simulation import physics
from ratagent.simulation.renderer import render_peaks


def test_tch_matches_the_simulator():
    tt = np.linspace(10, 120, 50)
    args = (0.004, -0.002, 0.002, 0.02, 0.01)
    f, e = tch_fwhm_eta(tt, *args)
    ft, et = physics.caglioti_tch(torch.as_tensor(tt), *args)
    np.testing.assert_allclose(f, ft.numpy(), rtol=1e-12)
    np.testing.assert_allclose(e, et.numpy(), rtol=1e-12)


@pytest.mark.parametrize("asym", [0.0, 0.05])
def test_design_columns_equal_the_renderer_and_have_unit_area(asym):
    x = np.arange(5.0, 90.0 + 1e-9, 0.01)
    centre = np.array([20.0, 20.03, 55.5, 89.98])
    fwhm = np.array([0.08, 0.08, 0.12, 0.2])
    eta = np.array([0.3, 0.3, 0.5, 0.7])
    a = design_columns(x, centre, fwhm, eta, np.ones(4), np.arange(4), 4, asymmetry=asym).toarray()
    ref = render_peaks(
        *(torch.as_tensor(v)[None] for v in (centre, np.ones(4), fwhm, eta)),
        5.0,
        0.01,
        x.size,
        asymmetry=torch.tensor([asym], dtype=torch.float64) if asym else None,
    )[0].numpy()
    # the renderer drops the Gaussian and the asymmetry beyond ±3Γ (< 1e-4 of the peak)
    np.testing.assert_allclose(np.asarray(a.sum(axis=1)).ravel(), ref, atol=1e-4 * ref.max())
    area = np.asarray(a.sum(axis=0)).ravel() * 0.01
    np.testing.assert_allclose(area[:3], 1.0, rtol=1e-3)  # the last peak's window leaves the grid


def test_chebyshev_recurrence():
    x = np.linspace(0, 1, 11)
    b = chebyshev_basis(x, 4)
    t = 2 * x - 1
    np.testing.assert_allclose(
        b, np.stack([np.ones_like(t), t, 2 * t**2 - 1, 4 * t**3 - 3 * t], 1), atol=1e-12
    )


@pytest.mark.parametrize("seed", range(5))
def test_nonnegative_solve_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(80, 25))
    y = rng.normal(size=80)
    x, _, ok = solve_nonnegative(a.T @ a, a.T @ y, 0)
    assert ok
    np.testing.assert_allclose(x, nnls(a, y)[0], atol=1e-8)
    # with three free leading variables
    lb = np.r_[[-np.inf] * 3, np.zeros(22)]
    x, _, ok = solve_nonnegative(a.T @ a, a.T @ y, 3)
    want = lsq_linear(a, y, bounds=(lb, np.inf), tol=1e-12).x
    assert ok
    np.testing.assert_allclose(x, want, atol=1e-6)


@pytest.mark.parametrize("asym", [0.0, 0.07])
def test_banded_design_and_its_normal_equations_equal_the_dense_sums(asym, monkeypatch):
    """The compiled bands equal the numpy windows, and the band-against-band sums equal
    AᵀW²A, AᵀW²B, AᵀW²y of the dense matrix; peaks straddle both ends of the grid."""
    import ratagent.refinement.profile as profile
    from ratagent.refinement.linear import NormalEquations

    rng = np.random.default_rng(3)
    x = np.arange(5.0, 90.0 + 1e-9, 0.01)
    m = 120
    centre = np.sort(rng.uniform(3.0, 92.0, m))
    fwhm, eta, amp = rng.uniform(0.05, 0.4, m), rng.uniform(0, 1, m), rng.uniform(0.1, 2, m)
    column = np.minimum(np.arange(m) // 2, 55)  # pairs of peaks share a column; columns 56–59 empty
    compiled = profile.design_columns(x, centre, fwhm, eta, amp, column, 60, asymmetry=asym)
    monkeypatch.setattr(profile, "design_bands", None)
    numpy_path = profile.design_columns(x, centre, fwhm, eta, amp, column, 60, asymmetry=asym)
    dense = numpy_path.toarray()
    np.testing.assert_allclose(compiled.toarray(), dense, rtol=1e-12, atol=1e-12 * dense.max())
    assert not dense[:, 56:].any()
    basis = chebyshev_basis(x, 5)
    weight = rng.uniform(0.5, 2.0, x.size)
    y = rng.uniform(0, 100, x.size)
    ne = NormalEquations(compiled, basis, weight, y)
    full = np.hstack([basis, dense]) * weight[:, None]
    np.testing.assert_allclose(ne.matrix, full.T @ full, rtol=1e-10, atol=1e-10 * np.abs(full.T @ full).max())
    np.testing.assert_allclose(ne.rhs, full.T @ (weight * y), rtol=1e-10)
    coef = rng.uniform(0, 1, 5 + 60)
    np.testing.assert_allclose(ne.weighted_residual(coef), weight * y - full @ coef, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("shuffle", [False, True])
def test_gram_bandwidth_bounds_the_band_of_the_normal_matrix(shuffle):
    """No entry of AᵀA lies further from the diagonal than the bound; with columns that
    start in row order (the Pawley case) the bound is the band itself."""
    from ratagent.refinement.profile import BandedColumns

    rng = np.random.default_rng(7)
    n_cols = 90
    lo = np.sort(rng.integers(0, 2000, n_cols))
    length = rng.integers(5, 160, n_cols)
    length[[10, 40]] = 0  # empty columns overlap nothing
    if shuffle:  # columns out of row order: the bound may exceed the band, never fall short
        swap = rng.permutation(n_cols)[:20]
        lo[swap] = lo[np.roll(swap, 1)]
    cols = BandedColumns(2200, lo, length, rng.uniform(0.1, 1.0, int(length.sum())))
    gram = cols.toarray().T @ cols.toarray()
    i, j = np.nonzero(gram)
    band = int(np.max(np.abs(i - j)))
    assert cols.gram_bandwidth() >= band
    if not shuffle:
        assert cols.gram_bandwidth() == band


@pytest.mark.parametrize("seed", range(4))
def test_banded_solve_equals_the_dense_solve(seed):
    """A dense border (background) around a band (peak groups), on every passive subset
    kind: all, some, none of the border; one and several right-hand sides."""
    from ratagent.refinement.linear import solve_passive

    rng = np.random.default_rng(seed)
    n_free, n, w = 6, 150, 7
    a = np.zeros((600, n))
    for k in range(n):  # column k covers rows around 4k: neighbours within w overlap
        a[4 * k : 4 * k + 4 * w, k] = rng.uniform(0.1, 1.0, min(4 * w, 600 - 4 * k))
    design = np.hstack([rng.normal(size=(600, n_free)), a])
    m = design.T @ design
    for passive in (np.ones(n_free + n, bool), rng.uniform(size=n_free + n) < 0.7):
        passive[:n_free] = seed % 2 == 0 or np.arange(n_free) % 2 == 0  # all or half the border
        for r in (rng.normal(size=n_free + n), rng.normal(size=(n_free + n, 3))):
            dense = solve_passive(m, r, passive)
            banded = solve_passive(m, r, passive, n_free=n_free, band=w)
            np.testing.assert_allclose(banded, dense, rtol=1e-8, atol=1e-10 * np.abs(dense).max())
            assert not banded[~passive].any()


def test_intensity_variances_equal_the_pseudo_inverse():
    """σ(I)² from the Cholesky factor where the normal matrix is well conditioned; from the
    pseudo-inverse where two profiles coincide (a singular matrix)."""
    from ratagent.refinement.pawley import _inverse_diagonal

    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 60))
    s = a.T @ a
    np.testing.assert_allclose(_inverse_diagonal(s), np.diag(np.linalg.pinv(s)), rtol=1e-10)
    a[:, 7] = a[:, 6]
    s = a.T @ a
    np.testing.assert_allclose(_inverse_diagonal(s), np.diag(np.linalg.pinv(s)), rtol=1e-8)


def test_the_kernels_exponential_is_libms_to_an_ulp_or_two():
    """The polynomial exp of the compiled design kernels against numpy's, over every argument
    a profile gives (x ≤ 0), the integer multiples of ln 2 (where the reduction is exact)
    included; below −700 it holds at e⁻⁷⁰⁰."""
    from ratagent.refinement._banded import _exp

    x = np.r_[-np.random.default_rng(5).uniform(0, 700, 20_000), -np.linspace(0, 3, 3001),
              -np.arange(0, 1000) * np.log(2.0)]
    x = x[x >= -700]
    got = np.array([_exp(v) for v in x])
    np.testing.assert_allclose(got, np.exp(x), rtol=5e-16, atol=0)
    assert _exp(0.0) == 1.0
    assert _exp(-800.0) == pytest.approx(np.exp(-700.0), rel=1e-15)
