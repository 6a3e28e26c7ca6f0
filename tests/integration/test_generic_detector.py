"""symmetry_scan with a detector that is not the simulated one: a MYTHEN-like 1-D strip with
``acquire_time`` and a ``spectrum``, a 2θ calibration elsewhere and λ from a mono's energy."""

import numpy as np
import pytest
from bluesky import RunEngine
from ophyd import Component as Cpt
from ophyd import Device, DeviceStatus, Kind, Signal

from plans import symmetry_scan, wavelength_from_energy
from ratagent.instrument import Instrument
from ratagent.patterns import HC_KEV_ANGSTROM
from ratagent.testing import tiny_agent
from sim_beamline import PowderDetector, mineral_sample

ENERGY_KEV = 15.0  # λ = 0.8266 Å
MONO = Instrument.for_radiation("mono", HC_KEV_ANGSTROM / ENERGY_KEV)


class Strip(Device):
    """A 1-D strip detector as a beamline has it: exposure, counts, staging; nothing else."""

    acquire_time = Cpt(Signal, value=1.0, kind=Kind.config)
    spectrum = Cpt(Signal, value=np.zeros(MONO.two_theta.size), kind=Kind.normal)
    staged_times = 0

    def __init__(self, *args, physics: PowderDetector, **kwargs):
        super().__init__(*args, **kwargs)
        self.physics = physics

    def stage(self):
        type(self).staged_times += 1
        return super().stage()

    def trigger(self):
        if self._staged.name != "yes":
            raise RuntimeError("Call the stage() method before triggering")
        frame = self.physics.frame(float(self.acquire_time.get()))
        self.frames = getattr(self, "frames", 0) + 1
        self.spectrum.put(frame[:100] if self.frames == getattr(self, "short_at", 0) else frame)
        status = DeviceStatus(self)
        status.set_finished()
        return status


class Mono(Device):
    energy = Cpt(Signal, value=ENERGY_KEV, kind=Kind.hinted)  # keV


class Calibration(Device):
    two_theta = Cpt(Signal, value=MONO.two_theta, kind=Kind.config)


@pytest.fixture
def strip():
    physics = PowderDetector(name="physics", instrument=MONO, rng=np.random.default_rng(3))
    physics.sample = mineral_sample("rutile")
    return Strip(name="mythen", physics=physics)


def test_generic_detector_with_wavelength_from_a_mono_energy_signal(tmp_path, strip):
    agent = tiny_agent(tmp_path / "ckpt", max_candidates=4)
    mono, calibration = Mono(name="mono"), Calibration(name="calib")
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(symmetry_scan(strip, exposure=strip.acquire_time, two_theta=calibration.two_theta,
                     wavelength=wavelength_from_energy(mono.energy), cell=mineral_sample("rutile").cell,
                     agent=agent, max_remeasure=0))
    assert Strip.staged_times == 1 and strip._staged.name == "no"
    (decision,) = [d["data"] for n, d in docs if n == "event" and "assessment_verdict" in d["data"]]
    assert decision["assessment_refined"] == 1, decision["assessment_reasons"]
    (frame,) = [d["data"] for n, d in docs if n == "event" and "mythen_spectrum" in d["data"]]
    assert frame["mono_energy_wavelength"] == pytest.approx(0.82656, abs=1e-4)
    (descriptor,) = [d for n, d in docs if n == "descriptor" and d["name"] == "primary"]
    stored = descriptor["configuration"]["mythen_given"]["data"]["calib_two_theta"]
    assert np.allclose(stored, MONO.two_theta)
    start = next(d for n, d in docs if n == "start")
    assert start["plan_args"]["exposure"] == "mythen_acquire_time"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "mythen states no 2θ axis (no 'mythen_two_theta' configuration): pass two_theta="),
        ({"two_theta": MONO.two_theta}, "mythen states no wavelength (no 'mythen_wavelength' configuration)"),
        ({"two_theta": MONO.two_theta, "wavelength": 1.0, "field": "nothing"},
         "field 'nothing' is not read from mythen"),
    ],
    ids=["no 2θ", "no wavelength", "no such field"],
)
def test_generic_detector_misconfigured_is_refused_before_the_first_exposure(tmp_path, strip, kwargs, words):
    agent = tiny_agent(tmp_path / "ckpt")
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append(name))
    with pytest.raises(ValueError) as err:
        RE(symmetry_scan(strip, agent=agent, exposure=strip.acquire_time, **kwargs))
    assert words in str(err.value)
    assert docs == []


def test_generic_detector_without_an_exposure_signal_is_named(tmp_path):
    class Bare(Device):
        spectrum = Cpt(Signal, value=np.zeros(10), kind=Kind.normal)

    words = r"bare has no count_time, acquire_time or cam\.acquire_time signal: pass exposure="
    with pytest.raises(ValueError, match=words):
        next(symmetry_scan(Bare(name="bare"), agent=tiny_agent(tmp_path / "ckpt")))


def test_generic_detector_odd_frame_is_caught_though_its_signal_describes_the_value_it_holds(tmp_path, strip):
    """An ophyd Signal describes the shape of its current value, so a short frame describes
    itself as short: the frame must be checked against the first description (the one the
    stream's descriptor holds), not the current one."""
    agent = tiny_agent(tmp_path / "ckpt", max_candidates=4)
    strip.short_at = 2
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(symmetry_scan(strip, exposure=strip.acquire_time, two_theta=MONO.two_theta, wavelength=MONO.wavelength,
                     samples=None, agent=agent, max_remeasure=1, count_time=0.001, max_count_time=1.0))
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    frames = [(streams[d["descriptor"]], np.shape(d["data"].get("mythen_spectrum")))
              for n, d in docs if n == "event" and streams[d["descriptor"]] != "symmetry"]
    assert frames[1] == ("odd_frame_1", (100,)), frames  # the 2nd exposure: the weak 1st is counted again
    assert all(shape == (MONO.two_theta.size,) for name, shape in frames if name == "primary")

