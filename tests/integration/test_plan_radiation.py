"""The plan's default agent fits the radiation the detector states (Kα1/Kα2 or one line)."""

import numpy as np
import pytest
from bluesky import RunEngine
from ophyd import Component as Cpt
from ophyd import Device, Signal

from plans import symmetry_scan
from plans.symmetry import _instrument_for
from ratagent.instrument import Instrument
from sim_beamline import PowderDetector, SampleChanger, mineral_sample


def test_the_sim_detector_states_its_anode():
    det = PowderDetector(name="det")
    assert det.radiation.get() == "Cu"
    assert _instrument_for(det, det.wavelength.get(), None).radiation == "Cu Kα1/Kα2"
    mono = PowderDetector(name="mono", instrument=Instrument.synchrotron(0.7293))
    assert mono.radiation.get() == "mono" and _instrument_for(mono, 0.7293, None) is None


def test_a_detector_without_a_radiation_signal_is_one_line_unless_told():
    class Bare(Device):
        wavelength = Cpt(Signal, value=0.7093)

    bare = Bare(name="bare")
    assert _instrument_for(bare, 0.7093, None) is None
    assert _instrument_for(bare, 0.7093, "Mo").radiation == "Mo Kα1/Kα2"
    with pytest.raises(ValueError, match=r"bare: wavelength 0.7093 Å is not Cu Kα1"):
        _instrument_for(bare, 0.7093, "Cu")


def test_radiation_is_for_the_default_agent_only():
    det = PowderDetector(name="det")
    with pytest.raises(ValueError, match="radiation='Cu': for the default agent only"):
        list(symmetry_scan(det, agent=object(), radiation="Cu"))


@pytest.mark.slow
def test_default_agent_records_the_radiation_in_the_start_document():
    rutile = mineral_sample("rutile")
    changer = SampleChanger(name="changer", samples=[rutile])
    det = PowderDetector(name="det", changer=changer, time_scale=0.0, rng=np.random.default_rng(0))
    docs = []
    RE = RunEngine()
    RE(symmetry_scan(det, samples=["rutile"], changer=changer, cell=[4.5937, 4.5937, 2.9587, 90, 90, 90]),
       lambda name, doc: docs.append((name, doc)))
    start = next(doc for name, doc in docs if name == "start")
    assert start["ratagent"]["radiation"] == "Cu Kα1/Kα2"
