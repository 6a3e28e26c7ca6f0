"""``symmetry_scan``: measure, let the agent decide, record the decision, count longer if asked.

The plan is the *suggest* side of the loop and the only thing that moves hardware; the
:class:`~ratagent.callbacks.AssessmentCallback` (subscribed for the run) ingests each frame
and runs the agent on a worker thread.
"""

import math
import time
from collections import deque
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.utils import Msg, RunEngineControlException

from plans.detector import awaited, read_frame_source
from ratagent.agent import Agent, Assessment
from ratagent.callbacks import AssessmentCallback, Result
from ratagent.catalog import CatalogWriteError

__all__ = ["ASSESSMENT_FIELDS", "N_TOP", "symmetry_scan"]

N_TOP = 5  # candidates recorded per assessment
POLL_S = 0.05  # seconds between looks at the queue (each look is also a checkpoint)
_PACKAGES = ("ratagent", "bluesky", "ophyd", "event-model", "numpy", "torch", "gemmi",
             "tiled", "bluesky-tiled-plugins")


class _Values:
    """A bluesky Readable of the values it was last given, each key prefixed with ``name``."""

    parent = None

    def __init__(self, name: str) -> None:
        self.name = name
        self._values: dict[str, Any] = {}

    def read(self) -> dict[str, dict[str, Any]]:
        t = time.time()
        return {f"{self.name}_{k}": {"value": v, "timestamp": t} for k, v in self._values.items()}


class _AssessmentReading(_Values):
    """The last Assessment, read into the ``symmetry`` stream."""

    def update(self, a: Assessment, *, sample: str, frame: int, attempt: int) -> None:
        def pad(values, fill):
            values = list(values)[:N_TOP]
            return values + [fill] * (N_TOP - len(values))

        cands = a.candidates
        v: dict[str, Any] = {
            "verdict": a.verdict,
            "reasons": " | ".join(a.reasons),
            "sample": sample,
            "frame_seq_num": int(frame),
            "attempt": int(attempt),
            "count_time": _num(a.count_time_s),
            "suggested_count_time": _num(a.suggested_count_time_s),
            "refined": int(a.refined),
            "indistinguishable": " ".join(map(str, a.indistinguishable)),
            "model_id": a.model_id or "",
            "peak_snr": _num(a.peak_snr),
            "elapsed": float(a.elapsed_s),
        }
        for i, (c, p, rwp) in enumerate(zip(pad([c.eg for c in cands], 0),
                                            pad([c.probability for c in cands], math.nan),
                                            pad([c.rwp for c in cands], None), strict=True), start=1):
            v[f"eg_{i}"] = int(c)
            v[f"probability_{i}"] = float(p)
            v[f"rwp_{i}"] = _num(rwp)
        self._values = v

    def describe(self) -> dict[str, dict[str, Any]]:
        out = {}
        for k, v in self._values.items():
            if isinstance(v, str):
                dk = {"dtype": "string", "shape": []}
            elif isinstance(v, int):
                dk = {"dtype": "integer", "shape": [], "dtype_numpy": "<i8"}
            else:
                dk = {"dtype": "number", "shape": [], "dtype_numpy": "<f8"}
            out[f"{self.name}_{k}"] = {"source": "ratagent.agent", **dk}
        return out


class _FitReading(_Values):
    """The leading candidate's Pawley profile, read into the ``fit`` stream:
    ``fit_frame_seq_num``, ``fit_eg`` and ``fit_calculated`` (y_c on the frame's grid)."""

    def update(self, frame: int, eg: int, calculated: np.ndarray) -> None:
        self._values = {"frame_seq_num": int(frame), "eg": int(eg),
                        "calculated": np.asarray(calculated, np.float64)}

    def describe(self) -> dict[str, dict[str, Any]]:
        n = int(self._values["calculated"].size)
        return {f"{self.name}_frame_seq_num": {"source": "ratagent.agent", "dtype": "integer", "shape": []},
                f"{self.name}_eg": {"source": "ratagent.agent", "dtype": "integer", "shape": []},
                f"{self.name}_calculated": {"source": "ratagent.agent", "dtype": "array", "shape": [n],
                                            "dtype_numpy": "<f8"}}


