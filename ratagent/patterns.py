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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "ANODE_KA1_ANGSTROM",
    "CU_KA1_ANGSTROM",
    "MIN_POINTS",
    "MODEL_GRID",
    "Pattern",
    "QGrid",
    "d_spacing",
    "naming",
    "q_from_two_theta",
    "read_pattern",
    "resample_to_q_grid",
    "signal_problem",
    "two_theta_from_q",
]

#: Cu Kα1 wavelength in Å (Hölzer et al., Phys. Rev. A 56, 4554 (1997): 1.540 593 Å;
#: diffraction practice and the RRUFF/ICDD tables round it to 1.5406 Å).
CU_KA1_ANGSTROM = 1.5406
#: Kα1 wavelength (Å) of each X-ray tube anode a file header may name: the wavelength of
#: a pattern whose header names its anode and states no wavelength.
#: :data:`ratagent.instrument.RADIATIONS` adds the Kα2 lines and gives the sources.
ANODE_KA1_ANGSTROM: dict[str, float] = {
    "Cr": 2.289726, "Fe": 1.936041, "Co": 1.788996, "Cu": CU_KA1_ANGSTROM, "Mo": 0.709317, "Ag": 0.559407,
}

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

#: h·c in keV·Å (CODATA 2018): λ / Å = 12.398 419 843 / (E / keV).
HC_KEV_ANGSTROM = 12.398419843320026

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_UNIT = r"([A-Za-zÅμ]+)"
# "# wavelength: 0.7293", "lambda (A) = 1.5406", "Wavelength [nm] 0.0729", "λ = 72.9 pm",
# "Alpha1 1.540598"
_WAVELENGTH_RE = re.compile(
    r"(?:wavelength|lambda|λ|wave_length|alpha1)\s*(?:[(\[]\s*" + _UNIT + r"\s*[)\]])?\s*[:=]?\s*"
    + _NUMBER + r"(?:\s*" + _UNIT + r")?",
    re.IGNORECASE,
)
# "# energy: 17.0 keV", "Energy (keV) = 30", "beam energy [eV]: 17000"
_ENERGY_RE = re.compile(
    r"\benergy\s*(?:[(\[]\s*" + _UNIT + r"\s*[)\]])?\s*[:=]?\s*" + _NUMBER + r"(?:\s*" + _UNIT + r")?",
    re.IGNORECASE,
)
#: Length units of a stated wavelength, in Å; energy units, in keV.
_LENGTH_UNITS = {"a": 1.0, "å": 1.0, "ang": 1.0, "angstrom": 1.0, "angstroms": 1.0, "nm": 10.0, "pm": 0.01}
_ENERGY_UNITS = {"kev": 1.0, "ev": 1e-3}


def _header_match(pattern: re.Pattern[str], lines: list[str]) -> tuple[str, re.Match[str]] | None:
    """The first header line ``pattern`` matches, and the match."""
    return next(((line, m) for line in lines if (m := pattern.search(line))), None)


def _unit(match: re.Match[str], before: int, after: int, units: dict[str, float]) -> float | None:
    """The factor of the unit stated before or after the number (None: no known unit stated)."""
    for group in (before, after):
        word = match.group(group)
        if word and word.lower() in units:
            return units[word.lower()]
    return None


def _wavelength_from_header(lines: list[str], path: Path) -> float | None:
    """λ in Å that the header states, as a wavelength (Å by default, nm, pm) or a photon
    energy (keV or eV; the unit is required); None when it states neither."""
    found = _header_match(_WAVELENGTH_RE, lines)
    if found is not None:
        line, m = found
        if m.group(1) and m.group(1).lower() not in _LENGTH_UNITS:
            raise ValueError(f"{path}: header line {line!r}: wavelength unit {m.group(1)!r} is not one of "
                             "Å, nm, pm")
        factor = _unit(m, 1, 3, _LENGTH_UNITS)
        return float(m.group(2)) * (1.0 if factor is None else factor)
    found = _header_match(_ENERGY_RE, lines)
    if found is None:
        return None
    line, m = found
    factor = _unit(m, 1, 3, _ENERGY_UNITS)
    if factor is None:
        raise ValueError(f"{path}: header line {line!r} states an energy without a unit (keV or eV); "
                         "pass the wavelength instead")
    energy_kev = float(m.group(2)) * factor
    if energy_kev <= 0:
        raise ValueError(f"{path}: header line {line!r}: the energy must be positive")
    return HC_KEV_ANGSTROM / energy_kev


