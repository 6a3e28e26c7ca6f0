"""The *ingest* half of the live loop: Bluesky documents in, :class:`~ratagent.agent.Assessment`
out through a queue (the ingest/suggest split of bluesky-adaptive).

:class:`AssessmentCallback` is an event-model ``DocumentRouter``. For every event of the
detector's stream it builds a :class:`~ratagent.patterns.Pattern` from

* the pattern field (``field``, or the detector's only one-dimensional array field),
* the 2θ axis: given as an array, else from the descriptor's **configuration** of any
  object (key ``{detector}_two_theta`` unless named otherwise: a detector calibration),
* the wavelength: given, else from the event (a monochromator's signal read with every
  frame), else from the configuration (key ``{detector}_wavelength`` unless named),
* the count time from the event (``{detector}_count_time``), else from the configuration,

and hands it to the agent on a worker thread, so a Pawley fit that takes seconds never
stalls the RunEngine. Nothing has a silent default: a missing axis or wavelength makes
that frame's assessment a ``flag`` that names what is missing. Every ingested event yields
exactly one :class:`Result` on :attr:`AssessmentCallback.results`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from event_model import DocumentRouter

from ratagent.agent import Agent, Assessment
from ratagent.patterns import Pattern

__all__ = ["AssessmentCallback", "FrameKeys", "Result"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """One assessment handed from the worker thread to the plan."""

    seq_num: int  # seq_num of the event assessed (in its stream)
    event_uid: str
    assessment: Assessment


@dataclass(frozen=True)
class FrameKeys:
    """Where a frame's pieces live in a descriptor (resolved once per descriptor)."""

    field: str  # event data key of the intensities
    two_theta: np.ndarray | None  # 2θ axis, degrees (None: not found → flag with `problem`)
    wavelength: float | None  # Å
    count_time: float | None  # s
    problem: str | None = None  # why a frame of this descriptor cannot be assessed
    cell: tuple[float, ...] | None = None  # the sample's cell from the configuration (None: unknown)


