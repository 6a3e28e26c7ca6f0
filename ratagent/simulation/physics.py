"""Powder-diffraction physics as pure, batched torch functions.

Every function broadcasts over leading dimensions and works on whatever device and
dtype its tensor inputs have. Angles are in degrees of 2θ unless a name says
otherwise; lengths in Å; the profile functions are normalised to unit area in 2θ
(degrees).
"""

from __future__ import annotations

import math

import torch

from ratagent.instrument import tch_mix

__all__ = [
    "FWHM_TO_SIGMA",
    "amorphous_hump",
    "berar_baldinozzi",
    "bragg_two_theta",
    "caglioti_tch",
    "chebyshev_background",
    "d_spacing",
    "lorentz_polarisation",
    "march_dollase",
    "peak_shift",
    "poisson_counts",
    "pseudo_voigt",
    "pseudo_voigt_window_area",
    "reciprocal_metric",
]

#: σ of a Gaussian per unit FWHM: 1 / (2 √(2 ln 2)).
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_GAUSS_NORM = 2.0 * math.sqrt(math.log(2.0) / math.pi)  # G(0) · Γ
_GAUSS_K = 4.0 * math.log(2.0)


def reciprocal_metric(cell: torch.Tensor) -> torch.Tensor:
    """Reciprocal metric tensor G* = G⁻¹ from cells (…, 6) = (a, b, c, α, β, γ); Å⁻².

    G = [[a², ab cosγ, ac cosβ], [ab cosγ, b², bc cosα], [ac cosβ, bc cosα, c²]].
    """
    a, b, c = cell[..., 0], cell[..., 1], cell[..., 2]
    ca, cb, cg = torch.cos(torch.deg2rad(cell[..., 3:])).unbind(-1)
    g = torch.stack(
        [
            torch.stack([a * a, a * b * cg, a * c * cb], -1),
            torch.stack([a * b * cg, b * b, b * c * ca], -1),
            torch.stack([a * c * cb, b * c * ca, c * c], -1),
        ],
        -2,
    )
    return torch.linalg.inv(g)


