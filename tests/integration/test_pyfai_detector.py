"""symmetry_scan on an ``ophyd.areadetector`` detector through pyFAI azimuthal integration.

The area detector is the real ophyd class (``SingleTrigger`` + ``DetectorBase``, a
``SimDetectorCam`` and an ``ImagePlugin``) on fake EPICS signals with a simulated IOC
(:class:`sim_beamline.area.SimAreaDetector`); the integration is pyFAI's.
"""

import gemmi
import numpy as np
import pytest
from bluesky import RunEngine

pytest.importorskip("pyFAI", reason="pyFAI is not installed: pip install ratagent[beamline]")

from plans import IntegratedPowder, symmetry_scan
from ratagent.testing import tiny_agent
from sim_beamline import mineral_sample
from sim_beamline.area import SimAreaDetector

HALITE_A = 5.6402  # Å, NaCl at room temperature (Walker et al., Am. Mineral. 89, 2004)


@pytest.fixture
def area():
    det = SimAreaDetector(name="area", time_scale=0.0, rng=np.random.default_rng(11))
    det.sample = mineral_sample("halite")
    return det


def test_pyfai_integrated_rings_peak_at_the_bragg_angles_of_halite(area):
    powder = IntegratedPowder(area, area.geometry, name="powder")
    powder.stage()
    try:
        powder.count_time.set(2.0).wait(5)
        powder.trigger().wait(30)
    finally:
        powder.unstage()
    x, y = powder.two_theta.get(), powder.pattern.get()
    assert y.shape == x.shape == (powder.npt,) and np.all(np.diff(x) > 0)
    lam = powder.wavelength.get()
    assert lam == pytest.approx(0.7293)
    cell = gemmi.UnitCell(HALITE_A, HALITE_A, HALITE_A, 90, 90, 90)
    for hkl in ((2, 0, 0), (2, 2, 0)):  # the two strongest lines of rock salt
        expected = 2 * np.degrees(np.arcsin(lam / (2 * cell.calculate_d(hkl))))
        near = np.abs(x - expected) < 0.5
        assert x[near][np.argmax(y[near])] == pytest.approx(expected, abs=0.03), hkl
    strongest = x[np.argmax(y)]
    d200 = cell.calculate_d((2, 0, 0))
    assert strongest == pytest.approx(2 * np.degrees(np.arcsin(lam / (2 * d200))), abs=0.03)


def test_pyfai_area_detector_through_symmetry_scan_is_staged_and_decided(tmp_path, area):
    powder = IntegratedPowder(area, area.geometry, name="powder")
    modes = []  # the image mode the IOC was given: staging sets it, unstaging restores it
    area.cam.image_mode.subscribe(lambda value, **kw: modes.append(value), run=False)
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    agent = tiny_agent(tmp_path / "ckpt", max_candidates=4)
    RE(symmetry_scan(powder, cell=mineral_sample("halite").cell, agent=agent, count_time=2.0,
                     max_remeasure=0))

    assert modes[0] == 1 and area._staged.name == "no" and powder._staged.name == "no"
    assert area.cam.acquire_time.get() == 2.0
    (frame,) = [d["data"] for n, d in docs if n == "event" and "powder_pattern" in d["data"]]
    assert np.shape(frame["powder_pattern"]) == (powder.npt,) and frame["powder_count_time"] == 2.0
    (descriptor,) = [d for n, d in docs if n == "descriptor" and d["name"] == "primary"]
    config = descriptor["configuration"]["powder"]["data"]
    assert np.allclose(config["powder_two_theta"], powder.two_theta.get())
    assert config["powder_wavelength"] == pytest.approx(0.7293)
    (decision,) = [d["data"] for n, d in docs if n == "event" and "assessment_verdict" in d["data"]]
    assert decision["assessment_refined"] == 1, decision["assessment_reasons"]
    assert decision["assessment_count_time"] == 2.0
    start = next(d for n, d in docs if n == "start")
    assert start["plan_args"]["exposure"] == "powder_count_time"
    assert next(d for n, d in docs if n == "stop")["exit_status"] == "success"


def test_pyfai_integrator_without_a_detector_shape_is_named(area):
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    geometry = AzimuthalIntegrator(dist=0.3, pixel1=1e-4, pixel2=1e-4, wavelength=0.7e-10)
    with pytest.raises(ValueError, match="states no shape"):
        IntegratedPowder(area, geometry, name="powder")
