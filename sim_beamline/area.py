"""A simulated area detector (ophyd ``areadetector``) that records Debye–Scherrer rings.

:class:`SimAreaDetector` is an ``ophyd.areadetector`` detector (``SingleTrigger`` +
``DetectorBase`` with a ``SimDetectorCam`` and an ``ImagePlugin``) made with
:func:`ophyd.sim.make_fake_device`: the same class a beamline uses, with its EPICS
signals replaced by in-memory ones, and a small simulated IOC behind them. Staging
applies the real stage signatures (image mode, plugin enable, array callbacks);
``cam.acquire`` set to 1 exposes for ``cam.acquire_time`` and drops back to 0 when the
image is in ``image.array_data``, as the IOC does.

The image is the mounted sample's powder pattern (the physics of
:func:`ratagent.simulation.pattern.simulate_pattern`, one monochromatic line) evaluated
at every pixel's 2θ from a pyFAI geometry, times each pixel's solid angle, with Poisson
noise: integrating it with the same geometry gives back the 1-D pattern.
:func:`strip_geometry` is a synchrotron-like default geometry (a wide, short flat
detector, 2°–40° in 2θ).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from ophyd.areadetector import DetectorBase, ImagePlugin, SimDetectorCam, SingleTrigger
from ophyd.areadetector.base import ADComponent
from ophyd.sim import make_fake_device

from ratagent.instrument import Instrument
from sim_beamline.devices import SampleChanger
from sim_beamline.samples import Sample

__all__ = ["SimAreaDetector", "strip_geometry"]

logger = logging.getLogger(__name__)


def strip_geometry(wavelength_angstrom: float = 0.7293, *, shape: tuple[int, int] = (48, 2400),
                   pixel_m: float = 100e-6, distance_m: float = 0.3, two_theta_min_deg: float = 2.0):
    """A pyFAI ``AzimuthalIntegrator`` for a flat detector beside the direct beam.

    The detector (``shape`` pixels, rows × columns, of ``pixel_m``) stands ``distance_m``
    from the sample, square to the beam, its first column at ``two_theta_min_deg`` and the
    beam at the height of its middle row: the columns run out in 2θ.
    """
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    detector = Detector(pixel1=pixel_m, pixel2=pixel_m, max_shape=shape)
    poni2 = -distance_m * np.tan(np.radians(two_theta_min_deg))  # the beam left of column 0
    return AzimuthalIntegrator(dist=distance_m, poni1=shape[0] / 2 * pixel_m, poni2=poni2,
                               detector=detector, wavelength=wavelength_angstrom * 1e-10)


class _PowderAreaDetector(SingleTrigger, DetectorBase):
    """An areaDetector as a beamline's profile declares it: a simulation cam and an image plugin."""

    cam = ADComponent(SimDetectorCam, "cam1:")
    image = ADComponent(ImagePlugin, "image1:")


class SimAreaDetector(make_fake_device(_PowderAreaDetector)):
    """An ``ophyd.areadetector`` detector imaging the powder rings of the mounted sample.

    Parameters
    ----------
    prefix : str
        The (fake) EPICS prefix.
    geometry : pyFAI AzimuthalIntegrator, optional
        Where the detector stands and the wavelength (default :func:`strip_geometry`).
    changer : SampleChanger, optional
        Where the mounted sample comes from; else set :attr:`sample`.
    flux_counts_per_s : float
        Counts per second in the pixel at the strongest point of the strongest ring.
    time_scale : float
        Real seconds per second of exposure (small in tests).
    rng : numpy.random.Generator, optional
        Drives the counting noise.
    """

    def __init__(self, prefix: str = "SIM:AREA:", *, geometry=None, changer: SampleChanger | None = None,
                 flux_counts_per_s: float = 500.0, time_scale: float = 1.0,
                 rng: np.random.Generator | None = None, **kwargs) -> None:
        super().__init__(prefix, **kwargs)
        self.geometry = geometry if geometry is not None else strip_geometry()
        self.changer = changer
        self.sample: Sample | None = None
        self.flux_counts_per_s = float(flux_counts_per_s)
        self.time_scale = float(time_scale)
        self.rng = rng if rng is not None else np.random.default_rng()
        shape = tuple(int(n) for n in self.geometry.detector.max_shape)
        self._pixel_two_theta = self.geometry.center_array(shape, unit="2th_deg")
        self._solid_angle = self.geometry.solidAngleArray(shape)  # relative to the pixel at the PONI
        lo, hi = float(self._pixel_two_theta.min()), float(self._pixel_two_theta.max())
        self._instrument = Instrument.synchrotron(  # a fine grid over the detector's 2θ, one line
            self.geometry.wavelength * 1e10, two_theta_min_deg=max(lo - 0.1, 0.5), two_theta_max_deg=hi + 0.1,
            step_deg=0.005)
        self._ioc(shape)

    def _ioc(self, shape: tuple[int, int]) -> None:
        """What the IOC would hold and do: plugin identity, enums, sizes, and acquisition."""
        self.image.plugin_type.sim_put("NDPluginStdArrays")
        self.image.enable.sim_set_enum_strs(("Disable", "Enable"))
        self.image.enable.sim_put(0)
        self.cam.acquire_time.sim_put(1.0)
        for signal, n in ((self.cam.array_size.array_size_y, shape[0]),
                          (self.cam.array_size.array_size_x, shape[1]),
                          (self.cam.max_size.max_size_y, shape[0]), (self.cam.max_size.max_size_x, shape[1])):
            signal.sim_put(n)
        self.cam.acquire.sim_set_putter(self._acquire)

    def _acquire(self, value, *args, **kwargs) -> None:
        self.cam.acquire.sim_put(value)
        if value not in (1, "Acquire"):
            return
        t = float(self.cam.acquire_time.get())

        def expose() -> None:
            time.sleep(t * self.time_scale)
            try:
                image = self.image_for(t)
            except Exception:
                logger.exception("%s: the simulated readout failed", self.name)
            else:
                self.image.array_size.height.sim_put(image.shape[0])
                self.image.array_size.width.sim_put(image.shape[1])
                self.image.array_size.depth.sim_put(0)
                self.image.array_data.sim_put(image.ravel())
                self.image.array_counter.sim_put(int(self.image.array_counter.get() or 0) + 1)
            finally:  # the IOC ends the acquisition, image or not
                self.cam.acquire.sim_put(0)

        threading.Thread(target=expose, daemon=True, name="sim-area-detector").start()

    def mounted(self) -> Sample:
        """The sample in the beam."""
        sample = self.changer.current if self.changer is not None else self.sample
        if sample is None:
            raise RuntimeError(f"{self.name}: no sample mounted")
        return sample

    def image_for(self, count_time: float) -> np.ndarray:
        """Simulated counts (rows × columns) for ``count_time`` s on the mounted sample."""
        from ratagent.simulation.pattern import simulate_pattern

        s = self.mounted()
        p = simulate_pattern(s.record, self._instrument, self.rng, background=s.background)
        relative = np.interp(self._pixel_two_theta, p.two_theta, p.intensity)
        expected = self.flux_counts_per_s * count_time * s.scattering_power * relative * self._solid_angle
        return self.rng.poisson(np.clip(expected, 0.0, None)).astype(np.uint32)
