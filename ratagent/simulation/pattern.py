"""One simulated pattern as a :class:`~ratagent.patterns.Pattern` (beamline, Pawley tests)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ratagent.instrument import Instrument
from ratagent.patterns import Pattern
from ratagent.simulation.augment import Conditions, simulate_batch
from ratagent.simulation.reflections import ReflectionList

__all__ = ["simulate_pattern"]


def simulate_pattern(
    record: ReflectionList,
    instrument: Instrument,
    rng: np.random.Generator,
    *,
    counts: float | None = None,
    background: Sequence[float] = (0.0,),
    hump_height: float = 0.0,
    hump_centre_deg: float = 25.0,
    hump_fwhm_deg: float = 10.0,
    po_ratio: float = 1.0,
    po_axis: Sequence[float] = (0.0, 0.0, 1.0),
    impurity: ReflectionList | None = None,
    impurity_fraction: float = 0.0,
    strain: float = 0.0,
    kbeta: float = 0.0,
    dtype: torch.dtype = torch.float64,
) -> Pattern:
    """Simulate the powder pattern of one phase on the instrument's 2θ grid.

    Profile (Caglioti U, V, W; X, Y), zero shift, displacement and asymmetry are the
    instrument's (use ``instrument.with_(...)`` to change them). The Bragg part is scaled
    so its strongest point is 1; background, hump and impurity are in those units.

    Parameters
    ----------
    record : ReflectionList
    instrument : Instrument
    rng : numpy.random.Generator
        Drives the strain and the counting noise.
    counts : float, optional
        Expected counts at the strongest Bragg point. None: no noise, relative intensity.
    background : sequence of float
        Chebyshev coefficients c₀, c₁, … of the background (relative).
    hump_height, hump_centre_deg, hump_fwhm_deg : float
        Amorphous hump (relative height; degrees 2θ).
    po_ratio, po_axis : March–Dollase r and preferred axis (reciprocal-lattice indices).
    impurity : ReflectionList, optional
        Second phase, mixed at ``impurity_fraction`` of the integrated intensity.
    strain : float
        Largest random lattice strain ε (within the crystal system).
    kbeta : float
        Kβ1 / Kα1 intensity ratio of the anode's Kβ1 line (about 0.01 behind a β filter;
        0: none, as on monochromated data).
    dtype : torch dtype of the computation (float64 by default for a single pattern).

    Returns
    -------
    Pattern
        2θ grid of the instrument, its principal wavelength, σ = √max(counts, 1) when
        noisy, and ``meta`` with the space group, record name and the settings used.
    """
    if counts is not None and not (np.isfinite(counts) and counts > 0):
        raise ValueError(f"counts must be a positive number of counts, got {counts}")
    if impurity_fraction > 0 and impurity is None:
        raise ValueError(f"impurity_fraction={impurity_fraction} needs an impurity record")
    if len(background) < 1:
        raise ValueError("background needs at least the constant Chebyshev term")
    if len(po_axis) != 3:
        raise ValueError(f"po_axis must be three reciprocal-lattice indices, got {po_axis}")
    if po_ratio <= 0:
        raise ValueError(f"po_ratio must be positive, got {po_ratio}")
    if hump_fwhm_deg <= 0:
        raise ValueError(f"hump_fwhm_deg must be positive, got {hump_fwhm_deg}")
    if not 0.0 <= impurity_fraction < 1.0:
        raise ValueError(f"impurity_fraction must be in [0, 1), got {impurity_fraction}")
    if not 0.0 <= kbeta < 1.0:
        raise ValueError(f"kbeta must be a Kβ1/Kα1 ratio in [0, 1), got {kbeta}")

    def one(v: float) -> np.ndarray:
        return np.array([float(v)])

    cond = Conditions(
        zero_shift_deg=one(instrument.zero_shift_deg),
        displacement_mm=one(instrument.displacement_mm),
        u_deg2=one(instrument.u_deg2),
        v_deg2=one(instrument.v_deg2),
        w_deg2=one(instrument.w_deg2),
        x_deg=one(instrument.x_deg),
        y_deg=one(instrument.y_deg),
        asymmetry=one(instrument.asymmetry),
        chebyshev=np.asarray(background, float)[None, :],
        hump_height=one(hump_height),
        hump_centre_deg=one(hump_centre_deg),
        hump_fwhm_deg=one(hump_fwhm_deg),
        counts=one(np.inf if counts is None else counts),
        po_ratio=one(po_ratio),
        po_axis=np.asarray(po_axis, float)[None, :],
        impurity_fraction=one(impurity_fraction),
        max_strain=one(strain),
        kbeta=one(kbeta) if kbeta > 0 else None,
    )
    out = simulate_batch(
        [record], instrument, cond, rng, impurities=() if impurity is None else (impurity,), dtype=dtype
    )
    intensity = out.counts[0].cpu().numpy().astype(float)
    sigma = np.sqrt(np.maximum(intensity, 1.0)) if counts is not None else None
    meta = {
        "sg_number": record.sg_number,
        "name": record.name,
        "counts": counts,
        "impurity": None if impurity is None else impurity.name,
        "impurity_fraction": impurity_fraction,
        "po_ratio": po_ratio,
        "strain": strain,
        "kbeta": kbeta,
    }
    return Pattern(instrument.two_theta, intensity, instrument.wavelength, sigma=sigma, meta=meta)
