"""Powder patterns: the :class:`Pattern` type, file readers, Q conversion and resampling.

This is the bottom layer of ratagent: it imports nothing else of ours.

Conventions
-----------
* 2θ in degrees, wavelength λ in Å, Q = 4π sin θ / λ in Å⁻¹, d = 2π / Q in Å.
* The wavelength is **required**. A pattern without one is rejected: a silent Cu Kα
  default is the first cause of wrong answers in peer tools.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "CU_KA1_ANGSTROM",
    "MIN_POINTS",
    "MODEL_GRID",
    "Pattern",
    "QGrid",
    "d_spacing",
    "q_from_two_theta",
    "read_pattern",
    "resample_to_q_grid",
    "two_theta_from_q",
]

#: Cu Kα1 wavelength in Å (Hölzer et al., Phys. Rev. A 56, 4554 (1997): 1.540 593 Å;
#: diffraction practice and the RRUFF/ICDD tables round it to 1.5406 Å).
CU_KA1_ANGSTROM = 1.5406

#: Fewest points a pattern may have. Below this there is no diffraction pattern to speak of.
MIN_POINTS = 100

_SUFFIXES = (".xy", ".xye", ".dat", ".txt", ".csv", ".npy", ".npz")


def q_from_two_theta(two_theta_deg: np.ndarray | float, wavelength_angstrom: float) -> np.ndarray:
    """Momentum transfer Q = 4π sin(2θ/2) / λ, in Å⁻¹."""
    _check_wavelength(wavelength_angstrom)
    return 4.0 * np.pi * np.sin(np.radians(np.asarray(two_theta_deg, float)) / 2.0) / wavelength_angstrom


def two_theta_from_q(q_inv_angstrom: np.ndarray | float, wavelength_angstrom: float) -> np.ndarray:
    """Scattering angle 2θ = 2 arcsin(Qλ / 4π), in degrees; NaN where Qλ/4π > 1 (unreachable)."""
    _check_wavelength(wavelength_angstrom)
    s = np.asarray(q_inv_angstrom, float) * wavelength_angstrom / (4.0 * np.pi)
    with np.errstate(invalid="ignore"):
        return np.degrees(2.0 * np.arcsin(np.where(np.abs(s) <= 1.0, s, np.nan)))


def d_spacing(two_theta_deg: np.ndarray | float, wavelength_angstrom: float) -> np.ndarray:
    """Bragg d-spacing d = λ / (2 sin θ), in Å."""
    return 2.0 * np.pi / q_from_two_theta(two_theta_deg, wavelength_angstrom)


def _check_wavelength(wavelength: Any) -> float:
    if wavelength is None:
        raise ValueError(
            "wavelength is required (in Å); ratagent never assumes Cu Kα. "
            "Pass wavelength=1.5406 for Cu Kα1, or the beamline's value."
        )
    try:
        w = float(wavelength)
    except (TypeError, ValueError):
        raise TypeError(f"wavelength must be a number in Å, got {wavelength!r}") from None
    if not math.isfinite(w) or w <= 0.0:
        raise ValueError(f"wavelength must be a positive finite number in Å, got {wavelength!r}")
    if w > 20.0:
        raise ValueError(
            f"wavelength={w} Å is not an X-ray or neutron diffraction wavelength "
            "(expected roughly 0.1–20 Å; was it given in nm or keV?)"
        )
    return w


def _as_1d_float(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) (first at index {i}: {arr[i]})")
    return arr


@dataclass(frozen=True, eq=False)
class Pattern:
    """One measured or simulated powder pattern.

    Parameters
    ----------
    two_theta : array, shape (n,)
        Scattering angle 2θ in degrees, strictly increasing, within (0, 180).
    intensity : array, shape (n,)
        Counts or scaled intensity at each 2θ.
    wavelength : float
        Incident wavelength λ in Å. Required; there is no default.
    sigma : array, shape (n,), optional
        Standard uncertainty of each intensity (positive). If absent, users that need one
        take √I (counting statistics).
    meta : mapping, optional
        Free metadata (sample name, source file, count time, ...); stored read-only.

    Raises
    ------
    ValueError
        On a missing, zero or negative wavelength; NaN/inf; mismatched lengths; 2θ not
        strictly increasing or outside (0, 180)°; fewer than ``MIN_POINTS`` points.
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    wavelength: float
    sigma: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        wavelength = _check_wavelength(self.wavelength)
        tth = _as_1d_float("two_theta", self.two_theta)
        inten = _as_1d_float("intensity", self.intensity)
        if tth.shape != inten.shape:
            raise ValueError(f"two_theta and intensity differ in length: {tth.size} vs {inten.size}")
        if tth.size < MIN_POINTS:
            raise ValueError(f"pattern has {tth.size} points; at least {MIN_POINTS} are needed")
        steps = np.diff(tth)
        if (steps <= 0).any():
            i = int(np.flatnonzero(steps <= 0)[0])
            raise ValueError(
                "two_theta must be strictly increasing; "
                f"two_theta[{i}]={tth[i]} is followed by two_theta[{i + 1}]={tth[i + 1]}"
            )
        if tth[0] <= 0.0 or tth[-1] >= 180.0:
            raise ValueError(f"two_theta must lie within (0, 180) degrees, got {tth[0]} … {tth[-1]}")
        sigma = None
        if self.sigma is not None:
            sigma = _as_1d_float("sigma", self.sigma)
            if sigma.shape != tth.shape:
                raise ValueError(f"sigma and two_theta differ in length: {sigma.size} vs {tth.size}")
            if (sigma <= 0).any():
                i = int(np.flatnonzero(sigma <= 0)[0])
                raise ValueError(f"sigma must be positive; sigma[{i}]={sigma[i]}")
            sigma.setflags(write=False)
        tth.setflags(write=False)
        inten.setflags(write=False)
        object.__setattr__(self, "two_theta", tth)
        object.__setattr__(self, "intensity", inten)
        object.__setattr__(self, "wavelength", wavelength)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def __len__(self) -> int:
        return int(self.two_theta.size)

    @property
    def q(self) -> np.ndarray:
        """Q = 4π sin θ / λ at each point, Å⁻¹."""
        return q_from_two_theta(self.two_theta, self.wavelength)

    @property
    def d(self) -> np.ndarray:
        """d-spacing λ / (2 sin θ) at each point, Å."""
        return 2.0 * np.pi / self.q

    @property
    def d_min(self) -> float:
        """Smallest d-spacing reached (at the largest 2θ), Å."""
        return float(self.d[-1])

    def sigma_or_counting(self) -> np.ndarray:
        """σ as given, else the counting-statistics estimate √max(I, 1)."""
        if self.sigma is not None:
            return self.sigma
        return np.sqrt(np.maximum(self.intensity, 1.0))

    @classmethod
    def from_file(cls, path: str | Path, wavelength: float | None = None) -> Pattern:
        """Read a pattern file; see :func:`read_pattern`."""
        return read_pattern(path, wavelength=wavelength)


