"""Random instrument and sample conditions, and the full batched forward model.

:class:`AugmentationConfig` holds the ranges training draws from;
:func:`simulate_batch` turns reflection lists into noisy patterns:

1. Strain each cell within its crystal system (:func:`~.lattice.strain_cell`).
2. Render the Bragg intensity with per-pattern profile, shifts, asymmetry and
   March–Dollase texture (:func:`~.renderer.render`).
3. Mix in an impurity phase at weight fraction f: each phase is normalised to unit
   integrated intensity, then y = (1 − f) y_main + f y_imp.
4. Scale so the strongest point is 1; add a Chebyshev background and an amorphous
   hump, both in these relative units.
5. Multiply by the count level N (expected counts at the strongest Bragg point) and
   draw Poisson counts.
6. Optionally "process" the pattern as databases such as RRUFF publish it: background
   subtracted, scaled to a fixed maximum and rounded to integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ratagent.instrument import Instrument
from ratagent.simulation import lattice, physics
from ratagent.simulation.reflections import ReflectionList
from ratagent.simulation.renderer import PatternParams, collate, render

__all__ = ["AugmentationConfig", "Conditions", "SimulatedBatch", "simulate_batch"]

#: Preferred-orientation axes (reciprocal-lattice indices) texture is drawn along.
PO_AXES = ((0, 0, 1), (1, 0, 0), (0, 1, 0), (1, 1, 0), (1, 1, 1))


def _check_range(name: str, rng_: tuple[float, float]) -> None:
    lo, hi = rng_
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"{name} must be a finite (low, high) range with low <= high, got {rng_}")


@dataclass(frozen=True)
class AugmentationConfig:
    """Ranges (low, high) of the random conditions; each is drawn uniformly per pattern.

    The instrument's own Caglioti and shift values are replaced by draws from these
    ranges; its wavelengths, 2θ grid, goniometer radius and monochromator are kept.
    """

    zero_shift_deg: tuple[float, float] = (-0.05, 0.05)  # 2θ zero shift, degrees
    displacement_mm: tuple[float, float] = (-0.1, 0.1)  # sample height error, mm
    u_deg2: tuple[float, float] = (0.0, 0.02)  # Caglioti U, degrees²
    v_deg2: tuple[float, float] = (-0.01, 0.0)  # Caglioti V, degrees²
    w_deg2: tuple[float, float] = (0.001, 0.01)  # Caglioti W, degrees²
    x_deg: tuple[float, float] = (0.0, 0.08)  # Lorentzian X, degrees
    y_deg: tuple[float, float] = (0.0, 0.05)  # Lorentzian Y, degrees
    asymmetry: tuple[float, float] = (0.0, 0.01)  # Bérar–Baldinozzi P
    background: tuple[float, float] = (0.0, 0.1)  # constant background / strongest peak
    background_shape: float = 0.5  # higher Chebyshev terms: U(−1, 1) · this · constant term
    n_chebyshev: int = 4  # number of Chebyshev terms
    hump_height: tuple[float, float] = (0.0, 0.05)  # amorphous hump height / strongest peak
    hump_centre_deg: tuple[float, float] = (15.0, 35.0)  # hump centre, degrees 2θ
    hump_fwhm_deg: tuple[float, float] = (5.0, 15.0)  # hump FWHM, degrees 2θ
    log10_counts: tuple[float, float] = (2.0, 4.5)  # log10 of counts at the strongest point
    po_probability: float = 0.3  # chance that a pattern is textured
    po_ratio: tuple[float, float] = (0.7, 1.3)  # March–Dollase r when textured
    impurity_probability: float = 0.0  # chance of an impurity phase (needs a pool)
    impurity_fraction: tuple[float, float] = (0.02, 0.15)  # impurity weight fraction
    max_strain: float = 0.005  # largest lattice strain ε (fraction)
    # chance that a pattern is published "processed", as RRUFF's are: background subtracted,
    # scaled so the strongest point is ``processed_scale`` and rounded to integers (weak
    # reflections below half a unit vanish)
    processed_probability: float = 0.0
    processed_scale: float = 1000.0
    # Kβ1 / Kα1 intensity ratio: what a β filter or a mirror leaves of the anode's Kβ line
    # (a Ni filter on Cu, about 1 %; none on monochromated data)
    kbeta: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in (
            "zero_shift_deg",
            "displacement_mm",
            "u_deg2",
            "v_deg2",
            "w_deg2",
            "x_deg",
            "y_deg",
            "asymmetry",
            "background",
            "hump_height",
            "hump_centre_deg",
            "hump_fwhm_deg",
            "log10_counts",
            "po_ratio",
            "impurity_fraction",
            "kbeta",
        ):
            _check_range(name, getattr(self, name))
        for name in ("po_probability", "impurity_probability", "processed_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.po_ratio[0] <= 0:
            raise ValueError(f"po_ratio must be positive, got {self.po_ratio}")
        if self.hump_fwhm_deg[0] <= 0:
            raise ValueError(f"hump_fwhm_deg must be positive, got {self.hump_fwhm_deg}")
        if not 0 <= self.impurity_fraction[0] <= self.impurity_fraction[1] < 1:
            raise ValueError(f"impurity_fraction must lie in [0, 1), got {self.impurity_fraction}")
        if self.n_chebyshev < 1:
            raise ValueError(f"n_chebyshev must be at least 1, got {self.n_chebyshev}")
        if not self.processed_scale > 0:
            raise ValueError(f"processed_scale must be positive, got {self.processed_scale}")
        if not 0 <= self.max_strain < 0.2:
            raise ValueError(f"max_strain must be in [0, 0.2), got {self.max_strain}")
        if not 0 <= self.kbeta[0] <= self.kbeta[1] < 1:
            raise ValueError(f"kbeta must be a Kβ1/Kα1 ratio range in [0, 1), got {self.kbeta}")

    def sample(self, rng: np.random.Generator, n: int) -> Conditions:
        """Draw the conditions of ``n`` patterns."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")

        def u(r: tuple[float, float]) -> np.ndarray:
            return rng.uniform(r[0], r[1], size=n)

        level = u(self.background)
        cheb = np.zeros((n, self.n_chebyshev))
        cheb[:, 0] = level
        cheb[:, 1:] = rng.uniform(-1, 1, (n, self.n_chebyshev - 1)) * self.background_shape * level[:, None]
        textured = rng.random(n) < self.po_probability
        return Conditions(
            zero_shift_deg=u(self.zero_shift_deg),
            displacement_mm=u(self.displacement_mm),
            u_deg2=u(self.u_deg2),
            v_deg2=u(self.v_deg2),
            w_deg2=u(self.w_deg2),
            x_deg=u(self.x_deg),
            y_deg=u(self.y_deg),
            asymmetry=u(self.asymmetry),
            chebyshev=cheb,
            hump_height=u(self.hump_height),
            hump_centre_deg=u(self.hump_centre_deg),
            hump_fwhm_deg=u(self.hump_fwhm_deg),
            counts=10.0 ** u(self.log10_counts),
            po_ratio=np.where(textured, u(self.po_ratio), 1.0),
            po_axis=np.asarray(PO_AXES, float)[rng.integers(0, len(PO_AXES), n)],
            impurity_fraction=np.where(
                rng.random(n) < self.impurity_probability, u(self.impurity_fraction), 0.0
            ),
            max_strain=np.full(n, self.max_strain),
            # drawn only when used, so configs without it keep their random streams
            processed=(
                np.where(rng.random(n) < self.processed_probability, self.processed_scale, 0.0)
                if self.processed_probability > 0
                else None
            ),
            kbeta=u(self.kbeta) if self.kbeta[1] > 0 else None,
        )


