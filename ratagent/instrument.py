"""The :class:`Instrument`: what the diffractometer does to a powder pattern.

One description shared by the simulator, the Pawley engine and the simulated beamline,
so that all of them speak the same physics. Bottom layer: imports nothing of ours but
:mod:`ratagent.patterns`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ratagent.patterns import CU_KA1_ANGSTROM, QGrid

__all__ = ["CU_KA2_ANGSTROM", "CU_KA2_RATIO", "Instrument", "tch_mix"]

#: Cu Kα2 wavelength in Å (Hölzer et al. 1997: 1.544 427 Å).
CU_KA2_ANGSTROM = 1.5444
#: Kα2/Kα1 intensity ratio for Cu (Hölzer et al. 1997 give 0.50–0.52; 0.5 is the usual value).
CU_KA2_RATIO = 0.5


def tch_mix(gamma_g, gamma_l):
    """Thompson–Cox–Hastings total FWHM Γ and (unclipped) Lorentzian fraction η.

    Γ⁵ = Γ_G⁵ + 2.69269 Γ_G⁴Γ_L + 2.42843 Γ_G³Γ_L² + 4.47163 Γ_G²Γ_L³ + 0.07842 Γ_GΓ_L⁴ + Γ_L⁵,
    η = 1.36603 q − 0.47719 q² + 0.11116 q³,  q = Γ_L / Γ  (J. Appl. Cryst. 20, 79 (1987)).

    Arithmetic only, so it serves numpy arrays (Pawley) and torch tensors (renderer) alike;
    callers clip η to [0, 1] with their own library.
    """
    gg, gl = gamma_g, gamma_l
    g5 = (
        gg**5
        + 2.69269 * gg**4 * gl
        + 2.42843 * gg**3 * gl**2
        + 4.47163 * gg**2 * gl**3
        + 0.07842 * gg * gl**4
        + gl**5
    )
    fwhm = g5**0.2
    q = gl / fwhm
    return fwhm, 1.36603 * q - 0.47719 * q * q + 0.11116 * q**3


@dataclass(frozen=True)
class Instrument:
    """Diffractometer geometry, radiation and peak-shape parameters.

    Profile conventions follow GSAS (Thompson, Cox & Hastings, J. Appl. Cryst. 20, 79
    (1987)): Gaussian FWHM² = U tan²θ + V tanθ + W, Lorentzian FWHM = X / cosθ + Y tanθ,
    here in degrees² and degrees of 2θ.
    """

    wavelengths_angstrom: tuple[float, ...] = (CU_KA1_ANGSTROM, CU_KA2_ANGSTROM)  # λ of each line, Å
    line_ratios: tuple[float, ...] = (1.0, CU_KA2_RATIO)  # relative intensity of each line
    two_theta_min_deg: float = 5.0  # first 2θ point, degrees
    two_theta_max_deg: float = 90.0  # last 2θ point, degrees
    step_deg: float = 0.01  # 2θ step, degrees
    zero_shift_deg: float = 0.0  # added to every Bragg 2θ, degrees
    displacement_mm: float = 0.0  # sample height error s (Bragg–Brentano), mm
    goniometer_radius_mm: float = 240.0  # R, mm; displacement shift Δ2θ = -2 s cosθ / R (rad)
    monochromator_2theta_deg: float = 0.0  # 2θ_M of a monochromator (0: none), degrees
    u_deg2: float = 0.004  # Caglioti U, degrees²
    v_deg2: float = -0.002  # Caglioti V, degrees²
    w_deg2: float = 0.002  # Caglioti W, degrees²
    x_deg: float = 0.02  # Lorentzian X (size broadening) / cosθ, degrees
    y_deg: float = 0.01  # Lorentzian Y (strain broadening) tanθ, degrees
    asymmetry: float = 0.0  # Bérar–Baldinozzi-like low-angle asymmetry coefficient (dimensionless)

    def __post_init__(self) -> None:
        if len(self.wavelengths_angstrom) == 0:
            raise ValueError("Instrument needs at least one wavelength")
        if len(self.wavelengths_angstrom) != len(self.line_ratios):
            raise ValueError(
                f"wavelengths_angstrom {self.wavelengths_angstrom} and line_ratios "
                f"{self.line_ratios} differ in length"
            )
        for w in self.wavelengths_angstrom:
            if not (math.isfinite(w) and 0.0 < w <= 20.0):
                raise ValueError(f"wavelength {w!r} Å is not in (0, 20]")
        if any(r < 0 for r in self.line_ratios) or self.line_ratios[0] <= 0:
            raise ValueError(f"line_ratios must be non-negative, the first positive: {self.line_ratios}")
        if not 0.0 < self.two_theta_min_deg < self.two_theta_max_deg < 180.0:
            raise ValueError(
                f"2θ range {self.two_theta_min_deg}–{self.two_theta_max_deg}° is not within (0, 180)"
            )
        if not self.step_deg > 0:
            raise ValueError(f"step_deg must be positive, got {self.step_deg}")

    @classmethod
    def synchrotron(cls, wavelength_angstrom: float, **kwargs: float) -> Instrument:
        """A single-line instrument (no Kα2), e.g. a synchrotron beamline at λ Å."""
        return cls(wavelengths_angstrom=(wavelength_angstrom,), line_ratios=(1.0,), **kwargs)

    @property
    def wavelength(self) -> float:
        """The principal wavelength (Kα1 for a tube), Å."""
        return self.wavelengths_angstrom[0]

    @property
    def two_theta(self) -> np.ndarray:
        """The 2θ grid in degrees, shape (n_points,)."""
        n = int(round((self.two_theta_max_deg - self.two_theta_min_deg) / self.step_deg)) + 1
        return self.two_theta_min_deg + self.step_deg * np.arange(n)

    def with_(self, **changes: float) -> Instrument:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_grid(cls, grid: QGrid) -> Instrument:
        """A Kα1/Kα2 instrument whose 2θ grid is the given model grid."""
        return cls(
            two_theta_min_deg=grid.two_theta_min_deg,
            two_theta_max_deg=grid.two_theta_max_deg,
            step_deg=grid.step_deg,
        )