#: The fields of each ``symmetry`` event (prefixed with ``assessment_``).
ASSESSMENT_FIELDS = (
    "verdict", "reasons", "sample", "frame_seq_num", "attempt", "count_time", "suggested_count_time",
    "refined", "indistinguishable", "model_id", "peak_snr", "elapsed",
    *(f"{f}_{i}" for i in range(1, N_TOP + 1) for f in ("eg", "probability", "rwp")),
)  # fmt: skip


class _Frame:
    """A bluesky Readable holding one reading as measured, described with its own shapes.

    A frame whose shape differs from the stream's descriptor is stored through one of
    these in a stream of its own: the shared descriptor would make the writer pad or
    crop it (or fail), and altering data is worse than splitting a stream. Each array is
    stored with its shape as ``{key}_shape``; an array with no element is stored by its
    shape alone (a table column cannot hold it as an array).
    """

    parent = None

    def __init__(self, name: str, reading: dict[str, dict[str, Any]], described: dict[str, dict[str, Any]]):
        self.name = name
        self._reading: dict[str, dict[str, Any]] = {}
        self._described: dict[str, dict[str, Any]] = {}
        for key, r in reading.items():
            value = np.asarray(r["value"])
            dk = {k: v for k, v in described.get(key, {}).items() if k not in ("shape", "dtype_numpy")}
            dk.setdefault("source", f"ratagent:{key}")
            if value.ndim:
                shape = np.asarray(value.shape, np.int64)
                self._reading[f"{key}_shape"] = {**r, "value": shape}
                self._described[f"{key}_shape"] = {**dk, "dtype": "array", "dtype_numpy": shape.dtype.str,
                                                   "shape": [shape.size]}
                if not value.size:
                    continue
                dk.update(dtype="array", dtype_numpy=value.dtype.str)
            self._reading[key] = r
            self._described[key] = {**dk, "shape": list(value.shape)}

    def read(self) -> dict[str, dict[str, Any]]:
        return self._reading

    def describe(self) -> dict[str, dict[str, Any]]:
        return self._described


def _shape_problem(reading: dict[str, dict[str, Any]], described: dict[str, dict[str, Any]]) -> str | None:
    """Why a reading does not fit the shapes its descriptor states (None: it fits)."""
    for key, dk in described.items():
        if key not in reading or dk.get("dtype") != "array":
            continue
        want = [None if n is None or n < 0 else int(n) for n in dk.get("shape") or []]
        got = list(np.shape(reading[key]["value"]))
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got, strict=True)):
            return f"{key} has shape {tuple(got)} where the descriptor states {tuple(want)}"
    return None


def _unbroken(plan):
    """Plan: ``plan`` run to its end when the run is aborted or stopped during it; the abort
    (or stop) goes on once it is done.

    bluesky throws a ``RunEngineControlException`` into the plan at the message the
    RunEngine processed last, whose answer is then lost: ``plan`` is sent None for that
    message instead and goes on, so an event it has begun is written whole. Any other
    error reaches ``plan`` as usual; ``RE.halt()`` (``GeneratorExit``) lets nothing run.
    """
    held: RunEngineControlException | None = None
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            msg = plan.throw(error) if error is not None else plan.send(answer)
        except StopIteration as done:
            if held is not None:
                raise held from None
            return done.value
        except Exception as exc:
            if held is not None:
                raise held from exc
            raise
        answer, error = None, None
        try:
            answer = yield msg
        except RunEngineControlException as exc:
            held = held or exc
        except Exception as exc:
            error = exc