@dataclass(frozen=True, eq=False)
class Conditions:
    """Drawn conditions of n patterns; every field is an array with first dimension n.

    ``counts`` of inf means no counting noise. Build directly to fix every value.
    """

    zero_shift_deg: np.ndarray
    displacement_mm: np.ndarray
    u_deg2: np.ndarray
    v_deg2: np.ndarray
    w_deg2: np.ndarray
    x_deg: np.ndarray
    y_deg: np.ndarray
    asymmetry: np.ndarray
    chebyshev: np.ndarray  # (n, K) relative Chebyshev coefficients
    hump_height: np.ndarray
    hump_centre_deg: np.ndarray
    hump_fwhm_deg: np.ndarray
    counts: np.ndarray
    po_ratio: np.ndarray
    po_axis: np.ndarray  # (n, 3)
    impurity_fraction: np.ndarray
    max_strain: np.ndarray
    processed: np.ndarray | None = None  # scale of a processed pattern (0 or None: raw counts)
    kbeta: np.ndarray | None = None  # Kβ1 / Kα1 intensity ratio (None: no Kβ line)

    def __len__(self) -> int:
        return int(np.shape(self.zero_shift_deg)[0])

    def params(self, device: torch.device | str, dtype: torch.dtype) -> PatternParams:
        """The renderer's per-pattern parameters (scale 1)."""

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, float), dtype=dtype, device=device)

        return PatternParams(
            scale=t(np.ones(len(self))),
            zero_shift_deg=t(self.zero_shift_deg),
            displacement_mm=t(self.displacement_mm),
            u=t(self.u_deg2),
            v=t(self.v_deg2),
            w=t(self.w_deg2),
            x=t(self.x_deg),
            y=t(self.y_deg),
            asymmetry=t(self.asymmetry),
            po_ratio=t(self.po_ratio),
            po_axis=t(self.po_axis),
            kbeta=None if self.kbeta is None else t(self.kbeta),
        )


