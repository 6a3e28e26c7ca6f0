"""Where a frame's pieces come from at a beamline: any 1-D detector, its 2θ axis, the wavelength.

A powder pattern needs more than the detector's counts: the 2θ of every channel (from the
detector's calibration) and the wavelength (from the monochromator, or the tube's
anode). :func:`frame_source` finds each piece on the devices a beamline has, or takes it
as given, and checks before the first exposure that every piece is there: a
misconfigured scan raises an error naming what is missing, instead of running and
flagging every frame.

* the exposure: any settable signal (default ``detector.count_time``, else
  ``detector.acquire_time``, else ``detector.cam.acquire_time`` of an area detector);
* the pattern: ``field`` (a signal or its data key), else the detector's only
  one-dimensional field;
* the 2θ axis: an array or a signal of any device (read once, stored in the
  descriptor's configuration), else the detector's ``two_theta`` configuration;
* the wavelength: a number or a signal of any device (read with every frame, e.g.
  :func:`wavelength_from_energy` of a monochromator's energy), else the detector's
  ``wavelength`` configuration.

Data keys come from the signals' own names, so the same code serves any naming scheme
(``det_x`` in ophyd, ``det-x`` in ophyd-async). Inside a plan, :func:`read_frame_source`
reads the description and configuration through RunEngine messages, so an ophyd-async
device's coroutines are awaited in the RunEngine's loop.
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

__all__ = ["FrameSource", "WavelengthFromEnergy", "awaited", "exposure_signal", "frame_source",
           "read_frame_source", "wavelength_from_energy"]


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
    radiation: str | None = None  # the detector's ``radiation`` configuration, where it states one

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
    """An ophyd signal (``get``) or an ophyd-async one (``get_value``)."""
    return (hasattr(x, "get") or hasattr(x, "get_value")) and hasattr(x, "name")


def exposure_signal(detector, exposure=None):
    """``exposure``, else the detector's ``count_time``, ``acquire_time`` or ``cam.acquire_time``.

    Raises
    ------
    ValueError
        None of them is a settable signal.
    TypeError
        An ophyd-async ``StandardDetector`` (its exposure is prepared, its frames are files).
    """
    if exposure is None:
        found = (_attr(detector, a) for a in ("count_time", "acquire_time", "cam.acquire_time"))
        exposure = next((s for s in found if s is not None), None)
    if exposure is None and _is_async(detector) and hasattr(detector, "prepare"):
        raise TypeError(f"{detector.name} is an ophyd-async StandardDetector (exposure set through prepare("
                        "TriggerInfo), frames written to files): symmetry_scan assesses 1-D patterns read in "
                        "its events from a device with an exposure signal (ophyd, or ophyd-async "
                        "StandardReadable); integrate the frames into such a device (plans.IntegratedPowder "
                        "for ophyd area detectors), or pass exposure= and a device that reads its pattern")
    if exposure is None or not hasattr(exposure, "set"):
        raise ValueError(f"{detector.name} has no count_time, acquire_time or cam.acquire_time signal: pass "
                         "exposure= (the settable signal of its exposure time, s)")
    return exposure


def _is_async(device) -> bool:
    return inspect.iscoroutinefunction(getattr(device, "describe", None))


def frame_source(detector, *, field=None, exposure=None, two_theta=None, wavelength=None) -> FrameSource:
    """Find (or take) each piece of a frame for an ophyd ``detector``; raise before any
    exposure when one is missing (module docstring). Inside a plan, and for ophyd-async
    devices, use :func:`read_frame_source`.

    Raises
    ------
    ValueError
        No exposure signal, no (or no single) one-dimensional field, no 2θ axis or no
        wavelength: each message names the detector and the argument that supplies it.
    TypeError
        An asynchronous (ophyd-async) device, or a pattern written to external resources.
    """
    if _is_async(detector):
        raise TypeError(f"{detector.name} is an asynchronous (ophyd-async) device: its description is "
                        "read through the RunEngine, with read_frame_source inside a plan")
    exposure = exposure_signal(detector, exposure)
    values = {s.name: s.get() for s in (two_theta, wavelength) if _is_signal(s)}
    return _resolve(detector, exposure, detector.describe(), detector.read_configuration(), values,
                    field=field, two_theta=two_theta, wavelength=wavelength)


def read_frame_source(detector, *, field=None, exposure=None, two_theta=None, wavelength=None):
    """Plan: :func:`frame_source` for any device, ophyd or ophyd-async, read through RunEngine
    messages (its description, configuration and the given signals); returns the
    :class:`FrameSource`. Nothing is exposed, and no document is emitted."""
    from bluesky.plan_stubs import rd

    exposure = exposure_signal(detector, exposure)
    described = yield from awaited(detector.describe)
    config = yield from awaited(detector.read_configuration)
    values = {}
    for s in (two_theta, wavelength):
        if _is_signal(s):
            values[s.name] = yield from rd(s)
    return _resolve(detector, exposure, described, config, values, field=field, two_theta=two_theta,
                    wavelength=wavelength)


def awaited(fn):
    """Plan: the result of ``fn()``, awaited in the RunEngine's event loop when it is a
    coroutine (an ophyd-async device's ``describe``), called there when it is not."""
    from bluesky.plan_stubs import wait_for
    from bluesky.utils import maybe_await

    box: dict[str, Any] = {}

    async def call() -> None:
        try:
            box["value"] = await maybe_await(fn())
        except Exception as exc:  # asyncio.wait keeps it: hand it to the plan
            box["error"] = exc

    yield from wait_for([call])
    if "error" in box:
        raise box["error"]
    if "value" not in box:
        raise RuntimeError(f"{fn!r} was not called: run the plan in a bluesky RunEngine")
    return box["value"]


def _own_key(detector, attribute: str) -> str:
    """The data key of ``detector.<attribute>`` (a signal's own name: ophyd ``det_x``,
    ophyd-async ``det-x``), else ``{name}_{attribute}``."""
    signal = getattr(detector, attribute, None)
    return signal.name if _is_signal(signal) else f"{detector.name}_{attribute}"


def _resolve(detector, exposure, described: dict, config: dict, values: dict, *, field, two_theta,
             wavelength) -> FrameSource:
    """The :class:`FrameSource` from a detector's description and configuration and the
    values of the signals given as ``two_theta`` and ``wavelength``."""
    name = detector.name
    external = sorted(k for k, dk in described.items() if dk.get("external"))
    if field is None:
        arrays = [k for k, dk in described.items() if len(dk.get("shape") or []) == 1 and k not in external]
        if len(arrays) != 1:
            also = (f"; {external} are written to external resources (frames in files), which "
                    "symmetry_scan does not read" if external else "")
            raise ValueError(f"cannot tell which field of {name} is the pattern: one-dimensional fields "
                             f"{arrays}{also}; pass field= (the signal or its data key)")
        field = arrays[0]
    field = _key(field, "field")
    if field not in described:
        raise ValueError(f"field {field!r} is not read from {name} (its fields: {sorted(described)})")
    if field in external:
        raise TypeError(f"{name} writes {field!r} to an external resource ({described[field]['external']}): "
                        "symmetry_scan assesses patterns that arrive in the events; integrate or read the "
                        "frame into a signal of a device (plans.IntegratedPowder for area detectors)")
    stated: dict[str, Any] = {}
    readables = []
    if two_theta is None:
        two_theta_key = _own_key(detector, "two_theta")
        if two_theta_key not in config:
            raise ValueError(f"{name} states no 2θ axis (no {two_theta_key!r} configuration): pass "
                             "two_theta= (an array in degrees, or the signal of the detector's calibration)")
    else:
        two_theta_key = two_theta.name if _is_signal(two_theta) else "two_theta"
        value = np.asarray(values[two_theta_key] if _is_signal(two_theta) else two_theta, float)
        if value.ndim != 1 or value.size < 2 or not np.isfinite(value).all():
            raise ValueError(f"two_theta for {name} must be a finite 1-D axis in degrees, got shape "
                             f"{value.shape}")
        stated[two_theta_key] = value
    if wavelength is None:
        wavelength_key = _own_key(detector, "wavelength")
        if wavelength_key not in config:
            raise ValueError(f"{name} states no wavelength (no {wavelength_key!r} configuration): pass "
                             "wavelength= (Å, or a signal such as wavelength_from_energy(mono.energy))")
        known = config[wavelength_key]["value"]
    elif _is_signal(wavelength):
        wavelength_key = wavelength.name
        readables.append(wavelength)
        known = values[wavelength_key]
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
    radiation = config.get(_own_key(detector, "radiation"), {}).get("value")
    return FrameSource(detector, exposure, field, two_theta_key, wavelength_key, known, readables,
                       None if radiation is None else str(radiation))
