"""The live table of decisions, headless: rows as the ``symmetry`` events come."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from rich.console import Console

from plans import LiveAssessmentTable


def _event(**over):
    d = {"assessment_frame_seq_num": 3, "assessment_sample": "quartz", "assessment_count_time": 1.0,
         "assessment_verdict": "flag", "assessment_rwp_1": math.nan,
         "assessment_suggested_count_time": math.nan, "assessment_elapsed": 4.25,
         "assessment_reasons": "no cell given; indexed: hexagonal P | not decided: cells (4.9, 4.9, 5.4)"}
    for i, (eg, p) in enumerate(((80, 0.41), (66, 0.2), (0, math.nan)), start=1):
        d[f"assessment_eg_{i}"], d[f"assessment_probability_{i}"] = eg, p
    return d | over


def test_a_row_shows_the_verdict_the_leading_egs_and_the_last_reason():
    row = LiveAssessmentTable(Console(file=io.StringIO())).row(_event())
    assert row == ("3", "quartz", "1", "flag", "80 (0.41), 66 (0.20)", "—", "—", "4.25",
                   "not decided: cells (4.9, 4.9, 5.4)")


def test_a_long_reason_is_cut_to_the_width():
    row = LiveAssessmentTable(Console(file=io.StringIO()), reason_width=12).row(_event())
    assert row[-1] == "not decided…"


@pytest.mark.slow
def test_the_table_follows_a_scan(tmp_path):
    from bluesky import RunEngine

    from plans import symmetry_scan
    from ratagent.instrument import Instrument
    from ratagent.testing import tiny_agent
    from sim_beamline import PowderDetector, SampleChanger, hard_sample

    changer = SampleChanger(name="changer", samples=[hard_sample()])
    det = PowderDetector(name="det", changer=changer, time_scale=0.01, rng=np.random.default_rng(0),
                         instrument=Instrument(two_theta_min_deg=10.0, two_theta_max_deg=80.0, step_deg=0.02))
    out = io.StringIO()
    table = LiveAssessmentTable(Console(file=out, width=240, force_terminal=False))
    events = []
    RE = RunEngine({})
    RE.subscribe(table)
    RE.subscribe(lambda name, doc: events.append(doc)
                 if name == "event" and "assessment_verdict" in doc["data"] else None)
    agent = tiny_agent(tmp_path)
    RE(symmetry_scan(det, samples=["rutile", "quartz"], changer=changer, agent=agent, cell=None))
    assert [r[3] for r in table.rows] == [e["data"]["assessment_verdict"] for e in events]
    assert [r[1] for r in table.rows][-1] == "quartz"
    assert "symmetry_scan — decisions" in out.getvalue()


@pytest.mark.slow
def test_the_figure_draws_frame_fit_difference_and_posterior_headless(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from bluesky import RunEngine
    from matplotlib.figure import Figure

    from plans import LiveAssessmentFigure, symmetry_scan
    from ratagent.instrument import Instrument
    from ratagent.testing import tiny_agent
    from sim_beamline import PowderDetector, SampleChanger

    inst = Instrument(two_theta_min_deg=10.0, two_theta_max_deg=80.0, step_deg=0.02)
    changer = SampleChanger(name="changer")
    det = PowderDetector(name="det", changer=changer, time_scale=0.01, rng=np.random.default_rng(1),
                         instrument=inst)
    figure = LiveAssessmentFigure(Figure())
    docs = []
    RE = RunEngine({})
    RE.subscribe(figure)
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(symmetry_scan(det, samples=["rutile"], changer=changer, agent=tiny_agent(tmp_path, max_candidates=4),
                     max_remeasure=0))  # the changer knows rutile's cell: a refined fit
    assert figure.drawn == 1
    lines = {ln.get_label(): ln for ln in figure.ax_frame.get_lines()}
    (frame,) = [d["data"]["det_intensity"] for n, d in docs if n == "event" and "det_intensity" in d["data"]]
    (fit,) = [d["data"]["fit_calculated"] for n, d in docs if n == "event" and "fit_calculated" in d["data"]]
    assert np.array_equal(lines["frame"].get_ydata(), frame)
    assert np.allclose(lines["frame"].get_xdata(), inst.two_theta)
    (fit_line,) = [ln for label, ln in lines.items() if label.startswith("Pawley fit, EG ")]
    assert np.allclose(fit_line.get_ydata(), fit)
    assert "difference" in lines and len(figure.ax_bars.patches) >= 1
    figure.figure.savefig(tmp_path / "live.png")
    assert (tmp_path / "live.png").stat().st_size > 10_000


def test_the_table_ends_its_line_in_a_file_or_a_pipe():
    """Written to a file or a pipe (``ratagent demo | tee``), the table's last border ends
    its line, so what the caller prints next starts on a line of its own."""
    out = io.StringIO()
    table = LiveAssessmentTable(Console(file=out, width=100))
    table("start", {})
    table("stop", {})
    assert out.getvalue().endswith("┘\n")