def _atomic(plan):
    """Plan: ``plan`` (the writing of events: a frame read, a decision) as one step of the run.

    A pause inside it rewinds nothing: bluesky would replay the messages since the last
    checkpoint on resume, reading the detector again (the frame read is discarded) or
    writing an event a second time. Checkpoints before and after it keep a pause on
    either side from replaying it, and an abort or stop inside it lets it finish
    (:func:`_unbroken`).
    """
    def step():
        yield from bps.checkpoint()
        was = yield Msg("rewindable", None, None)
        if was is not False:  # None: the answer was lost to an abort; bluesky's default is True
            yield Msg("rewindable", None, False)
        try:
            out = yield from plan
            yield from bps.checkpoint()
        except Exception:
            if was is not False:
                yield Msg("rewindable", None, True)
            raise
        if was is not False:
            yield Msg("rewindable", None, True)
        return out

    return (yield from _unbroken(step()))


def _read_checked(scan: "_Scan"):
    """``trigger_and_read`` into ``primary`` with the detector's frame checked first.

    A frame of another shape than the detector described at the run's first read (what
    the RunEngine caches for the stream's descriptor; kept in ``scan.described``) is not
    emitted into ``primary`` (which would alter it, or every other frame): it is stored
    as measured in a stream of its own, ``odd_frame_<n>``. Returns None for a good frame,
    else the reason it is odd.

    A pause during the exposure exposes again (nothing was read); from the first read on,
    the frame is stored once whatever the operator does (:func:`_atomic`).
    """
    from bluesky.utils import short_uid

    group = short_uid("trigger")
    for obj in scan.readables:
        if hasattr(obj, "trigger"):
            yield from bps.trigger(obj, group=group)
    yield from bps.wait(group=group)
    return (yield from _atomic(_store_frame(scan)))


def _store_frame(scan: "_Scan"):
    """Plan: read the frame and store it, in ``primary`` or, odd, in a stream of its own."""
    reading = None
    while reading is None:
        yield from bps.create("primary")
        answers = []
        try:
            for obj in scan.readables:
                answers.append((yield from bps.read(obj)))
        except Exception:  # the readout failed
            yield from bps.drop()  # close the bundle, so the run can still record a decision
            raise
        if any(r is None for r in answers):  # an abort took an answer: read the same frame again
            yield from bps.drop()
            continue
        reading = {k: v for r in answers for k, v in r.items()}
    described = scan.described
    if not described:  # an ophyd Signal describes the shape of its value now: keep the first
        described.update((yield from awaited(scan.detector.describe)))
    problem = _shape_problem(reading, described)
    if problem is None:
        yield from bps.save()
        return None
    yield from bps.drop()
    scan.odd += 1
    stream = f"odd_frame_{scan.odd}"
    own = {k: v for k, v in reading.items() if k in described}
    yield from bps.create(stream)
    yield from bps.read(_Frame(scan.detector.name, own, described))
    yield from bps.save()
    return f"{problem}: the frame is stored as measured in stream {stream!r} and not assessed"


def _cause(exc: BaseException) -> BaseException:
    """The device's own error behind a bluesky ``FailedStatus`` (else ``exc``)."""
    status = exc.args[0] if exc.args else None
    inner = status.exception() if hasattr(status, "exception") else None
    return inner if isinstance(inner, BaseException) else exc


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _instrument_for(detector, wavelength: float | None, radiation: str | None):
    """The default agent's instrument: ``radiation``, else the detector's; None for one line.

    ``wavelength`` (Å) is the scan's (:attr:`plans.detector.FrameSource.wavelength`): with an anode, its
    Kα1 must be it.

    Raises
    ------
    ValueError
        An unknown radiation, or one whose Kα1 is not the scan's wavelength.
    """
    from ratagent.instrument import Instrument

    if radiation is None:
        signal = getattr(detector, "radiation", None)
        radiation = str(signal.get()) if hasattr(signal, "get") else "mono"
    if radiation.lower() == "mono":
        return None  # the agent fits one line at each frame's own wavelength
    try:
        return Instrument.for_radiation(radiation, wavelength)
    except ValueError as exc:
        raise ValueError(f"{detector.name}: {exc}") from None


def _mounted_name(holder):
    """Plan: the name of the mounted sample from a changer's (or detector's) ``sample_name``;
    "" when it states none."""
    signal = getattr(holder, "sample_name", None)
    return "" if signal is None else str((yield from bps.rd(signal)))


