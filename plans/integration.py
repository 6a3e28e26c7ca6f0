"""An area detector as a 1-D powder detector: pyFAI azimuthal integration on every frame.

At a beamline with a 2-D detector, the powder pattern is the image integrated over the
azimuth with the detector's calibrated geometry (a pyFAI PONI file). :class:`IntegratedPowder`
wraps any ``ophyd.areadetector`` detector (or any device with an image signal) so that
:func:`plans.symmetry_scan` reads it as it reads a strip detector::

    import pyFAI
    from plans import IntegratedPowder, symmetry_scan
    powder = IntegratedPowder(det, pyFAI.load("detector.poni"), name="powder")
    RE(symmetry_scan(powder))

Staging the wrapper stages the area detector (its own stage signatures: image mode,
plugins, callbacks); each trigger exposes it for ``count_time`` (its
``cam.acquire_time``), integrates the image and publishes ``pattern`` on the fixed 2θ
axis stated in the configuration, with the wavelength of the geometry. pyFAI is imported
when a wrapper is made (``pip install ratagent[beamline]``).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import DerivedSignal, Device, DeviceStatus, Kind, Signal

__all__ = ["IntegratedPowder"]


class IntegratedPowder(Device):
    """The azimuthally integrated powder pattern of an area detector, one per trigger.

    Parameters
    ----------
    detector : Device
        The area detector (staged, triggered and read through it), e.g. an
        ``ophyd.areadetector`` ``SingleTrigger`` detector with an ``ImagePlugin``.
    integrator : pyFAI AzimuthalIntegrator
        The calibrated geometry and wavelength (``pyFAI.load("detector.poni")``); its
        detector must know its shape (``max_shape``).
    npt : int, optional
        Points of the pattern (default: the longer side of the image in pixels).
    image : object, optional
        Where the image is read after a trigger: an ``ImagePlugin`` (its ``image``) or a
        signal holding the image, flat or 2-D (default: ``detector.image``).
    exposure : signal, optional
        The area detector's settable exposure time, s (default ``detector.cam.acquire_time``).
    mask : array of bool, optional
        Pixels to leave out (True), besides the pyFAI detector's own mask.
    polarization_factor : float, optional
        Passed to pyFAI (None: no polarisation correction).
    name : str
        The device name; data keys are ``{name}_pattern``, ``{name}_count_time``.

    Notes
    -----
    The pattern is pyFAI's mean (solid-angle corrected) intensity of each 2θ bin times the
    median number of pixels in a bin, so that it is on the scale of counts and the
    Poisson σ = √y the agent assumes holds for a typical bin.
    """

    pattern = Cpt(Signal, value=np.zeros(0), kind=Kind.hinted)
    count_time = Cpt(DerivedSignal, derived_from="_exposure", kind=Kind.normal)
    two_theta = Cpt(Signal, value=np.zeros(0), kind=Kind.config)  # degrees
    wavelength = Cpt(Signal, value=0.0, kind=Kind.config)  # Å
    radiation = Cpt(Signal, value="mono", kind=Kind.config)

    def __init__(self, detector, integrator, *, npt: int | None = None, image=None, exposure=None,
                 mask: np.ndarray | None = None, polarization_factor: float | None = None,
                 name: str, **kwargs: Any) -> None:
        exposure = exposure if exposure is not None else getattr(getattr(detector, "cam", None),
                                                                 "acquire_time", None)
        if exposure is None:
            raise ValueError(f"{detector.name} has no cam.acquire_time: pass exposure= (the settable "
                             "signal of its exposure time, s)")
        self._exposure = exposure
        super().__init__(name=name, **kwargs)
        self.detector = detector
        self.integrator = integrator
        self._image = image if image is not None else getattr(detector, "image", None)
        if self._image is None:
            raise ValueError(f"{detector.name} has no image plugin: pass image= (the plugin or signal "
                             "holding its image)")
        self.polarization_factor = polarization_factor
        shape = getattr(integrator.detector, "max_shape", None)
        if shape is None:
            raise ValueError("the pyFAI integrator's detector states no shape (max_shape): give it one, e.g. "
                             "pyFAI.detector_factory('Pilatus1M') or Detector(..., max_shape=(rows, cols))")
        self.shape = tuple(int(n) for n in shape)
        if integrator.wavelength is None:
            raise ValueError("the pyFAI integrator states no wavelength: set integrator.wavelength (m) or "
                             "calibrate with one")
        own = integrator.detector.mask
        masks = [np.asarray(m, bool) for m in (own, mask) if m is not None]
        self.mask = np.logical_or.reduce(masks) if masks else np.zeros(self.shape, bool)
        if self.mask.shape != self.shape:
            raise ValueError(f"mask has shape {self.mask.shape}, the detector {self.shape}")
        self.npt = int(npt) if npt is not None else max(self.shape)
        tth = integrator.center_array(self.shape, unit="2th_deg")[~self.mask]
        self.radial_range = (float(tth.min()), float(tth.max()))
        pixels, _ = np.histogram(tth, bins=self.npt, range=self.radial_range)
        if (pixels == 0).any():
            raise ValueError(f"npt={self.npt} leaves {int((pixels == 0).sum())} 2θ bins without a pixel: "
                             "use fewer points")
        self._scale = float(np.median(pixels))
        axis = integrator.integrate1d(np.zeros(self.shape, np.float32), self.npt, **self._options()).radial
        self.two_theta.put(np.asarray(axis, float))
        self.wavelength.put(float(integrator.wavelength) * 1e10)
        self.pattern.put(np.zeros(self.npt))

    def _options(self) -> dict[str, Any]:
        return {"unit": "2th_deg", "radial_range": self.radial_range, "mask": self.mask,
                "correctSolidAngle": True, "polarization_factor": self.polarization_factor}

    def describe(self) -> dict[str, dict[str, Any]]:
        out = super().describe()
        out[self.pattern.name].update(shape=[self.npt], dtype="array", dtype_numpy="<f8")
        return out

    def stage(self) -> list:
        self.detector.stage()
        return super().stage()

    def unstage(self) -> list:
        try:
            return super().unstage()
        finally:
            self.detector.unstage()

    def read_image(self) -> np.ndarray:
        """The area detector's last image, rows × columns."""
        source = self._image
        image = source.image if hasattr(source, "image") else np.asarray(source.get())
        image = np.asarray(image)
        if image.ndim == 1 and image.size == self.mask.size:
            image = image.reshape(self.shape)
        if image.shape != self.shape:
            raise ValueError(f"{self.detector.name} gave an image of shape {image.shape}; the geometry "
                             f"is for {self.shape}")
        return image

    def integrate(self, image: np.ndarray) -> np.ndarray:
        """The powder pattern of ``image`` on :attr:`two_theta` (counts of a median bin)."""
        result = self.integrator.integrate1d(np.asarray(image, np.float32), self.npt, **self._options())
        return np.asarray(result.intensity, float) * self._scale

    def trigger(self) -> DeviceStatus:
        status = DeviceStatus(self)

        def integrate() -> None:
            try:
                self.pattern.put(self.integrate(self.read_image()))
            except Exception as exc:
                status.set_exception(exc)
            else:
                status.set_finished()

        def exposed(st) -> None:
            if not st.success:
                status.set_exception(st.exception() or RuntimeError(f"{self.detector.name} failed"))
                return
            # not on the detector's callback thread (EPICS monitors run there)
            threading.Thread(target=integrate, daemon=True, name=f"{self.name}-integrate").start()

        self.detector.trigger().add_callback(exposed)
        return status