# "# radiation: Cu", "Anode = Co", "# target: Mo Ka"; else a bare "CuKa1/Ka2"
_ANODE_KEYWORD_RE = re.compile(r"(?:radiation|anode|tube|target)\s*[:=]?\s*(Cr|Fe|Co|Cu|Mo|Ag)\b",
                               re.IGNORECASE)
_ANODE_LINE_RE = re.compile(r"\b(Cr|Fe|Co|Cu|Mo|Ag)[\s_-]?K(?:a|α|alpha)", re.IGNORECASE)
# "Kα1" alone (a Kα1 monochromator), not "Kα1/Kα2", "Ka1+2" or "Ka12"
_KALPHA1_ONLY_RE = re.compile(r"K(?:a|α|alpha)[\s_-]?1(?!\s*[/,+&]?\s*(?:K(?:a|α|alpha))?[\s_-]?2)",
                              re.IGNORECASE)


def _radiation_from_header(lines: list[str]) -> tuple[str, str] | None:
    """``(radiation, anode)`` a header names: the X-ray tube anode (``"Cu"``) as both, or
    ``"mono"`` where it names the Kα1 line alone (``"Cu Kα1"``, as behind a Kα1
    monochromator); else None. A line with a keyword (``radiation: Cu``) wins over one that
    names a line (``Fe Kα``)."""
    found = _header_match(_ANODE_KEYWORD_RE, lines) or _header_match(_ANODE_LINE_RE, lines)
    if found is None:
        return None
    line, m = found
    anode = m.group(1).capitalize()
    return ("mono" if _KALPHA1_ONLY_RE.search(line) else anode), anode


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
        if delimiter is None and any(re.fullmatch(r"[-+.\deE]+(\s*,\s*[-+.\deE]+)+", h) for h in header):
            raise ValueError(f"{path}: no numeric data found: its values are separated by commas; "
                             "name the file .csv")
        raise ValueError(f"{path}: no numeric data found")
    ncol = {len(r) for r in rows}
    if len(ncol) != 1:
        raise ValueError(f"{path}: rows have different numbers of columns {sorted(ncol)}")
    return np.asarray(rows, float), header


#: Names a header may give each column, compared in lower case without spaces, "_", "-"
#: and a unit in brackets ("2Theta (deg)" → "2theta").
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "two_theta": ("2theta", "2θ", "twotheta", "tth", "2th", "angle", "2thetadeg"),
    "intensity": ("intensity", "i", "int", "counts", "count", "yobs", "iobs", "y", "cps"),
    "sigma": ("sigma", "σ", "esd", "err", "error", "uncertainty", "sigmai", "sig", "dy", "e", "stderr",
              "std"),
}


def _column_key(name: str) -> str:
    name = re.sub(r"[(\[].*?[)\]]", "", name.strip().lower())
    return re.sub(r"[\s_\-]", "", name)


def _header_names(header: list[str], ncols: int, delimiter: str | None) -> list[str] | None:
    """The column names of the last header line with one name per column, if any."""
    for line in reversed(header):
        text = line.lstrip("#!;'\" ").strip()
        names = [n.strip() for n in (text.split(delimiter) if delimiter else text.split())]
        if len(names) == ncols and all(names):
            return names
    return None


