"""A live view of the decisions: each ``symmetry`` event as a row of a table, while the scan runs.

Bluesky's ``BestEffortCallback`` prints the ``primary`` table and only announces the
``symmetry`` stream. Subscribe :class:`LiveAssessmentTable` beside it to see every
decision as it is made::

    RE.subscribe(LiveAssessmentTable())
    RE(symmetry_scan(det, samples=[...], changer=changer))
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["LiveAssessmentTable"]


def _num(x: float, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


class LiveAssessmentTable:
    """A callback that shows each ``symmetry`` event as a row of a rich table, live.

    Columns: frame, sample, count time, verdict, the leading EGs (in the agent's order:
    by Pawley evidence when refined, else by posterior) with their posterior
    probabilities, the best Rwp, the count time asked for next, the assessment's wall
    time and its last reason (why it was accepted, flagged or counted again).
    """

    COLUMNS = ("frame", "sample", "count / s", "verdict", "leading EGs (posterior p)", "best Rwp",
               "next count / s", "took / s", "why")

    def __init__(self, console: Any = None, *, reason_width: int = 60) -> None:
        from rich.console import Console
        from rich.table import Table

        self.console = console or Console()
        self.table = Table(title="symmetry_scan — decisions")
        for c in self.COLUMNS[:-1]:
            self.table.add_column(c, overflow="fold")
        # the reason, cut with an ellipsis rather than folded down the screen
        self.table.add_column(self.COLUMNS[-1], overflow="ellipsis", no_wrap=True,
                              max_width=reason_width // 2)
        self.rows: list[tuple[str, ...]] = []
        self.reason_width = reason_width
        self._live = None
        self._streams: dict[str, str] = {}

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            from rich.live import Live

            self._live = Live(self.table, console=self.console, refresh_per_second=4)
            self._live.start()
        elif name == "descriptor":
            self._streams[doc["uid"]] = doc["name"]
        elif name == "event" and self._streams.get(doc["descriptor"]) == "symmetry":
            row = self.row(doc["data"])
            self.rows.append(row)
            self.table.add_row(*row)
        elif name == "stop" and self._live is not None:
            self._live.stop()
            self._live = None

    def row(self, d: dict[str, Any]) -> tuple[str, ...]:
        """The cells of one ``symmetry`` event's row."""
        egs = [(d.get(f"assessment_eg_{i}", 0), d.get(f"assessment_probability_{i}")) for i in range(1, 4)]
        top = ", ".join(f"{eg} ({_num(p, '.2f')})" for eg, p in egs if eg > 0) or "—"
        reasons = [r for r in str(d.get("assessment_reasons", "")).split(" | ") if r]
        why = reasons[-1] if reasons else ""
        if len(why) > self.reason_width:
            why = why[: self.reason_width - 1] + "…"
        return (str(d["assessment_frame_seq_num"]), str(d["assessment_sample"]),
                _num(d["assessment_count_time"], ".3g"), str(d["assessment_verdict"]), top,
                _num(d["assessment_rwp_1"], ".3f"), _num(d["assessment_suggested_count_time"], ".3g"),
                _num(d["assessment_elapsed"], ".2f"), why)
