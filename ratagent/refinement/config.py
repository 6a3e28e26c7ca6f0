"""Settings of the Pawley fit, shared by the fit (:mod:`.pawley`) and its stages (:mod:`.stages`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PawleyConfig"]


@dataclass(frozen=True)
class PawleyConfig:
    """Settings of the Pawley fit."""

    n_background: int = 6  # Chebyshev background terms
    window_fwhm: float = 8.0  # half-width of each peak's window, in FWHM (the simulator's default)
    overlap_fwhm: float = 0.3  # families closer than this × FWHM share one intensity
    coarse_broadening: tuple[float, ...] = (4.0, 2.0)  # width multipliers of the cell search stages
    cell_tolerance: float = 0.03  # refined lengths may move this fraction from the start
    zero_bound_deg: float = 0.5  # |zero shift − start| ≤ this
    refine_profile: bool = True  # stage (c)
    max_nfev: int = 100  # function evaluations per least-squares stage
    tolerance: float = 1e-7  # ftol = xtol of least_squares
    analytic_jacobian: bool = True  # Kaufman's Jacobian (numba); False: finite differences

    def __post_init__(self) -> None:
        if self.n_background < 1:
            raise ValueError(f"n_background must be ≥ 1, got {self.n_background}")
        for name in ("window_fwhm", "overlap_fwhm", "cell_tolerance", "zero_bound_deg", "tolerance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if any(b < 1 for b in self.coarse_broadening):
            raise ValueError(f"coarse_broadening factors must be ≥ 1, got {self.coarse_broadening}")