def _choose_columns(
    path: Path, ncols: int, names: list[str] | None, columns: Sequence[int | str] | None
) -> list[int]:
    """Indices of the 2θ, I (and σ) columns: ``columns`` as given (indices or header names),
    else by the header's names, else the two columns of a two-column file or the three of an
    ``.xye`` file; anything else is not guessed."""
    keys = None if names is None else [_column_key(n) for n in names]
    if columns is not None:
        if len(columns) not in (2, 3):
            raise ValueError(f"{path}: columns= names 2θ, I and optionally σ; got {list(columns)}")
        out = []
        for c in columns:
            if isinstance(c, str) and not c.strip().lstrip("-").isdigit():
                if keys is None or _column_key(c) not in keys:
                    raise ValueError(f"{path}: no column named {c!r} (the header names {names or 'none'})")
                out.append(keys.index(_column_key(c)))
            else:
                i = int(c)
                if not 0 <= i < ncols:
                    raise ValueError(f"{path}: column {i} does not exist; the file has {ncols} "
                                     f"(0–{ncols - 1})")
                out.append(i)
        return out
    if ncols == 2:
        return [0, 1]
    if keys is not None:
        found = {role: next((i for i, k in enumerate(keys) if k in accepted), None)
                 for role, accepted in COLUMN_NAMES.items()}
        if found["two_theta"] is not None and found["intensity"] is not None:
            sigma = [] if found["sigma"] is None else [found["sigma"]]
            return [found["two_theta"], found["intensity"], *sigma]
    if path.suffix.lower() == ".xye" and ncols == 3:
        return [0, 1, 2]
    named = f" named {names}" if names else " and no header naming them"
    raise ValueError(
        f"{path}: {ncols} columns{named}: which hold 2θ, I and σ is not guessed; pass columns= "
        "(--columns), e.g. 0,1,2 when the third is σ, or 0,1 to use only the first two"
    )


def _load_columns(path: Path, suffix: str, columns: Sequence[int | str] | None
                  ) -> tuple[list[np.ndarray], float | None, tuple[str, str] | None]:
    """The 2θ, I (and σ) columns of a pattern file, the wavelength it states (Å) and the
    (radiation, anode) its header names (:func:`_radiation_from_header`; None where it
    states none)."""
    stated: float | None = None
    radiation: tuple[str, str] | None = None
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = {"two_theta", "intensity"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: npz lacks {sorted(missing)} (has {z.files})")
            if z["intensity"].ndim != 1:
                raise ValueError(f"{path}: intensity has shape {z['intensity'].shape}; one pattern per "
                                 "file")
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
        delimiter = "," if suffix == ".csv" else None
        data, header = _read_text_columns(path, delimiter)
        if data.shape[1] < 2:
            raise ValueError(f"{path}: need at least 2 columns (2θ, I), got {data.shape[1]}")
        names = _header_names(header, data.shape[1], delimiter)
        cols = [data[:, i] for i in _choose_columns(path, data.shape[1], names, columns)]
        stated = _wavelength_from_header(header, path)
        radiation = _radiation_from_header(header)
    return cols, stated, radiation


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Let a ``ValueError``, ``TypeError`` or ``FileNotFoundError`` raised inside name ``path``
    first (as every error about a file does), unless it already does."""
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError) as exc:
        if str(exc).startswith(str(path)):
            raise
        raise type(exc)(f"{path}: {exc}") from None


def read_pattern(
    path: str | Path, wavelength: float | None = None, *, columns: Sequence[int | str] | None = None
) -> Pattern:
    """Read a powder pattern from ``.xy``, ``.xye``, ``.dat``, ``.txt``, ``.csv``, ``.npy`` or ``.npz``.

    Text files hold columns of numbers below a header (lines starting with ``#`` or any
    non-numeric line). Which columns hold 2θ (degrees), I and optionally σ is taken from
    ``columns``, else from the column names of the header (:data:`COLUMN_NAMES`), else a
    file of two columns is 2θ, I and an ``.xye`` file of three is 2θ, I, σ; more columns
    than that without names are an error. σ = 0 on a point of zero counts (as ``.xye``
    writers give it) is taken as σ = 1 count.

    A header line such as ``# wavelength: 0.7293`` states the wavelength (Å unless it says
    nm or pm), one such as ``# energy: 17 keV`` the photon energy (keV or eV; the unit is
    required); one such as ``# radiation: Cu`` or ``Cu Kα`` names the tube anode, kept as
    ``meta["radiation"]`` (``"mono"`` where it names Kα1 alone, ``Cu Kα1``; the caller
    decides what it implies), and without a stated wavelength the pattern's is that
    anode's Kα1 (:data:`ANODE_KA1_ANGSTROM`). ``.npy`` holds an array of
    shape (2, n), (3, n), (n, 2) or (n, 3); ``.npz`` holds ``two_theta``, ``intensity``,
    optional ``sigma`` and optional ``wavelength``.

    Parameters
    ----------
    path : str or Path
        File to read.
    wavelength : float, optional
        λ in Å. Overrides a wavelength stated in the file. Required when the file states
        neither a wavelength nor an anode.
    columns : sequence of int or str, optional
        The 2θ, I (and σ) columns of a text file: 0-based indices or header names.

    Raises
    ------
    ValueError
        Unknown suffix, unreadable numbers, wrong shape, columns that cannot be told apart,
        a header wavelength or energy without a known unit, or no wavelength anywhere; plus
        the checks of :class:`Pattern`. Every message starts with the file's path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of {_SUFFIXES}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with naming(path):  # e.g. numpy refusing a pickled object array
        try:
            cols, stated, named = _load_columns(path, suffix, columns)
        except (OSError, EOFError) as exc:  # a truncated or foreign binary file
            raise ValueError(f"{path}: cannot be read as {suffix} ({exc})") from None
    radiation, anode = named or (None, None)
    lam = wavelength if wavelength is not None else stated
    if lam is None and anode is not None:
        lam = ANODE_KA1_ANGSTROM[anode]
    if lam is None:
        raise ValueError(
            f"{path}: the file states no wavelength and no anode, and none was given: give the "
            "wavelength in Å or the X-ray tube's anode"
        )
    sigma = cols[2] if len(cols) > 2 else None
    meta: dict[str, Any] = {"source": str(path)} | ({"radiation": radiation} if radiation else {})
    if sigma is not None:
        zero = (np.asarray(sigma) == 0) & (np.asarray(cols[1]) == 0)
        if zero.any():  # no counts: the Poisson σ of √max(I, 1)
            sigma = np.where(zero, 1.0, sigma)
            meta["sigma_of_zero_counts"] = int(zero.sum())
    with naming(path):
        return Pattern(cols[0], cols[1], lam, sigma=sigma, meta=meta)