class AssessmentCallback(DocumentRouter):
    """Run the agent on every frame of a detector, on a worker thread.

    Parameters
    ----------
    agent : Agent
    detector : str
        Name of the detector object (its ``name``, the key of ``descriptor["object_keys"]``
        and ``descriptor["configuration"]``).
    field : str, optional
        Event data key of the intensities. Default: the detector's only one-dimensional
        array field (an error if there are none or several).
    two_theta_key, wavelength_key, count_time_key : str, optional
        Data keys (event or configuration of any object); defaults
        ``{detector}_two_theta``, ``{detector}_wavelength``, ``{detector}_count_time``.
    two_theta : array, optional
        The 2θ axis of every frame, degrees (instead of ``two_theta_key``).
    wavelength : float, optional
        The wavelength of every frame, Å (instead of ``wavelength_key``).
    cell : six floats, optional
        Cell handed to the agent for every frame, unless ``cell_field`` gives one per event.
    cell_field : str, optional
        Event data key of a per-sample cell (e.g. from a sample changer); NaN means unknown.
    cell_key : str, optional
        Configuration key of the detector holding the sample's cell (NaN: unknown), for a
        detector that knows what is mounted; used when neither ``cell`` nor
        ``cell_field`` gives one.
    stream_name : str
        Stream whose events are frames.
    """

    def __init__(
        self,
        agent: Agent,
        detector: str,
        *,
        field: str | None = None,
        two_theta_key: str | None = None,
        wavelength_key: str | None = None,
        count_time_key: str | None = None,
        two_theta: Any = None,
        wavelength: float | None = None,
        cell: Any = None,
        cell_field: str | None = None,
        cell_key: str | None = None,
        stream_name: str = "primary",
    ) -> None:
        super().__init__()
        if not hasattr(agent, "assess_safely"):
            raise TypeError(f"agent must be a ratagent.agent.Agent, got {type(agent).__name__}")
        if not detector:
            raise ValueError("detector must name the detector object, got an empty name")
        self.agent = agent
        self.detector = detector
        self.field = field
        self.two_theta_key = two_theta_key or f"{detector}_two_theta"
        self.wavelength_key = wavelength_key or f"{detector}_wavelength"
        self.count_time_key = count_time_key or f"{detector}_count_time"
        self.two_theta = None if two_theta is None else np.asarray(two_theta, float)
        self.wavelength = None if wavelength is None else float(wavelength)
        self.cell = None if cell is None else tuple(float(v) for v in cell)
        self.cell_field = cell_field
        self.cell_key = cell_key
        self.stream_name = stream_name
        self.results: queue.Queue[Result] = queue.Queue()
        self.last_seq: int | None = None  # seq_num of the last frame ingested (set synchronously)
        self._keys: dict[str, FrameKeys] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._futures: list[Future] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ documents

    def start(self, doc):
        self._keys.clear()
        self.last_seq = None
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ratagent-agent")
        return doc

    def descriptor(self, doc):
        if doc.get("name") == self.stream_name:
            self._keys[doc["uid"]] = self._resolve(doc)
        return doc

    def event(self, doc):
        keys = self._keys.get(doc["descriptor"])
        if keys is None:
            return doc
        self.last_seq = int(doc["seq_num"])
        count_time = keys.count_time
        if self.count_time_key in doc["data"]:
            count_time = float(doc["data"][self.count_time_key])
        wavelength = keys.wavelength
        if keys.problem is None and wavelength is None:  # read with every frame
            keys = _with_wavelength(keys, doc["data"].get(self.wavelength_key), self.wavelength_key)
            wavelength = keys.wavelength
        if keys.problem is not None:
            self._put(doc, Assessment.failure(keys.problem, count_time_s=count_time,
                                              model_id=self.agent.model_id))
            return doc
        try:
            pattern = Pattern(keys.two_theta, doc["data"][keys.field], wavelength,
                              meta={"event_uid": doc["uid"], "seq_num": doc["seq_num"],
                                    "count_time_s": count_time})
            cell = self._cell(doc, keys)
        except (ValueError, TypeError, KeyError) as exc:
            self._put(doc, Assessment.failure(exc, count_time_s=count_time, model_id=self.agent.model_id))
            return doc
        self._submit(doc, pattern, cell, count_time)
        return doc

    def stop(self, doc):
        self.close(wait=False)
        return doc

    # ------------------------------------------------------------------ the plan's side

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted assessment is done (for tests and shutdown)."""
        with self._lock:
            futures = list(self._futures)
        for fut in futures:
            try:
                fut.exception(timeout=timeout)
            except TimeoutError:
                return False
        return True

    def close(self, wait: bool = True) -> None:
        """Stop the worker thread (an assessment in flight still finishes and is queued)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=False)

    # ------------------------------------------------------------------ internals

    def _resolve(self, desc: dict) -> FrameKeys:
        own = desc.get("object_keys", {}).get(self.detector)
        if own is None:
            return FrameKeys("", None, None, None,
                             f"stream {self.stream_name!r} has no object {self.detector!r} "
                             f"(objects: {sorted(desc.get('object_keys', {}))})")
        config = {k: v for obj in desc.get("configuration", {}).values()
                  for k, v in obj.get("data", {}).items()}
        count_time = config.get(self.count_time_key)
        count_time = None if count_time is None else float(count_time)
        field = self.field
        if field is None:
            arrays = [k for k in own if len(desc["data_keys"][k].get("shape") or []) == 1]
            if len(arrays) != 1:
                return FrameKeys("", None, None, count_time,
                                 f"cannot tell which field of {self.detector!r} is the pattern: "
                                 f"one-dimensional fields {arrays}; pass field=")
            field = arrays[0]
        elif field not in desc["data_keys"]:
            return FrameKeys(field, None, None, count_time,
                             f"field {field!r} is not in the stream (keys: {sorted(desc['data_keys'])})")
        two_theta = self.two_theta if self.two_theta is not None else config.get(self.two_theta_key)
        per_event = self.wavelength is None and self.wavelength_key in desc["data_keys"]
        wavelength = self.wavelength if self.wavelength is not None else config.get(self.wavelength_key)
        missing = [k for k, v in ((self.two_theta_key, two_theta), (self.wavelength_key, wavelength))
                   if v is None and not (k == self.wavelength_key and per_event)]
        if missing:
            return FrameKeys(field, None, None, count_time,
                             f"the stream holds no {missing}: the 2θ axis and the wavelength must come from "
                             "the instrument (a configuration or data key, or given), never a default")
        try:
            cell = None if self.cell_key is None else _known_cell(config.get(self.cell_key), self.cell_key)
            two_theta = np.asarray(two_theta, float)
        except (TypeError, ValueError) as exc:
            return FrameKeys(field, None, None, count_time, f"unreadable 2θ axis or cell: {exc}")
        keys = FrameKeys(field, two_theta, None, count_time, cell=cell)
        return keys if per_event else _with_wavelength(keys, wavelength, self.wavelength_key)

    def _cell(self, doc: dict, keys: FrameKeys) -> tuple[float, ...] | None:
        if self.cell_field is not None and self.cell_field in doc["data"]:
            cell = _known_cell(doc["data"][self.cell_field], self.cell_field)
            if cell is not None:
                return cell
        return self.cell if self.cell is not None else keys.cell

    def _put(self, doc: dict, assessment: Assessment) -> None:
        self.results.put(Result(int(doc["seq_num"]), doc["uid"], assessment))

    def _submit(self, doc: dict, pattern: Pattern, cell, count_time: float | None) -> None:
        seq, uid = int(doc["seq_num"]), doc["uid"]
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ratagent-agent")
            fut = self._executor.submit(self.agent.assess_safely, pattern, cell=cell, count_time=count_time)
            self._futures = [f for f in self._futures if not f.done()] + [fut]

        def done(f: Future) -> None:
            exc = f.exception()
            a = f.result() if exc is None else Assessment.failure(exc, count_time_s=count_time)
            self.results.put(Result(seq, uid, a))

        fut.add_done_callback(done)


def _known_cell(value: Any, key: str) -> tuple[float, ...] | None:
    """Six cell parameters from a stored value; None for no value or all NaN (unknown)."""
    if value is None:
        return None
    cell = np.asarray(value, float).reshape(-1)
    if cell.size == 6 and np.isfinite(cell).all():
        return tuple(cell.tolist())
    if cell.size and np.isnan(cell).all():
        return None
    raise ValueError(f"{key} must be six numbers (or all NaN: unknown), got {cell}")


def _with_wavelength(keys: FrameKeys, value: Any, key: str) -> FrameKeys:
    """``keys`` with the wavelength ``value`` (Å), or with the problem it has."""
    from dataclasses import replace

    try:
        wavelength = float(value)
    except (TypeError, ValueError):
        return replace(keys, problem=f"{key} = {value!r}: not a wavelength")
    if not math.isfinite(wavelength) or wavelength <= 0:
        return replace(keys, problem=f"{key} = {wavelength}: the instrument states no wavelength "
                                     "(ratagent never assumes one)")
    return replace(keys, wavelength=wavelength)