def _versions() -> dict[str, str]:
    out = {}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _finished(callback: AssessmentCallback, seq: int, early: dict[int, Result]) -> Assessment | None:
    """The assessment of frame ``seq`` if the callback has handed it over, else None."""
    while not callback.results.empty():
        r = callback.results.get_nowait()
        early[r.seq_num] = r
    return early.pop(seq).assessment if seq in early else None


def _wait_for(callback: AssessmentCallback, seq: int, early: dict[int, Result], poll_s: float):
    """Poll the callback's queue for the assessment of frame ``seq``; yield sleeps and checkpoints."""
    while (a := _finished(callback, seq, early)) is None:
        yield from bps.checkpoint()
        yield from bps.sleep(poll_s)
    return a


def _check_samples(samples: list, changer) -> None:
    """Every sample name checked before the first exposure: a str, and mountable where the
    changer can say (its ``check_sample(name)`` raises ``ValueError`` for one it cannot)."""
    if not samples:
        raise ValueError("samples is empty: give at least one sample name, or None to measure what is "
                         "mounted")
    bad = [s for s in samples if not isinstance(s, str) or not s]
    if bad:
        raise TypeError(f"samples must be non-empty names (str), got {bad!r}")
    check = getattr(changer, "check_sample", None)
    if check is None:
        return
    problems = []
    for n, name in enumerate(samples, start=1):
        try:
            check(name)
        except ValueError as exc:
            problems.append(f"sample {n} of {len(samples)} ({name!r}): {exc}")
    if problems:
        raise ValueError(f"{changer.name} cannot mount every sample; nothing was measured: "
                         + "; ".join(problems))


@dataclass
class _Scan:
    """What one run of :func:`symmetry_scan` holds while it measures."""

    readables: list
    detector: Any
    callback: AssessmentCallback
    recorder: _AssessmentReading
    agent: Agent
    early: dict[int, Result] = field(default_factory=dict)  # assessments handed over before their turn
    odd: int = 0  # odd frames stored so far (each in its own stream)
    described: dict[str, Any] = field(default_factory=dict)  # the detector's description at the first read
    frame_key: str = ""  # data key of the frame
    fit: _FitReading = field(default_factory=lambda: _FitReading("fit"))

    def fits_the_frame(self, a: Assessment) -> bool:
        """Whether ``a`` has a Pawley profile on the grid of this run's frames."""
        shape = self.described.get(self.frame_key, {}).get("shape")
        return a.fit is not None and shape is not None and list(np.shape(a.fit)) == list(shape)

    def record(self, a: Assessment, *, label: str, frame: int, attempt: int):
        """Emit ``a`` as the next ``symmetry`` event (its Pawley profile first, to ``fit``,
        when it has one on the frame's grid: a live view draws it with its decision), once
        whatever the operator does (:func:`_atomic`)."""
        def events():
            if frame >= 0 and self.fits_the_frame(a):
                self.fit.update(frame, a.candidates[0].eg, a.fit)
                yield from bps.trigger_and_read([self.fit], name="fit")
            self.recorder.update(a, sample=label, frame=frame, attempt=attempt)
            yield from bps.trigger_and_read([self.recorder], name="symmetry")

        yield from _atomic(events())