# ------------------------------------------------------------------------- signal


def signal_problem(pattern: Pattern, min_peak_sigma: float | None = 8.0) -> str | None:
    """Why ``pattern`` holds no diffraction signal to classify, or None when it has some.

    In order: a constant (an all-zero frame too); no positive value; mostly negative
    values larger than the positive ones (a sign-flipped pattern); and, unless ``min_peak_sigma`` is None, no
    point more than ``min_peak_sigma`` noise standard deviations above a running median
    of the profile (background only). The noise is the MAD of successive differences
    (robust to the peaks themselves). 8 500 points of pure noise reach 4.5 σ (Gaussian)
    to 7.6 σ (Poisson, 5 counts per point); the 454 measured RRUFF patterns of the dev
    set all exceed 10 σ (``tests/unit/patterns/test_signal.py``).
    """
    from scipy.ndimage import median_filter

    y = np.asarray(pattern.intensity, float)
    if np.ptp(y) == 0:
        return f"the intensity is constant ({y[0]:g}) everywhere"
    if not (y > 0).any():
        return f"no positive intensity: every value is ≤ 0 (down to {y.min():.3g}): a sign-flipped pattern?"
    if np.median(y) < 0 and -y.min() > y.max():
        return (f"most intensities are negative (median {np.median(y):.3g}, minimum {y.min():.3g} "
                f"against a maximum of {y.max():.3g}): a sign-flipped pattern?")
    if min_peak_sigma is None:
        return None
    noise = 1.4826 * float(np.median(np.abs(np.diff(y) - np.median(np.diff(y))))) / math.sqrt(2.0)
    if noise <= 0:
        noise = float(np.std(np.diff(y))) / math.sqrt(2.0)
    window = max(51, (y.size // 20) | 1)
    excess = float(np.max(y - median_filter(y, size=window, mode="nearest")))
    if noise > 0 and excess < min_peak_sigma * noise:
        return (f"no peak above the noise: the highest point is {excess / noise:.1f} σ above the "
                f"background, fewer than {min_peak_sigma:g}")
    return None


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
