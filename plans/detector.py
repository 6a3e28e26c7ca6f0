"""Where a frame's pieces come from at a beamline: any 1-D detector, its 2θ axis, the wavelength.

A powder pattern needs more than the detector's counts: the 2θ of every channel (from the
detector's calibration) and the wavelength (from the monochromator, or the tube's
anode). :func:`frame_source` finds each piece on the devices a beamline has, or takes it
as given, and checks before the first exposure that every piece is there: a
misconfigured scan raises an error naming what is missing, instead of running and
flagging every frame.

* the exposure: any settable signal (default ``detector.count_time``, else
  ``detector.cam.acquire_time`` of an area detector);
* the pattern: ``field`` (a signal or its data key), else the detector's only
  one-dimensional field;
* the 2θ axis: an array or a signal of any device (read once, stored in the
  descriptor's configuration), else the detector's ``two_theta`` configuration;
* the wavelength: a number or a signal of any device (read with every frame, e.g.
  :func:`wavelength_from_energy` of a monochromator's energy), else the detector's
  ``wavelength`` configuration.

Data keys come from the signals' own names, so the same code serves any naming scheme.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ophyd import DerivedSignal

from ratagent.patterns import HC_KEV_ANGSTROM

__all__ = ["FrameSource", "WavelengthFromEnergy", "frame_source", "wavelength_from_energy"]


class WavelengthFromEnergy(DerivedSignal):
    """The wavelength (Å) of a monochromator whose energy signal is in keV: λ = hc / E."""

    def forward(self, value):
        return HC_KEV_ANGSTROM / value

    def inverse(self, value):
        return HC_KEV_ANGSTROM / value


def wavelength_from_energy(energy, name: str | None = None) -> WavelengthFromEnergy:
    """A wavelength signal (Å) derived from a monochromator's ``energy`` signal in keV."""
    return WavelengthFromEnergy(derived_from=energy, name=name or f"{energy.name}_wavelength")


class _Stated:
    """A readable with no data, only configuration: values a scan was given (a 2θ axis, a
    wavelength), stored in the descriptor of the stream it is read in."""

    parent = None

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self.name = name
        self._values = values

    def read(self) -> dict[str, dict[str, Any]]:
        return {}

    def describe(self) -> dict[str, dict[str, Any]]:
        return {}

    def read_configuration(self) -> dict[str, dict[str, Any]]:
        t = time.time()
        return {k: {"value": v, "timestamp": t} for k, v in self._values.items()}

    def describe_configuration(self) -> dict[str, dict[str, Any]]:
        out = {}
        for k, v in self._values.items():
            a = np.asarray(v)
            dk = {"dtype": "array", "dtype_numpy": a.dtype.str} if a.ndim else {"dtype": "number"}
            out[k] = {"source": "ratagent:given", "shape": list(a.shape), **dk}
        return out


@dataclass
class FrameSource:
    """What :func:`symmetry_scan` reads, sets and hands the callback for one detector."""

    detector: Any
    exposure: Any  # settable signal, seconds
    field: str  # data key of the intensities
    two_theta_key: str
    wavelength_key: str
    wavelength: float  # Å before the first exposure (a signal's value may change with every frame)
    readables: list = field(default_factory=list)  # read with every frame, besides the detector

    @property
    def count_time_key(self) -> str:
        return self.exposure.name


def _attr(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _key(x, what: str) -> str:
    name = x if isinstance(x, str) else getattr(x, "name", None)
    if not name:
        raise TypeError(f"{what} must be a signal or a data key, got {x!r}")
    return name


def _is_signal(x) -> bool:
    return hasattr(x, "get") and hasattr(x, "name")


def frame_source(detector, *, field=None, exposure=None, two_theta=None, wavelength=None) -> FrameSource:
    """Find (or take) each piece of a frame for ``detector``; raise before any exposure when
    one is missing (module docstring).

    Raises
    ------
    ValueError
        No exposure signal, no (or no single) one-dimensional field, no 2θ axis or no
        wavelength: each message names the detector and the argument that supplies it.
    TypeError
        An asynchronous (ophyd-async) device, which is not supported yet.
    """
    name = detector.name
    if inspect.iscoroutinefunction(getattr(detector, "describe", None)):
        raise TypeError(f"{name} is an asynchronous (ophyd-async) device: symmetry_scan reads ophyd "
                        "devices whose read() and describe() return at once; wrap its pattern in an ophyd "
                        "Signal, or pass an ophyd device")
    exposure = exposure if exposure is not None else (_attr(detector, "count_time")
                                                      or _attr(detector, "cam.acquire_time"))
    if exposure is None or not hasattr(exposure, "set"):
        raise ValueError(f"{name} has no count_time or cam.acquire_time signal: pass exposure= (the "
                         "settable signal of its exposure time, s)")
    described = detector.describe()
    if field is None:
        arrays = [k for k, dk in described.items() if len(dk.get("shape") or []) == 1]
        if len(arrays) != 1:
            raise ValueError(f"cannot tell which field of {name} is the pattern: one-dimensional fields "
                             f"{arrays}; pass field= (the signal or its data key)")
        field = arrays[0]
    field = _key(field, "field")
    if field not in described:
        raise ValueError(f"field {field!r} is not read from {name} (its fields: {sorted(described)})")
    config = detector.read_configuration()
    stated: dict[str, Any] = {}
    readables = []
    if two_theta is None:
        two_theta_key = f"{name}_two_theta"
        if two_theta_key not in config:
            raise ValueError(f"{name} states no 2θ axis (no {two_theta_key!r} configuration): pass "
                             "two_theta= (an array in degrees, or the signal of the detector's calibration)")
    else:
        two_theta_key = two_theta.name if _is_signal(two_theta) else "two_theta"
        value = np.asarray(two_theta.get() if _is_signal(two_theta) else two_theta, float)
        if value.ndim != 1 or value.size < 2 or not np.isfinite(value).all():
            raise ValueError(f"two_theta for {name} must be a finite 1-D axis in degrees, got shape "
                             f"{value.shape}")
        stated[two_theta_key] = value
    if wavelength is None:
        wavelength_key = f"{name}_wavelength"
        if wavelength_key not in config:
            raise ValueError(f"{name} states no wavelength (no {wavelength_key!r} configuration): pass "
                             "wavelength= (Å, or a signal such as wavelength_from_energy(mono.energy))")
        known = config[wavelength_key]["value"]
    elif _is_signal(wavelength):
        wavelength_key = wavelength.name
        readables.append(wavelength)
        known = wavelength.get()
    else:
        wavelength_key = "wavelength"
        known = stated[wavelength_key] = wavelength
    try:
        known = float(known)
    except (TypeError, ValueError):
        known = math.nan
    if not (math.isfinite(known) and known > 0):
        raise ValueError(f"{wavelength_key} reads {known!r} Å for {name}: not a wavelength (ratagent never "
                         "assumes one)")
    if stated:
        readables.append(_Stated(f"{name}_given", stated))
    return FrameSource(detector, exposure, field, two_theta_key, wavelength_key, known, readables)