@dataclass(frozen=True, eq=False)
class SimulatedBatch:
    """Output of :func:`simulate_batch`: tensors of shape (B, G) on the batch's device."""

    counts: torch.Tensor  # Poisson counts (= ``expected`` where counts is inf), or processed rows
    expected: torch.Tensor  # expected counts: N · (Bragg + background) in relative units
    conditions: Conditions


def simulate_batch(
    records: Sequence[ReflectionList],
    instrument: Instrument,
    conditions: Conditions,
    rng: np.random.Generator,
    *,
    impurities: Sequence[ReflectionList] = (),
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SimulatedBatch:
    """The whole forward model for a batch (algorithm: module docstring).

    Parameters
    ----------
    records : sequence of ReflectionList, length B
    instrument : Instrument
        Wavelength lines, 2θ grid, goniometer radius, monochromator.
    conditions : Conditions
        From :meth:`AugmentationConfig.sample` (length B), or built by hand.
    rng : numpy.random.Generator
        Strain, impurity choice and the seed of the torch Poisson generator.
    impurities : sequence of ReflectionList
        Pool the impurity phases are drawn from (needed when any fraction > 0).
    """
    b = len(records)
    if len(conditions) != b:
        raise ValueError(f"conditions are for {len(conditions)} patterns, records for {b}")
    if np.any(conditions.impurity_fraction > 0) and not impurities:
        raise ValueError("impurity_fraction > 0 needs a non-empty impurities pool")
    cells = np.stack(
        [
            lattice.strain_cell(r.cell, r.crystal_system, float(s), rng)
            for r, s in zip(records, conditions.max_strain, strict=True)
        ]
    )
    textured = bool(np.any(conditions.po_ratio != 1.0))
    params = conditions.params(device, dtype)
    y = render(collate(records, device=device, dtype=dtype, cells=cells, laue=textured), instrument, params)
    frac = torch.as_tensor(conditions.impurity_fraction, dtype=dtype, device=device)
    if bool(torch.any(frac > 0)):
        pick = rng.integers(0, len(impurities), size=b)
        imp = [impurities[i] for i in pick]
        no_po = replace(params, po_ratio=torch.ones_like(params.po_ratio))
        y_imp = render(collate(imp, device=device, dtype=dtype), instrument, no_po)
        y_main = y / y.sum(1, keepdim=True).clamp(min=1e-30)
        y_imp = y_imp / y_imp.sum(1, keepdim=True).clamp(min=1e-30)
        y = (1.0 - frac[:, None]) * y_main + frac[:, None] * y_imp
    y = y / y.amax(1, keepdim=True).clamp(min=1e-30)
    grid = torch.as_tensor(instrument.two_theta, dtype=dtype, device=device)
    cheb = torch.as_tensor(conditions.chebyshev, dtype=dtype, device=device)
    smooth = physics.chebyshev_background(
        grid, cheb, instrument.two_theta_min_deg, instrument.two_theta_max_deg
    )
    hump = physics.amorphous_hump(
        grid,
        *(
            torch.as_tensor(a, dtype=dtype, device=device)
            for a in (conditions.hump_height, conditions.hump_centre_deg, conditions.hump_fwhm_deg)
        ),
    )
    y = (y + smooth + hump).clamp(min=0.0)
    counts = torch.as_tensor(conditions.counts, dtype=dtype, device=device)
    finite = torch.isfinite(counts)
    expected = y * torch.where(finite, counts, torch.ones_like(counts))[:, None]
    noisy = expected
    if bool(torch.any(finite)):
        gen = torch.Generator(device=expected.device)
        gen.manual_seed(int(rng.integers(0, 2**63 - 1)))
        noisy = torch.where(finite[:, None], physics.poisson_counts(expected, gen), expected)
    if conditions.processed is not None and np.any(conditions.processed > 0):
        noisy = _process(noisy, smooth + hump, counts, finite, conditions.processed)
    return SimulatedBatch(noisy, expected, conditions)


def _process(
    noisy: torch.Tensor,
    background: torch.Tensor,
    counts: torch.Tensor,
    finite: torch.Tensor,
    scale: np.ndarray,
) -> torch.Tensor:
    """Rows with scale > 0 as a database publishes them: the background subtracted (the
    true one, standing in for a good estimate), negative values set to 0, scaled so the
    maximum is ``scale`` and rounded to integers; other rows unchanged."""
    level = torch.where(finite, counts, torch.ones_like(counts))[:, None]
    net = (noisy - background * level).clamp(min=0.0)
    s = torch.as_tensor(scale, dtype=noisy.dtype, device=noisy.device)[:, None]
    out = torch.round(net * s / net.amax(1, keepdim=True).clamp(min=1e-30))
    return torch.where(s > 0, out, noisy)
