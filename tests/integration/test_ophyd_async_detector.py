"""symmetry_scan on ophyd-async devices: a StandardReadable 1-D detector runs end to end;
a StandardDetector (frames written to files) is refused with what is supported."""

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky import RunEngine

pytest.importorskip("ophyd_async", reason="ophyd-async is not installed: pip install ratagent[beamline]")

from bluesky.run_engine import call_in_bluesky_event_loop

from plans import symmetry_scan
from ratagent.testing import tiny_agent
from sim_beamline import mineral_sample
from sim_beamline.async_detector import AsyncPowderDetector


@pytest.fixture
def RE():
    return RunEngine({})  # before any ophyd-async device: it owns the event loop they connect in


def test_ophyd_async_detector_runs_symmetry_scan(tmp_path, RE):
    det = AsyncPowderDetector(name="strip", time_scale=0.0, rng=np.random.default_rng(1))
    call_in_bluesky_event_loop(det.connect())
    det.sample = mineral_sample("rutile")
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    agent = tiny_agent(tmp_path / "ckpt", max_candidates=4)
    RE(symmetry_scan(det, cell=mineral_sample("rutile").cell, agent=agent, count_time=2.0, max_remeasure=0))

    start = next(d for n, d in docs if n == "start")
    assert {k: start["plan_args"][k] for k in ("field", "exposure", "two_theta", "wavelength")} == {
        "field": "strip-spectrum", "exposure": "strip-acquire_time", "two_theta": "strip-two_theta",
        "wavelength": "strip-wavelength"}
    (frame,) = [d["data"] for n, d in docs if n == "event" and "strip-spectrum" in d["data"]]
    assert np.shape(frame["strip-spectrum"]) == (8501,) and frame["strip-acquire_time"] == 2.0
    (descriptor,) = [d for n, d in docs if n == "descriptor" and d["name"] == "primary"]
    config = descriptor["configuration"]["strip"]["data"]
    assert config["strip-wavelength"] == pytest.approx(1.5406, abs=1e-4)
    (decision,) = [d["data"] for n, d in docs if n == "event" and "assessment_verdict" in d["data"]]
    assert decision["assessment_refined"] == 1, decision["assessment_reasons"]
    assert decision["assessment_count_time"] == 2.0
    assert next(d for n, d in docs if n == "stop")["exit_status"] == "success"


def test_ophyd_async_detector_without_a_wavelength_is_named_before_the_first_exposure(tmp_path, RE):
    det = AsyncPowderDetector(name="strip", time_scale=0.0)
    call_in_bluesky_event_loop(det.connect())
    RE(bps.mv(det.wavelength, 0.0))
    docs = []
    RE.subscribe(lambda name, doc: docs.append(name))
    with pytest.raises(ValueError, match=r"strip-wavelength reads 0\.0 Å for strip: not a wavelength"):
        RE(symmetry_scan(det, agent=tiny_agent(tmp_path / "ckpt")))
    assert docs == []


def test_ophyd_async_standard_detector_is_refused_with_what_is_supported(tmp_path, RE):
    from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider
    from ophyd_async.sim import SimBlobDetector

    blob = SimBlobDetector(StaticPathProvider(UUIDFilenameProvider(), tmp_path), name="blob")
    call_in_bluesky_event_loop(blob.connect())
    with pytest.raises(TypeError, match=r"blob is an ophyd-async StandardDetector .*plans\.IntegratedPowder"):
        RE(symmetry_scan(blob, agent=tiny_agent(tmp_path / "ckpt")))