def _expose(scan: _Scan, t: float, attempt: int, exposure, *, label: str = "", mount=None, pending=None):
    """Mount the sample (``mount``: a plan that returns its label), set the count time,
    expose and read one frame into ``primary``; returns the label, the frame's
    ``seq_num``, and None, or −1 and the failure (a failed readout, an odd frame) as the
    frame's assessment.

    When the run ends (abort, stop, Ctrl-C, or the catalog failing to take the frame: its
    documents then go to the spool file) before the frame is stored, the exposure is
    recorded as cut short (``verdict="interrupted"``, frame −1); when it ends after, the
    frame's decision is recorded like those of ``pending`` (frames read before it, by
    ``seq_num``), which come first. Then the error goes on.
    """
    before = scan.callback.last_seq
    try:
        if mount is not None:
            label = yield from mount
        yield from bps.mv(exposure, t)
        yield from bps.checkpoint()
        try:
            problem = yield from _read_checked(scan)
        except (RunEngineControlException, CatalogWriteError):
            raise
        except Exception as exc:  # the readout failed: the frame's flag, not the run's end
            problem = _cause(exc)
    except (RunEngineControlException, CatalogWriteError) as exc:
        owed = dict(pending or {})
        stored = scan.callback.last_seq is not None and scan.callback.last_seq != before
        if stored:
            owed[scan.callback.last_seq] = _InFlight(None, label, attempt, t)
        yield from _record_unfinished(scan, owed, exc)
        if not stored:
            a = Assessment.interrupted(f"{type(exc).__name__} during the exposure: no frame was assessed",
                                       count_time_s=t, model_id=scan.agent.model_id)
            yield from scan.record(a, label=label, frame=-1, attempt=attempt)
        if pending is not None:
            pending.clear()
        raise
    if problem is not None:
        return label, -1, Assessment.failure(problem, count_time_s=t, model_id=scan.agent.model_id)
    return label, scan.callback.last_seq, None


class _InFlight(NamedTuple):
    """A frame read into ``primary`` whose assessment has not been recorded yet."""

    name: Any  # the sample name given to the plan (None: what was mounted)
    label: str
    attempt: int
    count_time: float


def _record_unfinished(scan: _Scan, pending: dict[int, _InFlight], exc: BaseException):
    """Record a decision for every frame still assessed when the run ends: the agent's
    result if it has come, else ``verdict="interrupted"``."""
    for seq, f in sorted(pending.items()):
        a = _finished(scan.callback, seq, scan.early)
        if a is None:
            a = Assessment.interrupted(exc, count_time_s=f.count_time, model_id=scan.agent.model_id)
        yield from scan.record(a, label=f.label, frame=seq, attempt=f.attempt)


def _frame_and_decision(scan: _Scan, t: float, attempt: int, exposure, *, label: str = "", mount=None):
    """(Mount and) expose and read one frame, then wait for its assessment; returns it, the
    frame's ``seq_num`` (−1 when no frame reached ``primary``) and the sample's label.

    A failed readout or an odd frame is the frame's flag, not the run's end. When the run
    ends (abort, stop, Ctrl-C) while the frame is assessed, its decision is still stored:
    the agent's result if it has come, else ``verdict="interrupted"``.
    """
    label, seq, failure = yield from _expose(scan, t, attempt, exposure, label=label, mount=mount)
    if failure is not None:
        return failure, seq, label
    try:
        return (yield from _wait_for(scan.callback, seq, scan.early, POLL_S)), seq, label
    except Exception as exc:
        yield from _record_unfinished(scan, {seq: _InFlight(None, label, attempt, t)}, exc)
        raise


def _next_count_time(a: Assessment, t: float, attempt: int, max_remeasure: int, max_count_time: float):
    """The count time of the next measurement of a sample, or None when it is decided."""
    if a.verdict != "remeasure" or a.suggested_count_time_s is None or attempt >= max_remeasure:
        return None
    return float(np.clip(a.suggested_count_time_s, t, max_count_time))


def _sequential(scan: _Scan, names: list, mount, exposure, count_time, max_count_time, max_remeasure):
    """Each sample in turn: measure, wait for the decision, re-measure while asked."""
    for name in names:
        label, t, attempt = name or "", float(count_time), 0
        while t is not None:
            a, seq, label = yield from _frame_and_decision(scan, t, attempt, exposure, label=label,
                                                           mount=mount(name) if attempt == 0 else None)
            yield from scan.record(a, label=label, frame=seq, attempt=attempt)
            t, attempt = _next_count_time(a, t, attempt, max_remeasure, max_count_time), attempt + 1


