"""Physics functions against independent facts: textbook formulas, numerical integrals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev
from scipy import integrate

from ratagent.simulation import physics
from ratagent.simulation.renderer import render_peaks

T = torch.float64


def t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=T)


@pytest.mark.parametrize("fwhm,eta", [(0.05, 0.0), (0.1, 0.5), (0.3, 1.0), (1.0, 0.3)])
def test_pseudo_voigt_has_unit_area_and_fwhm(fwhm, eta):
    def f(x: float) -> float:
        return float(physics.pseudo_voigt(t(x), t(fwhm), t(eta)))

    area, _ = integrate.quad(f, -np.inf, np.inf, points=None, limit=400)
    assert area == pytest.approx(1.0, rel=1e-6)
    assert f(fwhm / 2) == pytest.approx(f(0.0) / 2, rel=1e-9)  # half maximum at ±Γ/2


def test_window_area_matches_quadrature():
    lo, hi, g, e = -0.13, 0.41, 0.2, 0.4
    expected, _ = integrate.quad(lambda x: float(physics.pseudo_voigt(t(x), t(g), t(e))), lo, hi)
    got = float(physics.pseudo_voigt_window_area(t(lo), t(hi), t(g), t(e)))
    assert got == pytest.approx(expected, rel=1e-9)


def test_tch_limits():
    tth = t([20.0, 60.0, 100.0])
    theta = np.radians([10.0, 30.0, 50.0])
    # pure Gaussian: Γ = √(U tan²θ + V tanθ + W), η = 0
    g, e = physics.caglioti_tch(tth, 0.01, -0.005, 0.003, 0.0, 0.0)
    tan = np.tan(theta)
    np.testing.assert_allclose(g.numpy(), np.sqrt(0.01 * tan**2 - 0.005 * tan + 0.003), rtol=1e-9)
    np.testing.assert_allclose(e.numpy(), 0.0, atol=1e-12)
    # nearly pure Lorentzian: Γ → X / cosθ + Y tanθ, η → 1.36603 − 0.47719 + 0.11116 ≈ 1
    g, e = physics.caglioti_tch(tth, 0.0, 0.0, 1e-12, 0.05, 0.02)
    np.testing.assert_allclose(g.numpy(), 0.05 / np.cos(theta) + 0.02 * tan, rtol=1e-4)
    np.testing.assert_allclose(e.numpy(), 1.0, atol=1e-4)


def test_lorentz_polarisation_textbook():
    tth = np.array([10.0, 45.0, 90.0, 130.0])
    th = np.radians(tth / 2)
    # no monochromator: (1 + cos²2θ) / (2 sin²θ cosθ)
    expected = (1 + np.cos(2 * th) ** 2) / (2 * np.sin(th) ** 2 * np.cos(th))
    np.testing.assert_allclose(physics.lorentz_polarisation(t(tth)).numpy(), expected, rtol=1e-12)
    # graphite monochromator for Cu Kα, 2θ_M = 26.6°
    cm = np.cos(np.radians(26.6)) ** 2
    expected = (1 + cm * np.cos(2 * th) ** 2) / ((1 + cm) * np.sin(th) ** 2 * np.cos(th))
    np.testing.assert_allclose(physics.lorentz_polarisation(t(tth), 26.6).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("r", [0.6, 1.0, 1.4])
def test_march_dollase_conserves_intensity_over_sphere(r):
    """∫₀^{π/2} P(α) sinα dα = 1 for every r (Dollase 1986)."""
    val, _ = integrate.quad(
        lambda a: float(physics.march_dollase(t(math.cos(a)), r)) * math.sin(a), 0, math.pi / 2
    )
    assert val == pytest.approx(1.0, rel=1e-8)


def test_chebyshev_matches_numpy():
    grid = t(np.linspace(5, 90, 101))
    coeffs = t([[1.0, -0.3, 0.2, 0.05], [0.5, 0.0, 0.0, 0.1]])
    got = physics.chebyshev_background(grid, coeffs, 5.0, 90.0).numpy()
    x = np.linspace(-1, 1, 101)
    for row, c in zip(got, coeffs.numpy(), strict=True):
        np.testing.assert_allclose(row, chebyshev.chebval(x, c), atol=1e-12)


def test_peak_shift_displacement_formula():
    # Δ2θ = −2 s cosθ / R rad: s = 0.1 mm, R = 240 mm, 2θ = 60°
    got = float(physics.peak_shift(t(60.0), 0.02, 0.1, 240.0))
    assert got == pytest.approx(60.0 + 0.02 - math.degrees(2 * 0.1 * math.cos(math.radians(30)) / 240))


def test_bragg_and_d_spacing():
    # NaCl (200): d = a/2, so 2θ = 2 asin(λ/a) = 31.703° for Cu Kα1
    hkl = t([[[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    cell = t([[5.6402, 5.6402, 5.6402, 90, 90, 90]])
    d = physics.d_spacing(hkl, cell)
    np.testing.assert_allclose(d.numpy()[0], [5.6402 / 2, 5.6402 / math.sqrt(3)], rtol=1e-12)
    expected = math.degrees(2 * math.asin(1.5406 / 5.6402))
    assert float(physics.bragg_two_theta(d, 1.5406)[0, 0]) == pytest.approx(expected, abs=1e-9)
    # monoclinic: 1/d² = (h²/a² + k² sin²β/b² + l²/c² − 2hl cosβ/(ac)) / sin²β
    a, b, c, be = 5.15, 5.21, 5.32, math.radians(99.23)
    h, k, l = 1, 2, -1
    inv_d2 = (
        h * h / a**2 + k * k * math.sin(be) ** 2 / b**2 + l * l / c**2 - 2 * h * l * math.cos(be) / (a * c)
    ) / math.sin(be) ** 2
    d = physics.d_spacing(t([[[h, k, l]]]), t([[a, b, c, 90, 99.23, 90]]))
    assert float(d) == pytest.approx(1 / math.sqrt(inv_d2), rel=1e-12)
    assert torch.isnan(physics.bragg_two_theta(t(0.5), 1.5406))  # λ/2d > 1: unreachable


@pytest.mark.parametrize(
    "fwhm,eta,asym", [(0.03, 0.0, 0.0), (0.08, 0.5, 0.0), (0.25, 1.0, 0.0), (0.1, 0.6, 0.005)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rendered_peak_area_is_its_intensity(fwhm, eta, asym, dtype):
    step = 0.01
    centre = t([[30.003, 61.2371]]).to(dtype)
    inten = torch.tensor([[123.0, 7.5]], dtype=dtype)
    y = render_peaks(
        centre,
        inten,
        torch.full_like(inten, fwhm),
        torch.full_like(inten, eta),
        5.0,
        step,
        8501,
        asymmetry=torch.tensor([asym], dtype=dtype),
    )
    grid = 5.0 + step * np.arange(8501)
    y = y[0].double().numpy()
    left = grid < 45
    rtol = 1e-3 if dtype == torch.float64 else 2e-3
    assert y[left].sum() * step == pytest.approx(123.0, rel=rtol)
    assert y[~left].sum() * step == pytest.approx(7.5, rel=rtol)
    # centroid at the peak position (the asymmetry moves it to low angle)
    mean = (grid[left] * y[left]).sum() / y[left].sum()
    if asym == 0:
        assert mean == pytest.approx(30.003, abs=1e-3)
    else:
        assert mean < 30.003


def test_windowed_profile_matches_full_grid_sum():
    """The window only drops far tails: compare with every peak evaluated on all points."""
    rng = np.random.default_rng(3)
    pos = rng.uniform(10, 85, (2, 40))
    inten = rng.uniform(1, 100, (2, 40))
    fw = rng.uniform(0.03, 0.3, (2, 40))
    eta = rng.uniform(0, 1, (2, 40))
    grid = 5.0 + 0.01 * np.arange(8501)
    y = render_peaks(t(pos), t(inten), t(fw), t(eta), 5.0, 0.01, 8501, window_fwhm=8.0).numpy()
    d = grid[None, None, :] - pos[..., None]
    full = (physics.pseudo_voigt(t(d), t(fw[..., None]), t(eta[..., None])).numpy() * inten[..., None]).sum(1)
    # L1 difference is the Lorentzian tail beyond ±8Γ, redistributed into the window
    assert np.abs(y - full).sum() / full.sum() < 0.04
    np.testing.assert_allclose(y.max(1), full.max(1), rtol=0.03)


def test_poisson_counts_statistics():
    gen = torch.Generator().manual_seed(0)
    lam = torch.full((200_000,), 50.0, dtype=T)
    n = physics.poisson_counts(lam, gen).numpy()
    assert n.mean() == pytest.approx(50.0, rel=0.01)
    assert n.var() == pytest.approx(50.0, rel=0.03)
    with pytest.raises(ValueError, match="non-negative"):
        physics.poisson_counts(t([-1.0]))