# --------------------------------------------------------------------------- readers

_WAVELENGTH_RE = re.compile(
    r"(?:wavelength|lambda|λ|wave_length|alpha1)\s*(?:\(\s*[aåA]\w*\s*\))?\s*[:=]?\s*"
    r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)",
    re.IGNORECASE,
)


def _header_match(pattern: re.Pattern[str], lines: list[str]) -> re.Match[str] | None:
    """The first match of ``pattern`` in the header lines."""
    return next((m for m in map(pattern.search, lines) if m), None)


def _wavelength_from_header(lines: list[str]) -> float | None:
    m = _header_match(_WAVELENGTH_RE, lines)
    return None if m is None else float(m.group(1))


# "# radiation: Cu", "Anode = Co", "# target: Mo Ka", "CuKa1/Ka2"
_RADIATION_RE = re.compile(
    r"(?:radiation|anode|tube|target)\s*[:=]?\s*(Cr|Fe|Co|Cu|Mo|Ag)\b"
    r"|\b(Cr|Fe|Co|Cu|Mo|Ag)[\s_-]?K(?:a|α|alpha)",
    re.IGNORECASE,
)


def _radiation_from_header(lines: list[str]) -> str | None:
    """The X-ray tube anode a header names (``"Cu"``), else None."""
    m = _header_match(_RADIATION_RE, lines)
    return None if m is None else (m.group(1) or m.group(2)).capitalize()