def _pipelined(scan: _Scan, names: list, mount, exposure, count_time, max_count_time, max_remeasure):
    """Measure the next sample while the last frames are assessed; come back to a sample
    whose verdict asks for more counting after the samples already queued (time order).

    Decisions are recorded in frame order as they arrive; the plan waits only when there
    is nothing left to measure.
    """
    todo = deque((name, 0, float(count_time)) for name in names)
    pending: dict[int, _InFlight] = {}  # by the frame's seq_num
    try:
        while todo or pending:
            if todo:
                name, attempt, t = todo.popleft()
                label, seq, failure = yield from _expose(scan, t, attempt, exposure, label=name or "",
                                                         mount=mount(name), pending=pending)
                if failure is not None:
                    yield from scan.record(failure, label=label, frame=seq, attempt=attempt)
                else:
                    pending[seq] = _InFlight(name, label, attempt, t)
            else:
                yield from bps.checkpoint()
                yield from bps.sleep(POLL_S)
            for seq in sorted(pending):  # in frame order: stop at the first one still assessed
                a = _finished(scan.callback, seq, scan.early)
                if a is None:
                    break
                f = pending.pop(seq)
                yield from scan.record(a, label=f.label, frame=seq, attempt=f.attempt)
                t = _next_count_time(a, f.count_time, f.attempt, max_remeasure, max_count_time)
                if t is not None:
                    todo.append((f.name, f.attempt + 1, t))
    except Exception as exc:
        yield from _record_unfinished(scan, pending, exc)
        raise


def _check_arguments(count_time, max_count_time, max_remeasure, samples, changer, cell) -> list[float] | None:
    """The plan's arguments checked before anything moves; the cell as six floats (or None)."""
    if not (math.isfinite(count_time) and count_time > 0):
        raise ValueError(f"count_time must be a positive number of seconds, got {count_time!r}")
    if not (math.isfinite(max_count_time) and max_count_time >= count_time):
        raise ValueError(f"max_count_time must be >= count_time={count_time}, got {max_count_time!r}")
    if not isinstance(max_remeasure, int) or max_remeasure < 0:
        raise ValueError(f"max_remeasure must be an integer >= 0, got {max_remeasure!r}")
    if isinstance(samples, str):
        raise TypeError(f"samples must be a list of sample names, got the string {samples!r}; "
                        f"pass samples=[{samples!r}]")
    if samples is not None and changer is None:
        raise ValueError(f"samples={list(samples)} need a changer to mount them")
    if samples is not None:
        _check_samples(list(samples), changer)
    if cell is not None:
        cell = [float(v) for v in cell]
        if len(cell) != 6:
            raise ValueError(f"cell must be six numbers (a, b, c, α, β, γ), got {cell}")
    return cell


def _check_agent(agent, checkpoint, agent_config, radiation) -> None:
    """``agent`` is an Agent, or None with the default agent's settings (checked before anything moves)."""
    if agent is None:
        return
    given = {k: v for k, v in (("radiation", radiation), ("checkpoint", checkpoint),
                               ("agent_config", agent_config)) if v is not None}
    if given:
        raise ValueError(f"{', '.join(f'{k}={v!r}' for k, v in given.items())}: for the default agent "
                         "only; build the agent you pass with them (Agent(load(checkpoint), "
                         "AgentConfig(...), instrument=Instrument.for_radiation(...)))")
    if not isinstance(agent, Agent):
        raise TypeError(f"agent must be a ratagent.agent.Agent, got {type(agent).__name__}")


def _the_agent(agent, detector, source, checkpoint, agent_config, radiation, max_count_time) -> Agent:
    """``agent``, or the default one (``checkpoint``, ``agent_config``, ``radiation``), with
    the plan's ``max_count_time``."""
    if agent is None:
        from ratagent.agent import AgentConfig
        from ratagent.model import load

        try:
            config = AgentConfig(**(agent_config or {}))
        except TypeError as exc:
            raise ValueError(f"agent_config={agent_config!r}: {exc}") from None
        instrument = _instrument_for(detector, source.wavelength,
                                     radiation if radiation is not None else source.radiation)
        agent = Agent(load(checkpoint), config, instrument=instrument)
    if agent.config.max_count_time_s != max_count_time:  # a copy: the caller's agent is left as it is
        from copy import copy
        from dataclasses import replace

        agent = copy(agent)  # of its own class, with what it holds
        agent.config = replace(agent.config, max_count_time_s=float(max_count_time))
    return agent