def d_spacing(hkl: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """d(hkl) = 1 / √(h G* hᵀ) for hkl (B, N, 3) and cells (B, 6); returns (B, N) Å.

    Rows with h = 0 (padding) give d = inf.
    """
    gstar = reciprocal_metric(cell).to(hkl.dtype)
    q2 = torch.einsum("bni,bij,bnj->bn", hkl, gstar, hkl)
    return torch.rsqrt(q2)


def bragg_two_theta(d: torch.Tensor, wavelength: float | torch.Tensor) -> torch.Tensor:
    """Bragg angle 2θ = 2 arcsin(λ / 2d) in degrees; NaN where λ/2d > 1 (unreachable)."""
    s = wavelength / (2.0 * d)
    return torch.rad2deg(2.0 * torch.asin(torch.where(s <= 1.0, s, torch.nan)))


def peak_shift(
    two_theta: torch.Tensor,
    zero_shift_deg: torch.Tensor | float,
    displacement_mm: torch.Tensor | float,
    radius_mm: float,
) -> torch.Tensor:
    """Observed peak position: 2θ + Z − (180/π) · 2 s cosθ / R (Bragg–Brentano).

    Z is the zero shift (°), s the sample displacement (mm, positive towards the
    source side above the focusing circle) and R the goniometer radius (mm).
    """
    theta = torch.deg2rad(two_theta) / 2.0
    return two_theta + zero_shift_deg - torch.rad2deg(2.0 * displacement_mm * torch.cos(theta) / radius_mm)


def lorentz_polarisation(
    two_theta: torch.Tensor, monochromator_2theta_deg: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Lorentz–polarisation factor for a powder in Bragg–Brentano geometry.

    LP(θ) = (1 + cos²2θ_M cos²2θ) / ((1 + cos²2θ_M) sin²θ cosθ)

    with 2θ_M the monochromator angle (0: unpolarised beam, no monochromator).
    """
    cm2 = (
        torch.cos(
            torch.deg2rad(
                torch.as_tensor(monochromator_2theta_deg, dtype=two_theta.dtype, device=two_theta.device)
            )
        )
        ** 2
    )
    theta = torch.deg2rad(two_theta) / 2.0
    c2t = torch.cos(2.0 * theta)
    return (1.0 + cm2 * c2t * c2t) / ((1.0 + cm2) * torch.sin(theta) ** 2 * torch.cos(theta))


def march_dollase(cos_alpha: torch.Tensor, ratio: torch.Tensor | float) -> torch.Tensor:
    """March–Dollase preferred-orientation factor P(α) = (r² cos²α + sin²α / r)^(−3/2).

    α is the angle between the scattering vector and the preferred axis; r = 1 means
    no texture, r < 1 platelets (axis normal to the plates) enhanced, r > 1 needles.
    Averaged over the equivalents of a reflection it preserves total intensity.
    """
    c2 = cos_alpha * cos_alpha
    return (ratio * ratio * c2 + (1.0 - c2) / ratio) ** -1.5


def caglioti_tch(
    two_theta: torch.Tensor,
    u: torch.Tensor | float,
    v: torch.Tensor | float,
    w: torch.Tensor | float,
    x: torch.Tensor | float,
    y: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Thompson–Cox–Hastings total FWHM Γ and Lorentzian fraction η (J. Appl. Cryst. 20, 79).

    Γ_G = √(U tan²θ + V tanθ + W),   Γ_L = X / cosθ + Y tanθ   (degrees 2θ),
    Γ⁵ = Γ_G⁵ + 2.69269 Γ_G⁴Γ_L + 2.42843 Γ_G³Γ_L² + 4.47163 Γ_G²Γ_L³ + 0.07842 Γ_GΓ_L⁴ + Γ_L⁵,
    η = 1.36603 q − 0.47719 q² + 0.11116 q³,  q = Γ_L / Γ.

    Γ_G² is clamped at 1e-8 so that a negative Caglioti quadratic cannot give NaN.
    """
    theta = torch.deg2rad(two_theta) / 2.0
    t = torch.tan(theta)
    gg = torch.sqrt(torch.clamp(u * t * t + v * t + w, min=1e-8))
    gl = torch.clamp(x / torch.cos(theta) + y * t, min=0.0)
    fwhm, eta = tch_mix(gg, gl)
    return fwhm, torch.clamp(eta, 0.0, 1.0)


def pseudo_voigt(delta: torch.Tensor, fwhm: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """Unit-area pseudo-Voigt pV(Δ) = η L(Δ) + (1 − η) G(Δ), Δ = 2θ − 2θ_k (degrees).

    L(Δ) = (2 / πΓ) / (1 + 4Δ²/Γ²),  G(Δ) = (2/Γ) √(ln2/π) exp(−4 ln2 Δ²/Γ²).
    """
    z2 = (delta / fwhm) ** 2
    lor = (2.0 / math.pi) / (1.0 + 4.0 * z2)
    gau = _GAUSS_NORM * torch.exp(-_GAUSS_K * z2)
    return (eta * lor + (1.0 - eta) * gau) / fwhm


def pseudo_voigt_window_area(
    lo: torch.Tensor, hi: torch.Tensor, fwhm: torch.Tensor, eta: torch.Tensor
) -> torch.Tensor:
    """∫ pV(Δ) dΔ over [lo, hi] (degrees), analytic.

    = η [arctan(2hi/Γ) − arctan(2lo/Γ)] / π + (1 − η) [erf(2√ln2 hi/Γ) − erf(2√ln2 lo/Γ)] / 2.
    Used to renormalise a profile truncated to a window, so its area stays the intensity.
    """
    k = 2.0 * math.sqrt(math.log(2.0))
    lor = (torch.atan(2.0 * hi / fwhm) - torch.atan(2.0 * lo / fwhm)) / math.pi
    gau = 0.5 * (torch.erf(k * hi / fwhm) - torch.erf(k * lo / fwhm))
    return eta * lor + (1.0 - eta) * gau


def berar_baldinozzi(
    delta: torch.Tensor, fwhm: torch.Tensor, two_theta: torch.Tensor, p: torch.Tensor | float
) -> torch.Tensor:
    """Peak asymmetry factor A = max(0, 1 − P · 2z exp(−z²) / tanθ), z = Δ / Γ.

    The first Bérar–Baldinozzi term (J. Appl. Cryst. 26, 128 (1993)) with the sign
    chosen so that P > 0 moves intensity to the low-angle side (axial divergence).
    2z exp(−z²) is odd in Δ, so A leaves the area of a symmetric peak unchanged.
    """
    z = delta / fwhm
    tan_theta = torch.tan(torch.deg2rad(two_theta) / 2.0)
    return torch.clamp(1.0 - p * 2.0 * z * torch.exp(-z * z) / tan_theta, min=0.0)


def chebyshev_background(
    two_theta: torch.Tensor, coeffs: torch.Tensor, two_theta_min: float, two_theta_max: float
) -> torch.Tensor:
    """Chebyshev background b(2θ) = Σₖ cₖ Tₖ(x), x = 2(2θ − 2θ_min)/(2θ_max − 2θ_min) − 1.

    Parameters
    ----------
    two_theta : (G,) grid; coeffs : (B, K). Returns (B, G).
    Tₖ by the recurrence T₀ = 1, T₁ = x, Tₖ₊₁ = 2x Tₖ − Tₖ₋₁.
    """
    x = 2.0 * (two_theta - two_theta_min) / (two_theta_max - two_theta_min) - 1.0
    terms = [torch.ones_like(x), x]
    for _ in range(2, coeffs.shape[-1]):
        terms.append(2.0 * x * terms[-1] - terms[-2])
    basis = torch.stack(terms[: coeffs.shape[-1]], 0)  # (K, G)
    return coeffs @ basis


def amorphous_hump(
    two_theta: torch.Tensor,
    height: torch.Tensor,
    centre_deg: torch.Tensor,
    fwhm_deg: torch.Tensor,
) -> torch.Tensor:
    """Broad amorphous scattering h exp(−4 ln2 (2θ − c)² / Γ²); heights etc. (B,), grid (G,) → (B, G)."""
    z = (two_theta[None, :] - centre_deg[:, None]) / fwhm_deg[:, None]
    return height[:, None] * torch.exp(-_GAUSS_K * z * z)


def poisson_counts(intensity: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Counting noise: a Poisson draw N ~ Poisson(I) at each point (I in expected counts)."""
    if not bool(torch.all(intensity >= 0)):  # NaN fails this too
        bad = intensity[~(intensity >= 0)]
        raise ValueError(f"expected counts must be non-negative and not NaN, found {float(bad[0])}")
    return torch.poisson(intensity, generator=generator)