def _read_text_columns(path: Path, delimiter: str | None) -> tuple[np.ndarray, list[str]]:
    header: list[str] = []
    rows: list[list[float]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            if line[0] in "#!;'\"" or line[0].isalpha():
                header.append(line)
                continue
            parts = line.split(delimiter) if delimiter else line.split()
            try:
                rows.append([float(p) for p in parts if p.strip() != ""])
            except ValueError:
                if not rows:  # a header line without a comment marker
                    header.append(line)
                    continue
                raise ValueError(f"{path}:{lineno}: cannot parse numbers from {line!r}") from None
    if not rows:
        raise ValueError(f"{path}: no numeric data found")
    ncol = {len(r) for r in rows}
    if len(ncol) != 1:
        raise ValueError(f"{path}: rows have different numbers of columns {sorted(ncol)}")
    return np.asarray(rows, float), header


def read_pattern(path: str | Path, wavelength: float | None = None) -> Pattern:
    """Read a powder pattern from ``.xy``, ``.xye``, ``.dat``, ``.txt``, ``.csv``, ``.npy`` or ``.npz``.

    Text files hold columns 2θ, I and optionally σ; lines starting with ``#`` (or any
    non-numeric header line) are header. A header line such as ``# wavelength: 0.7293``
    states the wavelength; one such as ``# radiation: Cu`` or ``Cu Kα`` names the tube
    anode, kept as ``meta["radiation"]`` (the caller decides what it implies). ``.npy``
    holds an array of shape (2, n), (3, n), (n, 2) or (n, 3); ``.npz`` holds
    ``two_theta``, ``intensity``, optional ``sigma`` and optional ``wavelength``.

    Parameters
    ----------
    path : str or Path
        File to read.
    wavelength : float, optional
        λ in Å. Overrides a wavelength stated in the file. Required when the file states none.

    Raises
    ------
    ValueError
        Unknown suffix, unreadable numbers, wrong shape, or no wavelength anywhere; plus the
        checks of :class:`Pattern`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of {_SUFFIXES}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    stated: float | None = None
    radiation: str | None = None
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = {"two_theta", "intensity"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: npz lacks {sorted(missing)} (has {z.files})")
            if z["intensity"].ndim != 1:
                raise ValueError(f"{path}: intensity has shape {z['intensity'].shape}; one pattern per file")
            cols = [z["two_theta"], z["intensity"]] + ([z["sigma"]] if "sigma" in z.files else [])
            if "wavelength" in z.files:
                stated = float(z["wavelength"])
    elif suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2 or (2 not in arr.shape and 3 not in arr.shape):
            raise ValueError(f"{path}: expected shape (2|3, n) or (n, 2|3), got {arr.shape}")
        if arr.shape[0] not in (2, 3):
            arr = arr.T
        cols = list(arr)
    else:
        data, header = _read_text_columns(path, "," if suffix == ".csv" else None)
        if data.shape[1] < 2:
            raise ValueError(f"{path}: need at least 2 columns (2θ, I), got {data.shape[1]}")
        cols = list(data.T[:3])
        stated = _wavelength_from_header(header)
        radiation = _radiation_from_header(header)
    lam = wavelength if wavelength is not None else stated
    if lam is None:
        raise ValueError(
            f"{path}: the file states no wavelength and none was given; "
            "pass wavelength= (Å), e.g. --wavelength 1.5406 for Cu Kα1"
        )
    sigma = cols[2] if len(cols) > 2 else None
    meta = {"source": str(path)} | ({"radiation": radiation} if radiation else {})
    return Pattern(cols[0], cols[1], lam, sigma=sigma, meta=meta)


# --------------------------------------------------------------------------- Q grid


@dataclass(frozen=True)
class QGrid:
    """The model's fixed sampling of reciprocal space.

    The grid is uniform in 2θ at a reference wavelength (the model is trained on
    Cu Kα1, 2θ = 5–90°, step 0.01°: 8501 points), which fixes a set of Q values.
    Patterns at any other wavelength are mapped onto these Q values.
    """

    two_theta_min_deg: float = 5.0  # first grid point, degrees at the reference wavelength
    two_theta_max_deg: float = 90.0  # last grid point, degrees at the reference wavelength
    step_deg: float = 0.01  # 2θ step at the reference wavelength, degrees
    wavelength_angstrom: float = CU_KA1_ANGSTROM  # reference wavelength λ_ref, Å

    @property
    def n_points(self) -> int:
        return int(round((self.two_theta_max_deg - self.two_theta_min_deg) / self.step_deg)) + 1

    @property
    def two_theta(self) -> np.ndarray:
        """2θ (degrees, at the reference wavelength) of each grid point, shape (n_points,)."""
        return self.two_theta_min_deg + self.step_deg * np.arange(self.n_points)

    @property
    def q(self) -> np.ndarray:
        """Q (Å⁻¹) of each grid point, shape (n_points,)."""
        return q_from_two_theta(self.two_theta, self.wavelength_angstrom)

    @property
    def sin2theta(self) -> np.ndarray:
        """sin²θ at the reference wavelength, the model's coordinate channel, shape (n_points,)."""
        return np.sin(np.radians(self.two_theta) / 2.0) ** 2


#: The grid of the shipped model.
MODEL_GRID = QGrid()


def resample_to_q_grid(
    pattern: Pattern, grid: QGrid = MODEL_GRID, *, min_coverage: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Map a pattern onto a fixed Q grid by linear interpolation in Q.

    Grid points outside the measured Q range are **not invented**: their intensity is 0
    and the returned mask is False there.

    Parameters
    ----------
    pattern : Pattern
        The measured pattern, at any wavelength.
    grid : QGrid
        Target grid (default: the model's).
    min_coverage : float
        Smallest accepted fraction of grid points inside the measured Q range.

    Returns
    -------
    intensity : ndarray, shape (grid.n_points,), float32
    mask : ndarray, shape (grid.n_points,), bool — True where measured.

    Raises
    ------
    ValueError
        When the pattern covers less than ``min_coverage`` of the grid (names both Q ranges).
    """
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    gq = grid.q
    pq = pattern.q
    mask = (gq >= pq[0]) & (gq <= pq[-1])
    coverage = float(mask.mean())
    if coverage < min_coverage:
        raise ValueError(
            f"pattern covers {coverage:.1%} of the model's Q grid "
            f"(pattern Q {pq[0]:.3f}–{pq[-1]:.3f} Å⁻¹ at λ={pattern.wavelength} Å; "
            f"grid Q {gq[0]:.3f}–{gq[-1]:.3f} Å⁻¹); at least {min_coverage:.0%} is needed"
        )
    out = np.zeros(gq.shape, np.float32)
    out[mask] = np.interp(gq[mask], pq, pattern.intensity)
    return out, mask
