"""A soak of the live loop: 100 samples with random faults, a pause and an abort.

Every frame the detector hands to the RunEngine is counted in and looked for in the
catalog (``primary`` or an ``odd_frame_<n>`` stream), array for array; every exposure
must have its decision in the ``symmetry`` stream. Nothing may be lost or altered.
The operator's pause and abort land in an exposure here; ``test_pause_anywhere`` puts
them after every message of the plan.
"""

import threading

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from plans import symmetry_scan
from ratagent.catalog import Catalog
from ratagent.instrument import Instrument
from ratagent.testing import tiny_agent
from sim_beamline import FAULTS, SampleChanger

pytestmark = pytest.mark.slow

N_SAMPLES = 100
PAUSE_AT, ABORT_AT = 30, 80  # mounts at which the operator pauses (then resumes) and aborts
MINERALS = ["rutile", "halite", "quartz", "calcite", "corundum"]


class _FaultyChanger(SampleChanger):
    """A changer that, at each mount, arms the detector with the next scheduled fault and
    has the operator pause or abort during the exposure at the scheduled mounts (a move
    replayed after a pause mounts nothing new)."""

    def __init__(self, *args, detector=None, faults=(), operator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.detector, self.faults, self.operator, self.mounts = detector, list(faults), operator, 0

    def set(self, name):
        if self.mounts and name == self.sample_name.get():
            return super().set(name)
        status = super().set(name)
        self.mounts += 1
        fault = self.faults[self.mounts - 1]
        if fault is not None:
            self.detector.inject_fault(fault)
        self.detector.time_scale = 0.0
        if self.mounts in (PAUSE_AT, ABORT_AT):
            self.detector.time_scale = 0.5  # an exposure of 0.5 s for the operator's 10 ms timer
            self.operator()
        return status


def test_soak_100_samples_with_faults_pause_and_abort_loses_and_alters_nothing(tmp_path, recording_detector):
    rng = np.random.default_rng(20261203)
    faults = [None if rng.random() < 0.6 else str(rng.choice(FAULTS)) for _ in range(N_SAMPLES)]
    for mount in (PAUSE_AT, PAUSE_AT + 1, ABORT_AT):  # a paused exposure is triggered again, fault-free
        faults[mount - 1] = None
    agent = tiny_agent(tmp_path / "ckpt", index_when_no_cell=False, min_peak_snr=1e-6)
    RE = RunEngine({})
    instrument = Instrument(two_theta_min_deg=10.0, two_theta_max_deg=60.0, step_deg=0.05)
    det = recording_detector(name="det", instrument=instrument, time_scale=0.0, rng=rng)
    changer = _FaultyChanger(name="changer", detector=det, faults=faults,
                             operator=lambda: threading.Timer(0.01, RE.request_pause).start())
    det.changer = changer
    samples = [MINERALS[i % len(MINERALS)] for i in range(N_SAMPLES)]
    with Catalog(tmp_path / "catalog") as catalog:
        RE.subscribe(catalog.writer)
        with pytest.raises(RunEngineInterrupted):
            RE(symmetry_scan(det, samples=samples, changer=changer, agent=agent, max_remeasure=0))
        assert changer.mounts == PAUSE_AT, "the pause did not come"
        with pytest.raises(RunEngineInterrupted):
            RE.resume()  # runs on to the second pause
        assert changer.mounts == ABORT_AT, "the second pause did not come"
        RE.abort(reason="soak test")
        run = catalog[catalog.uids()[-1]]
        assert run.metadata["stop"]["exit_status"] == "abort"

        stored = list(run["primary"].read()["det_intensity"].values)
        odd_streams = [k for k in run if k.startswith("odd_frame_")]
        odd = []
        for k in sorted(odd_streams, key=lambda k: int(k.removeprefix("odd_frame_"))):
            ds = run[k].read()
            odd.append(ds["det_intensity"].values[0] if "det_intensity" in ds else
                       np.zeros(ds["det_intensity_shape"].values[0], float))
        frames = det.frames_read()
        good = [f for f in frames if f.shape == (instrument.two_theta.size,)]
        bad = [f for f in frames if f.shape != (instrument.two_theta.size,)]
        assert len(stored) == len(good) and all(np.array_equal(a, b, equal_nan=True)
                                                for a, b in zip(stored, good, strict=True))
        assert len(odd) == len(bad) and all(a.shape == b.shape and np.array_equal(a, b)
                                            for a, b in zip(odd, bad, strict=True))

        sym = run["symmetry"].read()
        seqs = sym["assessment_frame_seq_num"].values.tolist()
        assert sorted(s for s in seqs if s >= 0) == list(range(1, len(stored) + 1))  # one decision per frame
        errors = sum(f == "error" for f in faults[:ABORT_AT])
        # the abort cuts the last sample's exposure (no frame: −1) or its assessment (its frame)
        cut_exposure = int(seqs[-1] == -1)
        assert seqs[:len(seqs) - cut_exposure].count(-1) == len(bad) + errors  # odd frames, failed readouts
        assert len(seqs) == ABORT_AT  # a decision for every sample mounted, the last one included
        assert sym["assessment_verdict"].values[-1] == "interrupted"
        assert sym["assessment_sample"].values.tolist() == samples[:ABORT_AT]
