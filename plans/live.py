"""A live view of the decisions while the scan runs: a table, and a figure.

Bluesky's ``BestEffortCallback`` prints the ``primary`` table and only announces the
``symmetry`` stream. Subscribe :class:`LiveAssessmentTable` beside it to see every
decision as a row as it is made, and :class:`LiveAssessmentFigure` to see the frame, the
leading candidate's Pawley fit with its difference curve, and the posterior bars::

    RE.subscribe(LiveAssessmentTable())
    RE.subscribe(LiveAssessmentFigure())
    RE(symmetry_scan(det, samples=[...], changer=changer))
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["LiveAssessmentFigure", "LiveAssessmentTable"]


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
            if not self.console.is_terminal:  # rich leaves a file's or a pipe's last line open
                self.console.line()

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


class LiveAssessmentFigure:
    """A callback that draws each decision: frame and fit above, posterior bars below.

    From the run's documents alone: the frame (``primary``, its 2θ axis from the
    descriptor's configuration), the leading candidate's Pawley profile (``fit``) with
    the difference curve, and the leading EGs with their posterior probabilities and
    the verdict (``symmetry``). Works headless (any matplotlib backend); ``figure`` is
    redrawn for every decision.

    Parameters
    ----------
    figure : matplotlib Figure, optional
        Where to draw (default: a new one from ``matplotlib.pyplot``).
    frame_key : str, optional
        Data key of the frame (default: the ``primary`` stream's 1-D array as long as the
        2θ axis, else its longest).
    """

    def __init__(self, figure: Any = None, *, frame_key: str | None = None) -> None:
        if figure is None:
            import matplotlib.pyplot as plt

            figure = plt.figure(figsize=(9, 6))
        self.figure = figure
        self.frame_key = frame_key
        self.ax_frame, self.ax_bars = figure.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]})
        self._streams: dict[str, str] = {}
        self._two_theta = None
        self._frames: dict[int, Any] = {}
        self._fits: dict[int, tuple[int, Any]] = {}
        self.drawn = 0  # decisions drawn so far

    def __call__(self, name: str, doc: dict) -> None:
        if name == "descriptor":
            self._streams[doc["uid"]] = doc["name"]
            if doc["name"] == "primary":
                self._axis(doc)
        elif name == "event":
            stream = self._streams.get(doc["descriptor"])
            if stream == "primary" and self.frame_key in doc["data"]:
                self._frames[int(doc["seq_num"])] = doc["data"][self.frame_key]
            elif stream == "fit":
                d = doc["data"]
                self._fits[int(d["fit_frame_seq_num"])] = (int(d["fit_eg"]), d["fit_calculated"])
            elif stream == "symmetry":
                self.draw(doc["data"])

    def _axis(self, desc: dict) -> None:
        import numpy as np

        for conf in desc.get("configuration", {}).values():
            for k, v in conf.get("data", {}).items():
                if k.endswith("two_theta") and np.ndim(v) == 1:
                    self._two_theta = np.asarray(v, float)
        if self.frame_key is None:  # the 1-D array as long as the 2θ axis, else the longest
            arrays = {k: (dk.get("shape") or [0])[0] for k, dk in desc["data_keys"].items()
                      if len(dk.get("shape") or []) == 1}
            n = None if self._two_theta is None else self._two_theta.size
            self.frame_key = max(arrays, key=lambda k: (arrays[k] == n, arrays[k]), default=None)

    def draw(self, d: dict[str, Any]) -> None:
        """Redraw for one ``symmetry`` event's data."""
        import numpy as np

        from ratagent.model.report import draw_fit

        seq = int(d["assessment_frame_seq_num"])
        ax, bars = self.ax_frame, self.ax_bars
        ax.clear()
        bars.clear()
        frame = self._frames.get(seq)
        if frame is not None:
            y = np.asarray(frame, float)
            x = self._two_theta if self._two_theta is not None and self._two_theta.size == y.size \
                else np.arange(y.size)
            eg, yc = self._fits.get(seq, (None, None))
            draw_fit(ax, x, y, yc, data_label="frame", fit_label=f"Pawley fit, EG {eg}")
            ax.set_xlabel("2θ / °" if x is self._two_theta else "channel")
            ax.set_ylabel("counts")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"{d.get('assessment_sample', '')}, frame {seq}: {d['assessment_verdict']} "
                     f"(Rwp {_num(d.get('assessment_rwp_1'), '.3f')})", fontsize=10)
        egs = [(int(d.get(f"assessment_eg_{i}", 0)), d.get(f"assessment_probability_{i}"))
               for i in range(1, 6)]
        egs = [(eg, float(p)) for eg, p in egs if eg > 0 and p is not None and not math.isnan(p)]
        if egs:
            bars.bar([f"EG {eg}" for eg, _ in egs], [p for _, p in egs], color="tab:gray")
            bars.set_ylabel("posterior p")
            bars.set_ylim(0, min(1.0, max(0.05, 1.15 * max(p for _, p in egs))))
        self.figure.tight_layout()
        self.figure.canvas.draw_idle()
        self.drawn += 1
