"""What ``ratagent classify`` prints and plots: ranked EGs for pattern files.

:func:`classify_files` is the whole command behind the CLI's argument parsing; it returns
the text (a table or JSON) and writes the plots. :func:`plot_classification` draws one
pattern next to its posterior (matplotlib, Agg canvas, no pyplot state).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ratagent.model.calibration import EGPosterior
from ratagent.patterns import Pattern, naming, read_pattern, signal_problem

if TYPE_CHECKING:
    from ratagent.model.inference import Classifier

__all__ = ["classify_files", "draw_fit", "plot_classification", "plot_target", "summarise"]

logger = logging.getLogger(__name__)


def summarise(pattern: Pattern, posterior: EGPosterior, top: int = 5) -> dict[str, Any]:
    """JSON-ready account of one classification.

    Keys: ``source``, ``wavelength_angstrom``, ``model_id``, ``coverage`` (fraction of the
    model's Q grid measured), ``entropy_nats``, ``top`` (rank, eg, symbol, crystal_system,
    probability) and ``neighbours_of_top`` (the DAG neighbours of the most probable EG, i.e.
    one extinction condition more or fewer, with their probabilities).
    """
    from ratagent.crystallography import dag, extinction_group

    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    ranked = []
    for rank, (eg, p) in enumerate(posterior.top(top), start=1):
        group = extinction_group(eg)
        ranked.append(
            {
                "rank": rank,
                "eg": eg,
                "symbol": group.symbol,
                "crystal_system": group.crystal_system,
                "probability": p,
            }
        )
    best = posterior.argmax
    neighbours = [
        {"eg": n, "symbol": extinction_group(n).symbol, "probability": posterior.prob(n)}
        for n in dag.neighbours(best)
    ]
    return {
        "source": pattern.meta.get("source"),
        "wavelength_angstrom": pattern.wavelength,
        "model_id": posterior.model_id,
        "coverage": posterior.meta.get("coverage"),
        "entropy_nats": posterior.entropy,
        "top": ranked,
        "neighbours_of_top": neighbours,
    }


def _format_text(summary: dict[str, Any]) -> str:
    coverage = summary["coverage"]
    head = (
        f"{summary['source'] or '<pattern>'}  (λ = {summary['wavelength_angstrom']:g} Å"
        + (f", radiation {summary['radiation']}" if summary.get("radiation") else "")
        + (f", {coverage:.0%} of the model's Q range measured" if coverage is not None else "")
        + f"; model {summary['model_id']})"
    )
    lines = [head, f"  {'rank':>4}  {'EG':>3}  {'symbol':<24} {'crystal system':<14} {'p':>7}"]
    for row in summary["top"]:
        lines.append(
            f"  {row['rank']:>4}  {row['eg']:>3}  {row['symbol']:<24} "
            f"{row['crystal_system']:<14} {row['probability']:>7.3f}"
        )
    best = summary["top"][0]["eg"]
    near = ", ".join(
        f"{n['eg']} ({n['symbol']}, {n['probability']:.3f})" for n in summary["neighbours_of_top"]
    )
    lines.append(f"  DAG neighbours of EG {best}: {near or 'none'}")
    lines.append(f"  posterior entropy {summary['entropy_nats']:.2f} nats (uniform: 4.60)")
    return "\n".join(lines)


def draw_fit(ax: Any, x: Any, observed: Any, fit: Any = None, *, data_label: str = "observed",
             fit_label: str = "Pawley fit") -> None:
    """Draw a pattern on the matplotlib axes ``ax``; with a calculated profile ``fit``, that
    profile over it and the difference (observed − fit) below it, its top just under the
    pattern's lowest point, with a legend. The figures of ``ratagent classify --refine``
    and of the live loop (:class:`plans.LiveAssessmentFigure`) draw fits this way."""
    y = np.asarray(observed, float)
    ax.plot(x, y, lw=0.7, color="0.2", label=data_label)
    if fit is None:
        return
    yc = np.asarray(fit, float)
    diff = y - yc
    ax.plot(x, yc, lw=0.7, color="tab:red", label=fit_label)
    ax.plot(x, diff - diff.max() + y.min() - 0.05 * np.ptp(y), lw=0.6, color="tab:blue", label="difference")
    ax.legend(loc="upper right", fontsize=8)


def plot_classification(pattern: Pattern, posterior: EGPosterior, path: str | Path, top: int = 10, *,
                        fit: Any = None, note: str | None = None) -> Path:
    """Save a figure of the pattern (left) and the top EG probabilities (right).

    Parameters
    ----------
    pattern : Pattern
    posterior : EGPosterior
    path : str or Path
        Output image; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).
    top : int
        Number of EGs in the bar chart.
    fit : array, optional
        A calculated profile on the pattern's points (the best Pawley fit of an
        assessment, :attr:`ratagent.agent.Assessment.fit`), drawn over the pattern with
        the difference below it.
    note : str, optional
        A line added to the pattern's title (e.g. the verdict).

    Returns
    -------
    Path
        The file written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ratagent.crystallography import extinction_group

    path = Path(path)
    if not path.suffix:  # what matplotlib would write, named as it is
        path = path.with_suffix(".png")
    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_pat, ax_post = fig.subplots(1, 2, width_ratios=(3, 2))
    draw_fit(ax_pat, pattern.two_theta, pattern.intensity, fit, fit_label="best Pawley fit")
    ax_pat.set_xlabel(f"2θ (°) at λ = {pattern.wavelength:g} Å")
    ax_pat.set_ylabel("intensity")
    name = Path(str(pattern.meta.get("source", "pattern"))).name
    ax_pat.set_title(name if note is None else f"{name}\n{note}", fontsize=10)
    ranked = posterior.top(top)
    labels = [f"{eg}: {extinction_group(eg).symbol}" for eg, _ in ranked]
    ax_post.barh(range(len(ranked)), [p for _, p in ranked], color="tab:blue")
    ax_post.set_yticks(range(len(ranked)), labels, fontsize=8)
    ax_post.invert_yaxis()
    ax_post.set_xlim(0, 1)
    ax_post.set_xlabel("posterior probability")
    ax_post.set_title(f"model {posterior.model_id}, entropy {posterior.entropy:.2f} nats")
    fig.savefig(path, dpi=120)
    logger.info("wrote %s", path)
    return path


