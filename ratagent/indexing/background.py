"""Background and Kα2 removal for peak search: SNIP and Rachinger stripping.

* SNIP (Ryan, Clayton, Griffin, Sie & Cousens, Nucl. Instrum. Meth. B 34, 396 (1988);
  Morháč & Matoušek, Appl. Spectrosc. 62, 91 (2008)): on the log-log-square-root
  transformed counts v = ln(ln(√(y+1)+1)+1), clip each point to the mean of its
  neighbours at ±p, v_i ← min(v_i, (v_{i−p} + v_{i+p})/2), for p = 1 … M, then
  transform back. Peaks narrower than about M points are removed, the smooth
  background stays.
* Rachinger (J. Sci. Instrum. 25, 254 (1948)): with λ₂/λ₁ and the Kα2/Kα1 ratio R,
  the Kα1 part obeys I₁(2θ) = I(2θ) − R·I₁(2θ′), where sin θ′ = (λ₁/λ₂) sin θ is the Kα1
  angle whose Kα2 line falls at 2θ; solved point by point from low angle up.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["rachinger_strip", "snip_background"]


def snip_background(intensity: np.ndarray, max_half_width: int) -> np.ndarray:
    """SNIP background of counts on a uniform grid (see the module docstring).

    Parameters
    ----------
    intensity : (n,) counts (negative values are treated as 0)
    max_half_width : M, the largest clipping half-window in points (≈ 1–2 peak FWHM)
    """
    y = np.asarray(intensity, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"intensity must be one-dimensional, got shape {y.shape}")
    if not isinstance(max_half_width, int | np.integer) or max_half_width < 1:
        raise ValueError(f"max_half_width must be a positive integer (points), got {max_half_width!r}")
    v = np.log(np.log(np.sqrt(np.maximum(y, 0.0) + 1.0) + 1.0) + 1.0)
    n = len(v)
    for p in range(1, min(int(max_half_width), (n - 1) // 2) + 1):
        mean = 0.5 * (v[: n - 2 * p] + v[2 * p :])
        v[p : n - p] = np.minimum(v[p : n - p], mean)
    return (np.exp(np.exp(v) - 1.0) - 1.0) ** 2 - 1.0


def rachinger_strip(
    two_theta_deg: np.ndarray, net: np.ndarray, wavelength_ratio: float, alpha2_ratio: float
) -> np.ndarray:
    """Remove the Kα2 component from background-free intensities (Rachinger 1948).

    Parameters
    ----------
    two_theta_deg : (n,) increasing 2θ, degrees
    net : (n,) intensity with the background removed
    wavelength_ratio : λ(Kα2) / λ(Kα1) (> 1; Cu: 1.5444 / 1.5406)
    alpha2_ratio : intensity ratio I(Kα2) / I(Kα1), in [0, 1)
    """
    if not (math.isfinite(wavelength_ratio) and 1.0 < wavelength_ratio < 1.1):
        raise ValueError(f"wavelength_ratio λ2/λ1 must be in (1, 1.1), got {wavelength_ratio!r}")
    if not (0.0 <= alpha2_ratio < 1.0):
        raise ValueError(f"alpha2_ratio must be in [0, 1), got {alpha2_ratio!r}")
    x = np.asarray(two_theta_deg, dtype=float)
    y = np.asarray(net, dtype=float)
    s = np.sin(np.radians(x) / 2.0) / wavelength_ratio
    src = 2.0 * np.degrees(np.arcsin(s))  # Kα1 angle whose Kα2 line lies at x
    pos = np.interp(src, x, np.arange(len(x)), left=-1.0)  # fractional index of the source
    out = y.copy()
    for i in range(len(x)):
        f = pos[i]
        if f < 0:
            continue
        j = int(f)
        w = f - j
        if j + 1 < i:
            out[i] = y[i] - alpha2_ratio * ((1 - w) * out[j] + w * out[j + 1])
        else:  # the source lies between the previous point and this one
            out[i] = (y[i] - alpha2_ratio * (1 - w) * out[j]) / (1.0 + alpha2_ratio * w)
    return out
