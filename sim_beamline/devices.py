"""Ophyd devices of the simulated powder beamline: a detector and a sample changer.

The detector's frame comes from :func:`ratagent.simulation.pattern.simulate_pattern`, the
same physics that renders the training data. Its 2θ axis and wavelength are
*configuration* signals, so they travel in every descriptor, as on a real beamline; the
count time is read with every frame (it changes within a run when the agent asks for more).
Exposure takes ``count_time × time_scale`` seconds of real time (``time_scale`` < 1 in
tests), and the counts at the strongest Bragg point are
``flux_counts_per_s × count_time × sample.scattering_power`` (Poisson noise, so the
signal-to-noise grows as √count_time).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, DeviceStatus, Kind, Signal

from ratagent.instrument import Instrument
from sim_beamline.samples import Sample, mineral_sample

__all__ = ["FAULTS", "PowderDetector", "SampleChanger"]

logger = logging.getLogger(__name__)

#: Faults :meth:`PowderDetector.inject_fault` can put into the next frame.
FAULTS = ("nan", "short", "long", "empty", "2d", "error")
_NO_CELL = np.full(6, np.nan)


class SampleChanger(Device):
    """A sample changer holding samples by name; ``set(name)`` mounts one.

    Parameters
    ----------
    samples : sequence of Sample
        What is in the magazine (default: none; add with :meth:`load`).
    move_time : float
        Seconds of real time a change takes.
    """

    sample_name = Cpt(Signal, value="", kind=Kind.hinted)
    cell = Cpt(Signal, value=_NO_CELL.copy(), kind=Kind.normal)  # a, b, c (Å), α, β, γ (°); NaN: unknown

    def __init__(self, *args, samples=(), move_time: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.magazine: dict[str, Sample] = {}
        self.move_time = float(move_time)
        self.current: Sample | None = None
        for s in samples:
            self.load(s)

    def load(self, sample: Sample) -> None:
        """Put a sample into the magazine."""
        self.magazine[sample.name] = sample

    def check_sample(self, name: str) -> None:
        """Raise ``ValueError`` when ``name`` is neither in the magazine nor a library mineral."""
        if name not in self.magazine:
            mineral_sample(name)  # ValueError names the library if unknown

    def set(self, name: str) -> DeviceStatus:
        """Mount sample ``name`` (a library mineral name is loaded on demand)."""
        if name not in self.magazine:
            self.load(mineral_sample(name))  # ValueError names the library if unknown
        status = DeviceStatus(self)

        def move() -> None:
            time.sleep(self.move_time)
            sample = self.magazine[name]
            self.current = sample
            self.sample_name.put(sample.name)
            self.cell.put(np.asarray(sample.cell if sample.cell is not None else _NO_CELL, float))
            status.set_finished()

        threading.Thread(target=move, daemon=True, name="sim-changer").start()
        return status


class PowderDetector(Device):
    """A 1-D powder detector: one frame of intensities on a fixed 2θ axis per trigger.

    Parameters
    ----------
    changer : SampleChanger, optional
        Where the mounted sample comes from; else set :attr:`sample`.
    instrument : Instrument
        Geometry, radiation, aberrations and profile (default: Cu Kα1/Kα2, 5–90°, 0.01°).
    flux_counts_per_s : float
        Counts per second at the strongest Bragg point of an ordinary sample.
    time_scale : float
        Real seconds per second of count time (1: real time; small in tests).
    rng : numpy.random.Generator, optional
        Drives the counting noise (default: unseeded).
    """

    intensity = Cpt(Signal, value=np.zeros(0), kind=Kind.normal)
    two_theta = Cpt(Signal, value=np.zeros(0), kind=Kind.config)  # degrees
    wavelength = Cpt(Signal, value=0.0, kind=Kind.config)  # Å (Kα1 of a tube)
    radiation = Cpt(Signal, value="mono", kind=Kind.config)  # tube anode ("Cu": Kα1/Kα2) or "mono"
    count_time = Cpt(Signal, value=1.0, kind=Kind.normal)  # s, read with every frame
    # the sample set on ``sample`` (without a changer): its name, and its cell (NaN: unknown)
    sample_name = Cpt(Signal, value="", kind=Kind.config)
    cell = Cpt(Signal, value=_NO_CELL, kind=Kind.config)

    def __init__(self, *args, changer: SampleChanger | None = None, instrument: Instrument | None = None,
                 flux_counts_per_s: float = 2000.0, time_scale: float = 1.0,
                 rng: np.random.Generator | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not flux_counts_per_s > 0:
            raise ValueError(f"flux_counts_per_s must be positive, got {flux_counts_per_s}")
        if not time_scale >= 0:
            raise ValueError(f"time_scale must be >= 0, got {time_scale}")
        self.instrument = instrument if instrument is not None else Instrument()
        self.changer = changer
        self._sample: Sample | None = None
        self.flux_counts_per_s = float(flux_counts_per_s)
        self.time_scale = float(time_scale)
        self.rng = rng if rng is not None else np.random.default_rng()
        self._fault: str | None = None
        self.two_theta.put(self.instrument.two_theta)
        self.wavelength.put(self.instrument.wavelength)
        self.radiation.put(self.instrument.anode or "mono")
        self.intensity.put(np.zeros(self.instrument.two_theta.size))

    def describe(self):
        out = super().describe()
        n = self.instrument.two_theta.size
        out[self.intensity.name].update(shape=[n], dtype="array", dtype_numpy="<f8")
        return out

    def inject_fault(self, fault: str) -> None:
        """Make the next frame faulty: NaN counts, a short, long, empty or 2-D frame, or a failed
        readout."""
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
        self._fault = fault

    @property
    def sample(self) -> Sample | None:
        """The sample in the beam when there is no changer (its name and cell are the
        ``sample_name`` and ``cell`` configuration of the detector)."""
        return self._sample

    @sample.setter
    def sample(self, sample: Sample | None) -> None:
        self._sample = sample
        self.sample_name.put("" if sample is None else sample.name)
        known = sample is not None and sample.cell is not None
        self.cell.put(np.asarray(sample.cell if known else _NO_CELL, float))

    def mounted(self) -> Sample:
        """The sample in the beam."""
        sample = self.changer.current if self.changer is not None else self._sample
        if sample is None:
            raise RuntimeError(f"{self.name}: no sample mounted")
        return sample

    def trigger(self) -> DeviceStatus:
        status = DeviceStatus(self)
        fault, self._fault = self._fault, None
        count_time = float(self.count_time.get())

        def expose() -> None:
            try:
                time.sleep(count_time * self.time_scale)
                if fault == "error":
                    raise RuntimeError(f"{self.name}: detector readout failed (injected fault)")
                frame = self.frame(count_time)
                if fault == "nan":
                    frame[frame.size // 3 : frame.size // 3 + 5] = np.nan
                elif fault == "short":
                    frame = frame[: frame.size // 2]
                elif fault == "long":
                    frame = np.concatenate([frame, frame[-10:]])
                elif fault == "empty":
                    frame = frame[:0]
                elif fault == "2d":
                    frame = np.stack([frame, frame])
                self.intensity.put(frame)
            except Exception as exc:
                status.set_exception(exc)
            else:
                status.set_finished()

        threading.Thread(target=expose, daemon=True, name="sim-detector").start()
        return status

    def frame(self, count_time: float) -> np.ndarray:
        """Simulated counts for ``count_time`` s on the mounted sample (no sleeping)."""
        from ratagent.simulation.pattern import simulate_pattern

        if not count_time > 0:
            raise ValueError(f"count_time must be positive, got {count_time}")
        s = self.mounted()
        counts = self.flux_counts_per_s * count_time * s.scattering_power
        p = simulate_pattern(s.record, self.instrument, self.rng, counts=counts, background=s.background,
                             impurity=s.impurity, impurity_fraction=s.impurity_fraction)
        return np.asarray(p.intensity, float).copy()
