"""symmetry_scan(pipeline=True) on a real RunEngine, the simulated beamline and the catalog:
the next sample is measured while the last frame is assessed, a sample asked to count
longer comes back after the samples queued, and nothing is lost when the run ends."""

import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from plans import symmetry_scan
from ratagent.agent import Agent
from ratagent.catalog import Catalog
from ratagent.instrument import Instrument
from ratagent.testing import tiny_agent
from sim_beamline import PowderDetector, SampleChanger, hard_sample

pytestmark = pytest.mark.slow

INSTRUMENT = Instrument(two_theta_min_deg=10.0, two_theta_max_deg=80.0, step_deg=0.02)


class _TimedAgent(Agent):
    """The real agent, taking ``delay`` s longer, and noting when each assessment ran."""

    delay = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spans: list[tuple[float, float]] = []

    def assess(self, pattern, **kwargs):
        t0 = time.monotonic()
        time.sleep(self.delay)
        try:
            return super().assess(pattern, **kwargs)
        finally:
            self.spans.append((t0, time.monotonic()))


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    return tiny_agent(tmp_path_factory.mktemp("ckpt"), max_candidates=4)


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog") as cat:
        yield cat


def _beamline(time_scale):
    changer = SampleChanger(name="changer", samples=[hard_sample()])
    det = PowderDetector(name="det", changer=changer, instrument=INSTRUMENT, time_scale=time_scale,
                         rng=np.random.default_rng(0))
    return det, changer


def _decisions(run):
    ds = run["symmetry"].read()
    return {k.removeprefix("assessment_"): ds[k].values.tolist() for k in ds.data_vars}


def test_pipeline_measures_while_assessing_and_comes_back_for_more_counts(agent, catalog):
    det, changer = _beamline(time_scale=0.5)
    timed = _TimedAgent(agent.classifier, agent.config)
    exposures = []  # (sample, start, end) of every exposure, as the detector saw it
    trigger = det.trigger

    def noted_trigger():
        t0, status = time.monotonic(), trigger()
        status.add_callback(lambda st: exposures.append((changer.sample_name.get(), t0, time.monotonic())))
        return status

    det.trigger = noted_trigger
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    (uid,) = RE(symmetry_scan(det, samples=["baddeleyite (weak)", "quartz", "rutile"], changer=changer,
                              agent=timed, count_time=1.0, max_count_time=30, pipeline=True))
    run = catalog[uid]
    assert run.metadata["start"]["plan_args"]["pipeline"] is True
    frames = run["primary"].read()
    samples = frames["changer_sample_name"].values.tolist()
    # the weak sample is counted again after the samples queued behind it, longer
    assert samples[:3] == ["baddeleyite (weak)", "quartz", "rutile"] and samples[3] == "baddeleyite (weak)"
    assert frames["det_count_time"].values[3] > 1.0
    sym = _decisions(run)
    assert sym["frame_seq_num"] == list(range(1, len(samples) + 1))  # one decision per frame, in order
    assert sym["sample"] == samples and sym["attempt"][:4] == [0, 0, 0, 1]
    assert sym["verdict"][0] == "remeasure" and sym["verdict"][-1] != "remeasure"
    # the detector exposed while the agent assessed: some exposure overlaps an assessment
    overlaps = [(e, a) for e in exposures for a in timed.spans if a[0] < e[2] and e[1] < a[1]]
    assert overlaps, (exposures, timed.spans)


@pytest.mark.parametrize("end", ["abort", "stop"])
def test_pipeline_ended_mid_run_stores_a_decision_for_every_frame(agent, catalog, end):
    det, changer = _beamline(time_scale=0.01)
    slow = _TimedAgent(agent.classifier, agent.config)
    slow.delay = 1.5  # frames pile up behind the agent
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    frames = []

    def pause_after_the_second_frame(name, doc):  # the agent is still at the first one
        if name == "event" and "det_intensity" in doc["data"]:
            frames.append(doc["seq_num"])
            if len(frames) == 2:
                threading.Timer(0.0, RE.request_pause).start()

    RE.subscribe(pause_after_the_second_frame)
    with pytest.raises(RunEngineInterrupted):
        RE(symmetry_scan(det, samples=["rutile", "quartz", "halite", "calcite"], changer=changer, agent=slow,
                         pipeline=True))
    getattr(RE, end)()
    run = catalog[catalog.uids()[-1]]
    n = run["primary"].read()["det_intensity"].shape[0]
    sym = _decisions(run)
    assert n >= 2 and sorted(s for s in sym["frame_seq_num"] if s > 0) == list(range(1, n + 1))
    assert "interrupted" in sym["verdict"]
    assert run.metadata["stop"]["exit_status"] == ("abort" if end == "abort" else "success")
