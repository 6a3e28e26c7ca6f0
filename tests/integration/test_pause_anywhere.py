"""``symmetry_scan`` paused after each one of its messages, then resumed or aborted.

An operator may pause at any moment (Ctrl-C twice, a queueserver's immediate pause), and
bluesky then replays the messages since the last checkpoint on resume. Wherever the pause
lands, the run must keep every frame read out once, in ``primary`` (or, odd, in its own
stream), write each event once, and record one decision per frame and per sample mounted;
after an abort, every frame read is still stored, with its decision.
"""

import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import Msg, RunEngineInterrupted

import plans.symmetry
from plans import symmetry_scan
from ratagent.agent import Agent
from ratagent.instrument import Instrument
from ratagent.testing import tiny_agent
from sim_beamline import SampleChanger

pytestmark = pytest.mark.slow

SAMPLES = ["rutile", "quartz", "halite"]
FAULTS = {"quartz": "short"}  # an odd frame: stored as measured in a stream of its own
INSTRUMENT = Instrument(two_theta_min_deg=10.0, two_theta_max_deg=60.0, step_deg=0.05)


class _QuickAgent(Agent):
    """The real agent's first assessment, given again for every frame: a test of the plan."""

    first = None

    def assess(self, pattern, **kwargs):
        if self.first is None:
            self.first = super().assess(pattern, **kwargs)
        return self.first


class _Changer(SampleChanger):
    """A changer that arms the detector's fault for a sample and lists the samples mounted
    (a move replayed after a pause mounts nothing new)."""

    def __init__(self, *args, detector=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.detector, self.mounted = detector, []

    def set(self, name):
        if not self.mounted or self.mounted[-1] != name:
            self.mounted.append(name)
        if name in FAULTS:
            self.detector.inject_fault(FAULTS[name])
        return super().set(name)


def _pause_after(k: int):
    """A preprocessor that pauses the RunEngine at once after the plan's ``k``-th message,
    a function giving the number of messages counted, and the list of their commands.

    The poll while an assessment runs (checkpoint, sleep, checkpoint, sleep…) counts as one
    message, its first checkpoint: its length depends on the machine's speed.
    """
    seen, last, commands = 0, None, []

    def pause():
        yield Msg("pause", None, defer=False)

    def insert(msg):
        nonlocal seen, last
        polling = msg.command == "sleep" or (msg.command == "checkpoint" and last == "sleep")
        last = msg.command
        if polling:
            return None, None
        seen += 1
        commands.append(msg.command)
        return (None, pause()) if seen == k else (None, None)

    return (lambda plan: bpp.plan_mutator(plan, insert)), (lambda: seen), commands


def _check(docs, det, changer, aborted: bool) -> None:
    names = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    events = [(names[d["descriptor"]], d) for n, d in docs if n == "event"]
    frames = det.frames_read()
    good = [f for f in frames if f.shape == (INSTRUMENT.two_theta.size,)]
    bad = [f for f in frames if f.shape != (INSTRUMENT.two_theta.size,)]
    primary = [d for s, d in events if s == "primary"]
    assert [d["seq_num"] for d in primary] == list(range(1, len(primary) + 1)), "an event written twice"
    assert len(primary) == len(good) and all(
        np.array_equal(d["data"]["det_intensity"], f) for d, f in zip(primary, good, strict=True))
    odd = [d for s, d in events if s.startswith("odd_frame_")]
    assert [np.shape(d["data"]["det_intensity"]) for d in odd] == [f.shape for f in bad]
    decisions = [d for s, d in events if s == "symmetry"]
    assert [d["seq_num"] for d in decisions] == list(range(1, len(decisions) + 1)), "a decision written twice"
    seqs = [d["data"]["assessment_frame_seq_num"] for d in decisions]
    assert [s for s in seqs if s >= 0] == list(range(1, len(primary) + 1))  # one per frame, in frame order
    # one per sample mounted (a pipelined run records a failed frame's at once, before those assessed)
    assert sorted(d["data"]["assessment_sample"] for d in decisions) == sorted(changer.mounted)
    verdicts = [d["data"]["assessment_verdict"] for d in decisions]
    if not aborted:
        assert changer.mounted == SAMPLES and "interrupted" not in verdicts
        assert seqs.count(-1) == len(bad)
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == ("abort" if aborted else "success")


@pytest.mark.parametrize("end", ["resume", "abort"])
@pytest.mark.parametrize("pipeline", [False, True], ids=["sequential", "pipelined"])
def test_a_pause_after_any_message_loses_and_repeats_nothing(tmp_path, recording_detector, monkeypatch,
                                                              pipeline, end):
    monkeypatch.setattr(plans.symmetry, "POLL_S", 0.002)
    tiny = tiny_agent(tmp_path / "ckpt", index_when_no_cell=False, min_peak_snr=1e-6)
    agent = _QuickAgent(tiny.classifier, tiny.config)
    RE = RunEngine({})
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    k = 0
    while True:
        k += 1
        docs.clear()
        det = recording_detector(name="det", instrument=INSTRUMENT, time_scale=0.0,
                                 rng=np.random.default_rng(k))
        changer = _Changer(name="changer", detector=det)
        det.changer = changer
        mutate, seen, commands = _pause_after(k)
        try:
            RE(mutate(symmetry_scan(det, samples=SAMPLES, changer=changer, agent=agent, max_remeasure=0,
                                    pipeline=pipeline)))
        except RunEngineInterrupted:
            if end == "resume":
                RE.resume()
            else:
                RE.abort(reason="test")
        else:
            assert seen() < k  # ran to the end before message k: every message has been tried
            break
        if not any(n == "start" for n, _ in docs):
            continue  # paused before the run opened: an abort leaves no run
        try:
            _check(docs, det, changer, aborted=end == "abort" and "close_run" not in commands[:k])
        except AssertionError as exc:
            raise AssertionError(f"paused after message {k}: {exc}") from exc
    assert k > 50, f"the plan sent only {k - 1} messages"
