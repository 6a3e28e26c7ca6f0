"""The simulated powder detector as an ophyd-async device.

:class:`AsyncPowderDetector` is an ophyd-async ``StandardReadable`` with the shape of a
beamline's 1-D detector written for ophyd-async: a settable ``acquire_time``, a
``spectrum`` read with every trigger, and its 2θ axis, wavelength and radiation as
configuration signals. Signals are named the ophyd-async way (``det-spectrum``). The
counts are those of :class:`sim_beamline.devices.PowderDetector` (the same physics and
noise), computed off the event loop.
"""

from __future__ import annotations

import asyncio

import numpy as np
from ophyd_async.core import Array1D, AsyncStatus, StandardReadable, soft_signal_r_and_setter, soft_signal_rw
from ophyd_async.core import StandardReadableFormat as Format

from ratagent.instrument import Instrument
from sim_beamline.devices import PowderDetector
from sim_beamline.samples import Sample

__all__ = ["AsyncPowderDetector"]


class AsyncPowderDetector(StandardReadable):
    """A 1-D powder detector on ophyd-async; connect it in the RunEngine's loop
    (``init_devices``, or ``call_in_bluesky_event_loop(det.connect())``) before use.

    Parameters
    ----------
    instrument : Instrument
        Geometry, radiation and profile (default: Cu Kα1/Kα2, 5–90°, 0.01°).
    flux_counts_per_s, time_scale, rng
        As for :class:`~sim_beamline.devices.PowderDetector`.
    name : str
        The device name (signals are ``{name}-spectrum``, ``{name}-acquire_time``, …).
    """

    def __init__(self, *, instrument: Instrument | None = None, flux_counts_per_s: float = 2000.0,
                 time_scale: float = 1.0, rng: np.random.Generator | None = None, name: str = "") -> None:
        self._physics = PowderDetector(name=f"{name}_physics", instrument=instrument,
                                       flux_counts_per_s=flux_counts_per_s, time_scale=0.0, rng=rng)
        self.time_scale = float(time_scale)
        inst = self._physics.instrument
        with self.add_children_as_readables():
            self.spectrum, self._set_spectrum = soft_signal_r_and_setter(
                Array1D[np.float64], np.zeros(inst.two_theta.size))
            self.acquire_time = soft_signal_rw(float, 1.0, units="s")
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.two_theta = soft_signal_rw(Array1D[np.float64], inst.two_theta.astype(np.float64),
                                            units="deg")
            self.wavelength = soft_signal_rw(float, inst.wavelength, units="angstrom")
            self.radiation = soft_signal_rw(str, inst.anode or "mono")
        super().__init__(name=name)

    @property
    def sample(self) -> Sample | None:
        """The sample in the beam."""
        return self._physics.sample

    @sample.setter
    def sample(self, sample: Sample | None) -> None:
        self._physics.sample = sample

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        t = await self.acquire_time.get_value()
        await asyncio.sleep(t * self.time_scale)
        frame = await asyncio.to_thread(self._physics.frame, t)
        self._set_spectrum(frame)