def _start_document(detector, source, changer, samples, agent, **args) -> dict[str, Any]:
    """The start document's plan name, arguments, model id, thresholds, radiation and versions."""
    from dataclasses import asdict

    return {
        "plan_name": "symmetry_scan",
        "detectors": [detector.name],
        "plan_args": {"detector": repr(detector), "field": source.field, "exposure": source.exposure.name,
                      "two_theta": source.two_theta_key, "wavelength": source.wavelength_key,
                      "samples": None if samples is None else list(samples),
                      "changer": None if changer is None else repr(changer), **args},
        "ratagent": {"model_id": agent.model_id, "agent_config": asdict(agent.config),
                     "radiation": "mono" if agent.instrument is None else agent.instrument.radiation,
                     "versions": _versions()},
        "num_samples": 1 if samples is None else len(samples),
    }


def symmetry_scan(
    detector,
    *,
    samples: list[str] | None = None,
    changer=None,
    field=None,
    exposure=None,
    two_theta=None,
    wavelength=None,
    count_time: float = 1.0,
    max_count_time: float = 60.0,
    max_remeasure: int = 3,
    cell: list[float] | None = None,
    agent=None,
    checkpoint: str | None = None,
    agent_config: dict | None = None,
    radiation: str | None = None,
    pipeline: bool = False,
    md: dict | None = None,
):
    """Measure samples and decide each one's extinction group live, counting longer when asked.

    For each sample: mount it (through ``changer``), expose ``detector`` for ``count_time``,
    read the frame (``primary`` stream), wait for the agent's assessment while the
    RunEngine stays responsive (pause, resume and Ctrl-C work during a fit), record it as
    an event of the ``symmetry`` stream, and re-measure with the suggested count time
    while the verdict is ``remeasure`` (at most ``max_remeasure`` times).

    Parameters
    ----------
    detector : Device
        Any ophyd device that reads a one-dimensional pattern (staged and unstaged by the
        plan), e.g. :class:`sim_beamline.devices.PowderDetector`, which states its own
        exposure, 2θ axis and wavelength; for others, say where they come from with the
        next four arguments (:func:`plans.detector.frame_source`). What is missing is
        named before the first exposure.
    field : signal or str, optional
        The detector's pattern (default: its only one-dimensional field).
    exposure : signal, optional
        The settable signal of the exposure time, s (default: ``detector.count_time``,
        else ``detector.cam.acquire_time``).
    two_theta : array or signal, optional
        2θ of every channel, degrees (default: the detector's ``two_theta`` configuration).
    wavelength : float or signal, optional
        Å, or a signal read with every frame, e.g.
        ``plans.wavelength_from_energy(mono.energy)`` (default: the detector's
        ``wavelength`` configuration).
    samples : list of str, optional
        Sample names to mount through ``changer``, in order. None: measure what is mounted.
        All are checked before the first exposure, through the changer's
        ``check_sample(name)`` where it has one.
    changer : Device, optional
        Sample changer (``set(name)`` mounts; its ``cell`` field, NaN for unknown, gives
        the agent each sample's cell). Required when ``samples`` is given. Without one,
        the sample's name and cell come from the detector's ``sample_name`` and ``cell``
        signals where it has them (the simulated detector's :attr:`sample`).
    count_time : float
        First count time of every sample, s.
    max_count_time : float
        Longest count time the agent may ask for, s.
    max_remeasure : int
        Most re-measurements per sample.
    cell : list of 6 floats, optional
        (a, b, c, α, β, γ) in Å and degrees for every sample (overrides the changer's).
        Without a cell the agent gives the posterior only and says it did not refine.
    agent : ratagent.agent.Agent, optional
        Default: an agent on ``checkpoint`` (the shipped one: ``ratagent.model.load()``)
        with ``agent_config`` and an instrument with the lines of ``radiation``.
    checkpoint : str, optional
        For the default agent: a checkpoint directory.
    agent_config : dict, optional
        For the default agent: :class:`~ratagent.agent.AgentConfig` fields, e.g.
        ``{"max_network_rank": 30}`` (plain values, so a queueserver item can carry them).
    radiation : str, optional
        For the default agent: the tube anode (``"Cu"``, ``"Mo"``…: Kα1/Kα2,
        :data:`ratagent.instrument.RADIATIONS`) or ``"mono"`` (one line at the detector's
        wavelength). Default: the detector's ``radiation`` configuration signal where it
        has one, else ``"mono"``. Recorded in the start document.
    pipeline : bool
        Measure the next sample while the agent assesses the last frames, instead of
        waiting for each decision: the beamline is idle only for the last decisions. A
        sample whose verdict asks for more counting is measured again after the samples
        already queued. Decisions are recorded in frame order as they arrive.
    md : dict, optional
        Metadata merged into the start document.

    Yields
    ------
    msg : Msg
        Messages for the RunEngine.

    Notes
    -----
    The start document records the plan arguments, the model id of the checkpoint, the
    agent's thresholds and the versions of the packages involved. Each ``symmetry``
    event holds ``assessment_verdict``, ``assessment_eg_1..5``,
    ``assessment_probability_1..5``, ``assessment_rwp_1..5``, ``assessment_reasons``,
    ``assessment_count_time`` and ``assessment_suggested_count_time``
    (see :data:`ASSESSMENT_FIELDS`); its ``assessment_frame_seq_num`` is the ``seq_num``
    of the ``primary`` event assessed (−1 when there is none: the readout failed, the
    frame was odd and went to its own ``odd_frame_<n>`` stream, or the run ended during
    the exposure). When the run ends (abort, stop, Ctrl-C) while a frame is exposed or
    assessed, its event is still written: the agent's result if it has come, else
    ``verdict="interrupted"``. (``RE.halt()`` lets a plan write nothing more: the frames
    read are stored, the decision in progress not.)
    """
    cell = _check_arguments(count_time, max_count_time, max_remeasure, samples, changer, cell)
    _check_agent(agent, checkpoint, agent_config, radiation)
    source = yield from read_frame_source(detector, field=field, exposure=exposure, two_theta=two_theta,
                                          wavelength=wavelength)
    agent = _the_agent(agent, detector, source, checkpoint, agent_config, radiation, max_count_time)

    # the sample's cell: ``cell`` for all, else the changer's per sample, else the one the
    # detector states for what is mounted (a configuration signal ``cell``)
    own_cell = getattr(detector, "cell", None)
    callback = AssessmentCallback(
        agent, detector.name, field=source.field, two_theta_key=source.two_theta_key,
        wavelength_key=source.wavelength_key, count_time_key=source.count_time_key, cell=cell,
        cell_field=changer.cell.name if changer is not None and cell is None else None,
        cell_key=own_cell.name if changer is None and cell is None and own_cell is not None else None)
    recorder = _AssessmentReading("assessment")
    readables = [detector, *source.readables] + ([] if changer is None else [changer])
    _md = {**_start_document(detector, source, changer, samples, agent, count_time=count_time,
                             max_count_time=max_count_time, max_remeasure=max_remeasure, cell=cell,
                             pipeline=bool(pipeline)),
           **(md or {})}

    def mount(name):
        """Mount sample ``name`` (None: what is mounted); returns its label."""
        if name is not None:
            yield from bps.mv(changer, name)
            return name
        return (yield from _mounted_name(changer if changer is not None else detector))

    measure = _pipelined if pipeline else _sequential

    @bpp.stage_decorator([detector])
    @bpp.subs_decorator(callback)
    @bpp.run_decorator(md=_md)
    def inner():
        scan = _Scan(readables, detector, callback, recorder, agent, frame_key=source.field)
        yield from measure(scan, list(samples) if samples is not None else [None], mount, source.exposure,
                           count_time, max_count_time, max_remeasure)

    return (yield from inner())
