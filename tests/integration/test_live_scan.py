"""The live loop on a real RunEngine with the simulated beamline and the embedded catalog."""

import re
import subprocess
import sys
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


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    return tiny_agent(tmp_path_factory.mktemp("ckpt"), max_candidates=4)


@pytest.fixture
def beamline():
    changer = SampleChanger(name="changer", samples=[hard_sample()])
    det = PowderDetector(name="det", changer=changer, instrument=INSTRUMENT, time_scale=0.01,
                         rng=np.random.default_rng(0))
    return det, changer


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog") as cat:
        yield cat


def _symmetry(run):
    ds = run["symmetry"].read()
    return {k.removeprefix("assessment_"): ds[k].values for k in ds.data_vars}


def test_scan_stores_every_frame_and_assessment_and_reads_back_in_a_new_process(agent, beamline, catalog):
    det, changer = beamline
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    (uid,) = RE(symmetry_scan(det, samples=["quartz", "baddeleyite (weak)"], changer=changer, agent=agent,
                              max_count_time=30))
    run = catalog[uid]
    n_frames = run["primary"].read()["det_intensity"].shape[0]
    sym = _symmetry(run)
    assert len(sym["verdict"]) == n_frames >= 3  # the weak sample is counted twice
    assert sorted(sym["frame_seq_num"].tolist()) == list(range(1, n_frames + 1))
    cells = run["primary"].read()["changer_cell"].values  # arrays stay arrays, NaN for no cell
    assert cells.shape == (n_frames, 6) and cells.dtype == np.float64
    from tiled.queries import Key

    assert catalog[-1].metadata["start"]["uid"] == uid == catalog[uid[:8]].metadata["start"]["uid"]
    assert list(catalog.runs.search(Key("plan_name") == "symmetry_scan")) == [uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    start = run.metadata["start"]
    assert start["ratagent"]["model_id"] == agent.model_id and "bluesky" in start["ratagent"]["versions"]
    assert start["plan_args"]["samples"] == ["quartz", "baddeleyite (weak)"]
    catalog.close()
    code = (f"from ratagent.catalog import Catalog\nwith Catalog({str(catalog.directory)!r}) as c:\n"
            f"    r = c[{uid!r}]\n"
            "    print(r['symmetry'].read()['time'].size, r['primary'].read()['time'].size)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.split()[-2:] == [str(n_frames), str(n_frames)]


def test_weak_sample_is_remeasured_longer_and_then_resolved(agent, beamline, catalog):
    det, changer = beamline
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    (uid,) = RE(symmetry_scan(det, samples=["baddeleyite (weak)"], changer=changer, agent=agent,
                              count_time=1.0, max_count_time=30))
    sym = _symmetry(catalog[uid])
    assert sym["verdict"][0] == "remeasure" and "frame too weak" in sym["reasons"][0]
    assert sym["count_time"][1] == pytest.approx(sym["suggested_count_time"][0])
    assert sym["count_time"][1] > 1.0
    assert sym["verdict"][1] != "remeasure" and sym["refined"][1] == 1
    assert sym["peak_snr"][1] >= agent.config.min_peak_snr


@pytest.mark.parametrize("fault", ["nan", "short", "long", "empty", "2d", "error"])
def test_bad_frame_is_flagged_and_the_scan_goes_on(agent, beamline, catalog, fault):
    det, changer = beamline
    det.inject_fault(fault)
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    (uid,) = RE(symmetry_scan(det, samples=["rutile", "rutile"], changer=changer, agent=agent, cell=None,
                              max_remeasure=0))
    sym = _symmetry(catalog[uid])
    assert sym["verdict"][0] == "flag"
    expected = {"nan": "non-finite", "error": "readout failed"}.get(fault, "stored as measured in stream")
    assert expected in sym["reasons"][0]
    assert len(sym["verdict"]) == 2 and "assessment failed" not in sym["reasons"][1]
    assert catalog[uid].metadata["stop"]["exit_status"] == "success"


@pytest.mark.parametrize("fault", ["short", "long", "empty", "2d"])
def test_an_odd_frame_is_stored_as_measured_and_the_good_frames_unaltered(agent, beamline, catalog, fault):
    det, changer = beamline
    frames = []
    det.intensity.subscribe(lambda value, **kw: frames.append(np.array(value)), run=False)
    det.inject_fault(fault)
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    (uid,) = RE(symmetry_scan(det, samples=["rutile", "rutile"], changer=changer, agent=agent, cell=None,
                              max_remeasure=0))
    run = catalog[uid]
    odd = run["odd_frame_1"].read()
    assert odd["det_intensity_shape"].values[0].tolist() == list(frames[0].shape)
    if frames[0].size:  # an empty frame is stored by its shape alone
        assert np.array_equal(odd["det_intensity"].values[0], frames[0])
    good = run["primary"].read()["det_intensity"].values
    assert good.shape == (1, INSTRUMENT.two_theta.size) and np.array_equal(good[0], frames[1])
    sym = _symmetry(run)
    assert sym["frame_seq_num"].tolist() == [-1, 1] and "odd_frame_1" in sym["reasons"][0]


def test_missing_wavelength_is_refused_before_the_first_exposure_not_defaulted(agent, beamline):
    det, changer = beamline
    det.wavelength.put(float("nan"))
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    with pytest.raises(ValueError, match="det_wavelength reads nan Å for det: not a wavelength"):
        RE(symmetry_scan(det, samples=["rutile"], changer=changer, agent=agent))
    assert docs == []


class _SlowAgent(Agent):
    """The real agent, made to take ``delay`` seconds longer: a timing test of the RunEngine only."""

    delay = 2.0

    def assess(self, pattern, **kwargs):
        time.sleep(self.delay)
        return super().assess(pattern, **kwargs)


def test_runengine_stays_responsive_while_an_assessment_takes_seconds(agent, beamline):
    det, changer = beamline
    slow = _SlowAgent(agent.classifier, agent.config)
    stamps = []
    RE = RunEngine({})
    RE.msg_hook = lambda msg: stamps.append(time.monotonic())
    t0 = time.monotonic()
    RE(symmetry_scan(det, samples=["rutile"], changer=changer, agent=slow, cell=None))
    assert time.monotonic() - t0 >= slow.delay
    gaps = np.diff(stamps)
    assert gaps.max() < 0.5, f"longest gap between messages {gaps.max():.2f} s"


def test_pause_resume_mid_assessment_then_abort_close_the_run(agent, beamline, catalog):
    det, changer = beamline
    slow = _SlowAgent(agent.classifier, agent.config)
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    threading.Timer(0.8, RE.request_pause).start()  # deferred pause: honoured at the polling checkpoint
    with pytest.raises(RunEngineInterrupted):
        RE(symmetry_scan(det, samples=["rutile", "rutile"], changer=changer, agent=slow, cell=None))
    assert RE.state == "paused"
    RE.resume()  # the first assessment finishes; the scan goes on
    assert RE.state == "idle"
    uid = catalog.uids()[-1]
    assert len(_symmetry(catalog[uid])["verdict"]) == 2

    threading.Timer(0.8, RE.request_pause).start()
    with pytest.raises(RunEngineInterrupted):
        RE(symmetry_scan(det, samples=["rutile", "rutile"], changer=changer, agent=slow, cell=None))
    assert RE.state == "paused"
    RE.abort(reason="test abort")
    run = catalog[catalog.uids()[-1]]
    assert run.metadata["stop"]["exit_status"] == "abort"


@pytest.mark.parametrize(
    ("samples", "error", "words"),
    [
        (["quartz", "qaurtz", "rutile"], ValueError, "sample 2 of 3 ('qaurtz')"),
        ("quartz", TypeError, "got the string 'quartz'; pass samples=['quartz']"),
        ([], ValueError, "samples is empty"),
    ],
    ids=["typo in the second name", "a string", "empty"],
)
def test_samples_are_checked_before_the_first_exposure(agent, beamline, samples, error, words):
    det, changer = beamline
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append(name))
    with pytest.raises(error, match=re.escape(words)):
        RE(symmetry_scan(det, samples=samples, changer=changer, agent=agent))
    assert docs == []  # no run was opened, nothing exposed


class _CellRecordingAgent(Agent):
    """The real agent, noting the cell each frame was handed."""

    def assess(self, pattern, **kwargs):
        self.cells = [*getattr(self, "cells", []), kwargs.get("cell")]
        return super().assess(pattern, **kwargs)


def test_a_sample_mounted_on_the_detector_gives_its_name_and_cell_without_a_changer(agent):
    from sim_beamline import mineral_sample

    det = PowderDetector(name="det", instrument=INSTRUMENT, time_scale=0.01, rng=np.random.default_rng(1))
    det.sample = mineral_sample("rutile")
    recording = _CellRecordingAgent(agent.classifier, agent.config)
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(symmetry_scan(det, agent=recording, max_remeasure=0))
    (event,) = [d for n, d in docs if n == "event" and "assessment_sample" in d["data"]]
    assert event["data"]["assessment_sample"] == "rutile"
    assert recording.cells == [pytest.approx(mineral_sample("rutile").cell)]


@pytest.mark.parametrize("directory", ["", "  "])
def test_an_empty_catalog_path_is_refused(directory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="empty path"):
        Catalog(directory)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("end", ["abort", "stop", "halt"])
def test_an_assessment_cut_short_by_the_end_of_the_run(agent, beamline, catalog, end):
    """abort and stop store the decision in progress as ``interrupted``; halt lets no plan
    code run (bluesky's definition), so it keeps the frames and records an abort, and the
    decision in progress is not stored."""
    det, changer = beamline
    slow = _SlowAgent(agent.classifier, agent.config)
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    threading.Timer(0.8, RE.request_pause).start()
    with pytest.raises(RunEngineInterrupted):
        RE(symmetry_scan(det, samples=["rutile", "rutile"], changer=changer, agent=slow, cell=None))
    getattr(RE, end)()
    run = catalog[catalog.uids()[-1]]
    assert run["primary"].read()["det_intensity"].shape[0] == 1
    assert run.metadata["stop"]["exit_status"] == ("success" if end == "stop" else "abort")
    if end == "halt":
        assert "symmetry" not in run
        return
    sym = _symmetry(run)
    assert sym["verdict"].tolist() == ["interrupted"] and sym["frame_seq_num"].tolist() == [1]
    assert "the run ended before the assessment did" in sym["reasons"][0]


def test_abort_during_an_exposure_ends_the_run_and_records_the_exposure_cut_short(agent, tmp_path, catalog):
    changer = SampleChanger(name="changer", samples=[hard_sample()])
    det = PowderDetector(name="det", changer=changer, instrument=INSTRUMENT, time_scale=2.0,
                         rng=np.random.default_rng(0))
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    threading.Timer(0.5, RE.request_pause).start()  # immediate pause, inside the 2 s exposure
    with pytest.raises(RunEngineInterrupted):
        RE(symmetry_scan(det, samples=["rutile", "quartz"], changer=changer, agent=agent, cell=None))
    RE.abort()
    run = catalog[catalog.uids()[-1]]
    assert run.metadata["stop"]["exit_status"] == "abort"
    assert "primary" not in run  # no frame was read; the exposure is recorded as cut short
    sym = _symmetry(run)
    assert sym["verdict"].tolist() == ["interrupted"] and sym["frame_seq_num"].tolist() == [-1]
    assert "during the exposure: no frame was assessed" in sym["reasons"][0]
    assert changer.sample_name.get() == "rutile"  # and no next sample


def test_a_catalog_that_fails_mid_run_loses_nothing_and_names_the_spool_file(agent, beamline, tmp_path,
                                                                              caplog):
    import shutil

    from ratagent.catalog import CatalogWriteError, read_spool

    det, changer = beamline
    catalog = Catalog(tmp_path / "catalog", spool=tmp_path / "spool")
    RE = RunEngine({})
    RE.subscribe(catalog.writer)
    mounted = changer.set

    def set_and_lose_the_catalog(name):  # the catalog's server goes down at the second mount
        if changer.sample_name.get() and catalog._server is not None:
            catalog._server.close()
            catalog._server = None
            shutil.rmtree(catalog.directory)
        return mounted(name)

    changer.set = set_and_lose_the_catalog
    try:
        RE(symmetry_scan(det, samples=["rutile", "quartz", "halite"], changer=changer, agent=agent,
                         max_remeasure=0))
    except CatalogWriteError as exc:  # the catalog failed during the run: the run ends
        told = str(exc)
    else:  # it failed only at the stop document, which the RunEngine does not re-raise
        told = caplog.text
    finally:
        catalog.close()
    assert str(tmp_path / "spool") in told
    (spooled,) = (tmp_path / "spool").iterdir()
    docs = list(read_spool(spooled))
    assert docs[0][0] == "start" and docs[-1][0] == "stop"
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    events = [streams[d["descriptor"]] for n, d in docs if n == "event"]
    assert events.count("primary") == events.count("symmetry") >= 1  # a decision for every frame
    with Catalog(tmp_path / "elsewhere") as other:  # a working catalog takes the run back
        uid = other.import_spool(spooled)
        assert other[uid]["primary"].read()["det_intensity"].shape == (events.count("primary"),
                                                                       INSTRUMENT.two_theta.size)


def test_a_catalog_failing_on_a_frame_ends_the_run_and_spools_everything(agent, beamline, tmp_path):
    from ratagent.catalog import CatalogWriteError, GuardedWriter, read_spool

    det, changer = beamline
    taken = []

    streams = {}

    def flaky(name, doc):  # a catalog whose disk fills at the second frame
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        if name == "event" and streams[doc["descriptor"]] == "primary" and \
                sum(n == "event" and streams[d["descriptor"]] == "primary" for n, d in taken) >= 1:
            raise OSError("No space left on device")
        taken.append((name, doc))

    RE = RunEngine({})
    RE.subscribe(GuardedWriter(flaky, tmp_path / "spool", "the test catalog"))
    with pytest.raises(CatalogWriteError, match="No space left on device"):
        RE(symmetry_scan(det, samples=["rutile", "quartz", "halite"], changer=changer, agent=agent,
                         max_remeasure=0))
    (spooled,) = (tmp_path / "spool").iterdir()
    docs = list(read_spool(spooled))
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "fail"
    assert "No space left" in docs[-1][1]["reason"]
    assert changer.sample_name.get() == "quartz"  # the run ended at the failure, not after halite