def plot_target(plot_path: str | Path, source: str | Path, n_files: int) -> Path:
    """Where the plot of ``source`` goes: ``plot_path`` for one file, else
    ``<stem>_<file stem><suffix>`` beside it."""
    plot_path, source = Path(plot_path), Path(source)
    if n_files == 1:
        return plot_path
    return plot_path.with_name(f"{plot_path.stem}_{source.stem}{plot_path.suffix or '.png'}")


def _no_signal(pattern: Pattern, problem: str) -> dict[str, Any]:
    """The account of a file with no diffraction signal: the problem, nothing ranked."""
    return {"source": pattern.meta.get("source"), "wavelength_angstrom": pattern.wavelength,
            "no_signal": problem, "top": []}


def classify_files(
    paths: Sequence[str | Path],
    wavelength: float | None = None,
    top: int = 5,
    as_json: bool = False,
    plot_path: str | Path | None = None,
    *,
    classifier: Classifier | None = None,
    columns: Sequence[int | str] | None = None,
    errors: list[str] | None = None,
    radiation: str | None = None,
) -> str:
    """Classify pattern files; return the report as text (a table, or JSON).

    A file without diffraction signal (:func:`ratagent.patterns.signal_problem`) is
    reported as such, with nothing ranked.

    Parameters
    ----------
    paths : sequence of str or Path
        Pattern files (see :func:`ratagent.patterns.read_pattern`).
    wavelength : float, optional
        λ in Å for every file; required unless each file states its own.
    top : int
        Number of ranked EGs to report.
    as_json : bool
        Return a JSON list (one object per file: :func:`summarise` with ``radiation``, the
        radiation assumed and where it came from) instead of a table.
    plot_path : str or Path, optional
        Write a plot of pattern and posterior here; with several files, one plot each,
        named ``<stem>_<file stem><suffix>``.
    classifier : Classifier, optional
        Default: the shipped checkpoint (:func:`ratagent.model.load`).
    columns : sequence of int or str, optional
        The 2θ, I (and σ) columns of text files (:func:`~ratagent.patterns.read_pattern`).
    errors : list, optional
        When given, a file that cannot be read or classified is skipped and its error
        (which names the file) appended here; the other files are still answered. By
        default the first such error is raised.
    radiation : str, optional
        The tube anode (``"Cu"``) or ``"mono"``; else each file's header anode, else one
        line (:func:`ratagent.instrument.stated_instrument`). The report states which.

    Raises
    ------
    ValueError
        A file without a wavelength when none is given, an unreadable file, too little Q
        overlap, ``top`` < 1, an unknown ``radiation`` or an anode whose Kα1 is not
        ``wavelength``.
    FileNotFoundError
        A missing file, or no shipped checkpoint when ``classifier`` is None.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    if not paths:
        raise ValueError("no pattern files given")
    from ratagent.instrument import reading_wavelength, stated_instrument

    wavelength = reading_wavelength(radiation, wavelength)
    if classifier is None:
        from ratagent.model.inference import load

        classifier = load()
    summaries = []
    for src in paths:
        try:
            pattern = read_pattern(src, wavelength=wavelength, columns=columns)
            instrument, source, pattern = stated_instrument(pattern, radiation)
            stated = {"radiation": f"{instrument.radiation} ({source})"}
            problem = signal_problem(pattern)
            if problem is not None:
                summaries.append(_no_signal(pattern, problem) | stated)
                continue
            with naming(src):
                post = classifier.predict(pattern)
            summary = summarise(pattern, post, top) | stated
            if plot_path is not None:
                target = plot_target(plot_path, src, len(paths))
                summary["plot"] = str(plot_classification(pattern, post, target, top=max(top, 10)))
        except (ValueError, FileNotFoundError) as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        summaries.append(summary)
    if as_json:
        return json.dumps(summaries, indent=1)
    blocks = []
    for s in summaries:
        if "no_signal" in s:
            blocks.append(f"{s['source']}: not classified: no diffraction signal: {s['no_signal']}")
        else:
            blocks.append(_format_text(s) + (f"\n  plot: {s['plot']}" if "plot" in s else ""))
    return "\n\n".join(blocks)
