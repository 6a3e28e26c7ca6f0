"""The agent's whole path over the measured dev set, in parallel, resumable, and its report.

:func:`run_pipeline` assesses every pattern as the live loop would with no cell (peak
search, indexing, Pawley ranking, decision) in ``jobs`` worker processes of one thread
each, and appends one JSON line per pattern to ``cases.jsonl``, so an interrupted run
resumes where it stopped. :func:`pipeline_report` turns the cases into the figures the
project reports, each with its Wilson 95 % interval, on the whole set and on each fixed
half (:mod:`training.devsplit`):

* top-1 / top-5 EG and crystal system of the agent's ranking (the network's posterior
  fills the ranking after the refined candidates);
* the verdict table: accept / remeasure / flag × right EG / right system / wrong system;
* **accept precision**: among accepted patterns, the share whose true EG is the accepted
  one or in the set the agent reported as indistinguishable from it;
* **coverage**: the share of patterns accepted.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CASES_FILE", "PIPELINE_BARS", "RUN_FILE", "agent_overrides", "assess_case", "compare_cases",
           "format_comparison", "group_interval", "pipeline_report", "plot_pipeline", "read_cases",
           "run_pipeline", "wilson"]

CASES_FILE = "cases.jsonl"
SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")

_worker: dict[str, Any] = {}


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (95 % for the default z).

    (E. B. Wilson, J. Am. Stat. Assoc. 22, 209 (1927).) ``(nan, nan)`` when n = 0.
    """
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def group_interval(hits: Sequence[bool], groups: Sequence[int]) -> tuple[float, float]:
    """Wilson interval of the share of ``hits`` at the effective sample size of ``groups``.

    Near duplicates of one mineral succeed or fail together, so n patterns are fewer
    independent trials and the binomial interval is too narrow. The design effect
    D = Var(p̂) / (p̂(1 − p̂)/n), with Var(p̂) = G/(G − 1) · Σ_g (k_g − p̂ n_g)² / n² the
    between-group variance of the ratio estimator over G groups (W. G. Cochran, *Sampling
    Techniques*, 3rd ed., Wiley 1977, chapters 6 and 9), gives n_eff = n / D, kept between G (all
    of a group alike) and n (no clustering); where it cannot be estimated (k = 0, k = n,
    or one group), n_eff = G. The interval is :func:`wilson` at p̂ · n_eff of n_eff, so it
    is never narrower than the binomial one. (nan, nan) for no patterns.
    """
    h = np.asarray(hits, bool)
    g = np.asarray(groups)
    if h.size != g.size:
        raise ValueError(f"hits has {h.size} entries, groups {g.size}")
    n = h.size
    if n == 0:
        return math.nan, math.nan
    _, inv = np.unique(g, return_inverse=True)
    k_g = np.bincount(inv, weights=h.astype(float))
    n_g = np.bincount(inv).astype(float)
    n_groups = k_g.size
    p = float(h.mean())
    n_eff = float(n_groups)
    if 0.0 < p < 1.0 and n_groups > 1:
        var = n_groups / (n_groups - 1) * float(((k_g - p * n_g) ** 2).sum()) / n**2
        n_eff = float(np.clip(p * (1.0 - p) / var if var > 0 else n, n_groups, n))
    return wilson(p * n_eff, n_eff)


def _init_worker(checkpoint: str | None, config: dict[str, Any], radiation: str,
                 calibrations: dict[str, list[float]] | None = None) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    from ratagent.agent import Agent, AgentConfig
    from ratagent.crystallography import read_paper_prior
    from ratagent.instrument import Instrument
    from ratagent.model.calibration import Calibration
    from ratagent.model.inference import load

    torch.set_num_threads(1)
    _worker["limits"] = threadpool_limits(1)
    clf = load(checkpoint)
    _worker["agent"] = Agent(clf, AgentConfig(**config), instrument=Instrument.for_radiation(radiation))
    _worker["calibrations"] = {h: Calibration(t, lam, read_paper_prior())
                               for h, (t, lam) in (calibrations or {}).items()}


def assess_case(agent, pattern, eg_true: int, index: int, half: str) -> dict[str, Any]:
    """One dev pattern through ``agent`` with no cell, as a JSON-ready record."""
    a = agent.assess_safely(pattern, count_time=None)
    post = agent.classifier.predict(pattern)
    ranked = [c.eg for c in a.candidates] + [e for e, _ in post.top(99)]
    return {
        "index": int(index),
        "half": half,
        "eg": int(eg_true),
        "verdict": a.verdict,
        "ranking": list(dict.fromkeys(ranked))[:10],
        "indistinguishable": list(a.indistinguishable),
        "candidates": [
            {"eg": c.eg, "delta_bic": c.delta_bic, "rwp": c.rwp, "chi2_reduced": c.chi2_reduced,
             "probability": c.probability, "pawley_weight": c.pawley_weight}
            for c in a.candidates
        ],
        "refined": bool(a.refined),
        "nn_probs": [round(float(p), 6) for p in post.probs],
        "reasons": list(a.reasons),
        "meta": a.meta,
        "elapsed_s": float(a.elapsed_s),
    }


def _run_one(item: tuple[int, np.ndarray, np.ndarray, float, int, str]) -> dict[str, Any]:
    from ratagent.patterns import Pattern

    index, two_theta, intensity, wavelength, eg_true, half = item
    pattern = Pattern(two_theta, intensity, wavelength, meta={"source": f"dev[{index}]"})
    agent = _worker["agent"]
    if _worker["calibrations"]:  # the calibration fitted without this pattern's half
        agent.classifier.calibration = _worker["calibrations"][half]
    return assess_case(agent, pattern, eg_true, index, half)


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def agent_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings as :class:`~ratagent.agent.AgentConfig` fields, each value
    parsed as its field's type (``none`` where the field may be None), checked by building
    the configuration.

    Raises
    ------
    ValueError
        Not ``NAME=VALUE``, no such field, or a value its field cannot take (the message
        names both).
    """
    import dataclasses

    from ratagent.agent import AgentConfig

    fields = {f.name: f for f in dataclasses.fields(AgentConfig)}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE, e.g. index_cells=3")
        if name not in fields:
            raise ValueError(f"--set {item!r}: AgentConfig has no field {name!r}; it has {', '.join(fields)}")
        annotation = str(fields[name].type)
        if text.lower() == "none" and "None" in annotation:
            out[name] = None
        elif annotation.startswith("bool"):
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(f"--set {item!r}: {name} is true or false, got {text!r}")
            out[name] = text.lower() in _TRUE
        else:
            kind = {"int": int, "float": float}.get(annotation.split(" ")[0], str)
            try:
                out[name] = kind(text)
            except ValueError:
                what = {int: "an integer", float: "a number"}.get(kind, kind.__name__)
                raise ValueError(f"--set {item!r}: {name} takes {what}, got {text!r}") from None
    try:
        AgentConfig(**out)  # the configuration's own checks (e.g. index_cells >= 1)
    except ValueError as exc:
        raise ValueError(f"--set: {exc}") from None
    return out


def read_cases(out_dir: str | Path) -> list[dict[str, Any]]:
    """The cases written so far by :func:`run_pipeline`, in dev-set order."""
    path = Path(out_dir) / CASES_FILE
    if not path.is_file():
        return []
    cases = {}
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):  # the last line, cut short by an interrupted run
                break
            raise ValueError(f"{path}:{n}: not a JSON record: {exc}") from exc
        cases[case["index"]] = case
    return [cases[k] for k in sorted(cases)]


RUN_FILE = "run.json"


def _check_run(path: Path, run: dict[str, Any]) -> None:
    """Write ``run`` to ``path``, or check it against the run recorded there."""
    if not path.is_file():
        path.write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")
        return
    recorded = json.loads(path.read_text())
    differ = sorted(k for k in run.keys() | recorded.keys() if run.get(k) != recorded.get(k))
    if differ:
        then = ", ".join(f"{k}={recorded.get(k)!r}" for k in differ)
        now = ", ".join(f"{k}={run.get(k)!r}" for k in differ)
        raise ValueError(f"{path}: the cases there were made with {then}; this run has {now}: "
                         "use another --out")


def run_pipeline(
    patterns: Sequence[Any],
    eg_true: Sequence[int],
    halves: Sequence[str],
    out_dir: str | Path,
    *,
    checkpoint: str | None = None,
    config: dict[str, Any] | None = None,
    radiation: str = "Cu",
    calibrations: dict[str, Any] | None = None,
    jobs: int = 1,
    indices: Iterable[int] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Assess the given dev patterns (default: all) in ``jobs`` processes; resumes from ``out_dir``.

    ``calibrations``: per half, the :class:`~ratagent.model.calibration.Calibration` (with
    the paper's prior) that replaces the checkpoint's for that half's patterns
    (:func:`training.calibrate.half_calibrations`, fitted on the other half); None keeps
    the checkpoint's. Returns every case in ``out_dir`` (those of earlier runs included),
    in dev-set order. ``out_dir/run.json`` records the checkpoint, configuration,
    radiation and calibrations of the run; resuming with others raises ``ValueError``, so
    that no run mixes two agents' cases.

    Raises
    ------
    ValueError
        ``jobs`` < 1, a run in ``out_dir`` made otherwise, or a pattern of a half that
        ``calibrations`` lacks.
    """
    import multiprocessing as mp

    from tqdm import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cal = {h: [float(c.temperature), float(c.prior_weight)] for h, c in (calibrations or {}).items()}
    missing = sorted({str(h) for h in halves} - cal.keys()) if cal else []
    if missing:
        raise ValueError(f"calibrations has none for half {missing[0]!r} (it has {sorted(cal)})")
    _check_run(out / RUN_FILE, {"checkpoint": checkpoint, "config": dict(config or {}),
                                "radiation": radiation, "calibration": cal or "checkpoint"})
    done = {c["index"] for c in read_cases(out)}
    path = out / CASES_FILE
    if path.is_file():  # drop a last line cut short by an interrupted run before appending
        text = path.read_text()
        if text and not text.endswith("\n"):
            path.write_text(text[: text.rfind("\n") + 1])
    todo = [i for i in (range(len(patterns)) if indices is None else indices) if i not in done]
    items = [(i, np.asarray(patterns[i].two_theta), np.asarray(patterns[i].intensity),
              float(patterns[i].wavelength), int(eg_true[i]), str(halves[i])) for i in todo]
    args = (checkpoint, dict(config or {}), radiation, cal)
    bar = tqdm(total=len(items), desc="pipeline", disable=not progress)
    with path.open("a") as f, bar:
        if jobs == 1:
            _init_worker(*args)
            results: Iterable[dict[str, Any]] = map(_run_one, items)
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(jobs, initializer=_init_worker, initargs=args)
            results = pool.imap_unordered(_run_one, items, chunksize=1)
        try:
            for case in results:
                f.write(json.dumps(case) + "\n")
                f.flush()
                os.fsync(f.fileno())
                bar.update(1)
        finally:
            if pool is not None:
                pool.terminate()
    return read_cases(out)


def _system(eg: int) -> str:
    from ratagent.crystallography import extinction_group

    return extinction_group(int(eg)).crystal_system


def _system_right(case: dict[str, Any]) -> bool:
    """Whether ``case``'s leading EG is of the true crystal system."""
    return bool(case["ranking"]) and _system(case["ranking"][0]) == _system(case["eg"])


#: Why a leading EG is of the wrong crystal system (:func:`system_miss`), in report order.
SYSTEM_MISSES = (
    "no convincing cell; the unrefined list's EG is of another system",
    "a cell of the true system was indexed; a cell of another won",
    "cells of other systems indexed; one of the true system among the five best",
    "a cell of the true system indexed, ranked below the five best",
    "the indexing found no cell of the true system",
)


def system_miss(case: dict[str, Any]) -> str | None:
    """Why ``case``'s leading EG is of the wrong crystal system (one of :data:`SYSTEM_MISSES`),
    None when it is of the right one. Systems compare by lattice family (trigonal with
    hexagonal), as the indexing finds lattices."""
    from ratagent.crystallography import extinction_group
    from ratagent.trust import family_of

    if _system_right(case):
        return None
    truth = extinction_group(int(case["eg"])).lattice_family
    indexed = case["meta"].get("cells_indexed") or []
    if not indexed:
        return SYSTEM_MISSES[0]
    if any(family_of(c["crystal_system"]) == truth for c in indexed):
        return SYSTEM_MISSES[1]
    if any(family_of(c["crystal_system"]) == truth for c in case["meta"].get("indexing") or []):
        return SYSTEM_MISSES[2]
    # cases written before the agent recorded every family's best cell count as not found
    if truth in (case["meta"].get("indexing_families") or {}):
        return SYSTEM_MISSES[3]
    return SYSTEM_MISSES[4]


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"k": int(k), "n": int(n), "rate": k / n if n else math.nan, "ci95": [lo, hi]}


def accepted_right(case: dict[str, Any]) -> bool:
    """Whether an accepted case is right: its EG, or the truth in its indistinguishable set."""
    best = case["ranking"][0] if case["ranking"] else None
    return case["eg"] == best or case["eg"] in case["indistinguishable"]


#: Whether a case counts for each ranking figure (:func:`pipeline_report`, :func:`compare_cases`).
_RIGHT = {
    "top1": lambda c: bool(c["ranking"]) and c["ranking"][0] == c["eg"],
    "top5": lambda c: c["eg"] in c["ranking"][:5],
    "crystal_system": _system_right,
}


def pipeline_report(cases: Sequence[dict[str, Any]], groups: Sequence[int] | None = None) -> dict[str, Any]:
    """The figures of one set of cases (module docstring), each with k, n, rate and 95 % interval.

    With ``groups`` (the mineral group of each dev index, :func:`training.devsplit.dev_groups`),
    each figure also carries ``ci95_groups``, its interval at the groups' effective sample
    size (:func:`group_interval`).
    """
    n = len(cases)
    hit1 = [_RIGHT["top1"](c) for c in cases]
    hit5 = [_RIGHT["top5"](c) for c in cases]
    system_right = [_system_right(c) for c in cases]
    table: dict[str, dict[str, int]] = {}
    for c, sys_ok in zip(cases, system_right, strict=True):
        col = "right EG" if accepted_right(c) else ("right system" if sys_ok else "wrong system")
        row = table.setdefault(c["verdict"], {"right EG": 0, "right system": 0, "wrong system": 0})
        row[col] += 1
    accepted = [c for c in cases if c["verdict"] == "accept"]
    per_system = {}
    for s in SYSTEMS:
        sel = [c for c in cases if _system(c["eg"]) == s]
        if sel:
            per_system[s] = {
                "top1": _rate(sum(c["ranking"][:1] == [c["eg"]] for c in sel), len(sel)),
                "accepted": len([c for c in sel if c["verdict"] == "accept"]),
                "accepted_right": len([c for c in sel if c["verdict"] == "accept" and accepted_right(c)]),
            }
    wrong = [c for c, sys_ok in zip(cases, system_right, strict=True) if not sys_ok]
    misses = Counter(system_miss(c) for c in wrong)
    confusions = Counter((_system(c["eg"]), _system(c["ranking"][0])) for c in wrong if c["ranking"])
    figures = {
        "top1": _rate(sum(hit1), n),
        "top5": _rate(sum(hit5), n),
        "crystal_system": _rate(sum(system_right), n),
        "accept_precision": _rate(sum(accepted_right(c) for c in accepted), len(accepted)),
        "coverage": _rate(len(accepted), n),
    }
    if groups is not None:
        hits = {"top1": hit1, "top5": hit5, "crystal_system": system_right,
                "accept_precision": [accepted_right(c) for c in accepted],
                "coverage": [c["verdict"] == "accept" for c in cases]}
        outside = sorted(c["index"] for c in cases if not 0 <= c["index"] < len(groups))
        if outside:
            raise ValueError(f"groups holds {len(groups)} patterns; cases {outside[:5]} lie beyond it")
        for key, h in hits.items():
            of = accepted if key == "accept_precision" else cases
            figures[key]["ci95_groups"] = list(group_interval(h, [groups[c["index"]] for c in of]))
    return {
        "n": n,
        **figures,
        "accepted_set_size": float(np.mean([max(1, len(c["indistinguishable"])) for c in accepted]))
        if accepted else math.nan,
        "refined": int(sum(c["refined"] for c in cases)),
        "verdicts": table,
        "per_system": per_system,
        "system_misses": {m: misses[m] for m in SYSTEM_MISSES},
        "system_confusions": [[t, p, k] for (t, p), k in confusions.most_common()],
        "median_s": float(np.median([c["elapsed_s"] for c in cases])) if cases else math.nan,
    }


#: What the agent's whole path should reach on each reporting half of the measured dev set
#: (the project's bars; :func:`plot_pipeline` draws them).
PIPELINE_BARS = {"top1": 0.50, "top5": 0.80, "crystal_system": 0.75, "accept_precision": 0.90}
#: Verdict rows in the order the reports and plots give them.
VERDICT_ORDER = ("accept", "remeasure", "flag")
_FIGURE_LABELS = {"top1": "top-1 EG", "top5": "top-5 EG", "crystal_system": "crystal system",
                  "accept_precision": "accept precision", "coverage": "coverage"}


def plot_pipeline(reports: dict[str, dict[str, Any]], out_dir: str | Path) -> Path:
    """The pipeline report as one PNG, ``out_dir/report.png``.

    Four panels: each headline figure of every report with its 95 % interval beside the
    project's bar (:data:`PIPELINE_BARS`); and, for the first report (the whole set, as
    ``evaluate --pipeline`` orders them), top-1 per true crystal system with its interval
    and the right accepts, the verdict table as stacked bars, and why patterns lost their
    crystal system (:data:`SYSTEM_MISSES`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not reports:
        raise ValueError("no reports to plot")
    names = list(reports)
    main = reports[names[0]]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))

    ax = axes[0, 0]
    keys = list(_FIGURE_LABELS)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        x = np.arange(len(keys)) + (j - (len(names) - 1) / 2) * width
        rates = np.array([reports[name][k]["rate"] for k in keys], float)
        lo = np.array([reports[name][k]["ci95"][0] for k in keys], float)
        hi = np.array([reports[name][k]["ci95"][1] for k in keys], float)
        label = name if len(name) <= 40 else name[: name.find("(")].strip()
        ax.errorbar(x, rates, yerr=[rates - lo, hi - rates], fmt="o", ms=4, capsize=2, label=label)
    for i, k in enumerate(keys):
        if k in PIPELINE_BARS:
            ax.hlines(PIPELINE_BARS[k], i - 0.45, i + 0.45, colors="k", linestyles="--", lw=1)
    ax.set_xticks(range(len(keys)), [_FIGURE_LABELS[k] for k in keys], fontsize=8)
    ax.set(ylim=(0, 1.02), ylabel="share, 95 % Wilson interval", title="figures (dashed: the bars)")
    ax.legend(fontsize=7, loc="lower left")

    ax = axes[0, 1]
    systems = [s for s in SYSTEMS if s in main["per_system"]]
    rows = [main["per_system"][s] for s in systems]
    rates = np.array([r["top1"]["rate"] for r in rows])
    lo = np.array([r["top1"]["ci95"][0] for r in rows])
    hi = np.array([r["top1"]["ci95"][1] for r in rows])
    ax.bar(range(len(systems)), rates, color="tab:blue", alpha=0.7)
    ax.errorbar(range(len(systems)), rates, yerr=[rates - lo, hi - rates], fmt="none", ecolor="k", capsize=3)
    for i, r in enumerate(rows):
        ax.text(i, 0.02, f"n={r['top1']['n']}\naccepts\n{r['accepted_right']}/{r['accepted']}",
                ha="center", fontsize=7, color="white")
    ax.set_xticks(range(len(systems)), systems, fontsize=8)
    ax.set(ylim=(0, 1.02), ylabel="top-1 EG", title=f"by true crystal system ({names[0]})")

    ax = axes[1, 0]
    columns = ("right EG", "right system", "wrong system")
    colours = ("tab:green", "tab:orange", "tab:red")
    verdicts = [v for v in VERDICT_ORDER if v in main["verdicts"]]
    left = np.zeros(len(verdicts))
    for col, colour in zip(columns, colours, strict=True):
        counts = np.array([main["verdicts"][v][col] for v in verdicts], float)
        ax.barh(range(len(verdicts)), counts, left=left, color=colour, label=col)
        left += counts
    ax.set_yticks(range(len(verdicts)), verdicts)
    ax.invert_yaxis()
    ax.set(xlabel="patterns", title=f"verdicts ({names[0]})")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    counts = [main["system_misses"].get(m, 0) for m in SYSTEM_MISSES]
    ax.barh(range(len(SYSTEM_MISSES)), counts, color="tab:red", alpha=0.7)
    ax.set_yticks(range(len(SYSTEM_MISSES)), [_wrapped(m, 38) for m in SYSTEM_MISSES], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="patterns", title=f"leading EG of the wrong crystal system, why ({names[0]})")

    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _wrapped(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _fmt(r: dict[str, Any]) -> str:
    lo, hi = r["ci95"]
    text = f"{r['rate']:6.1%} [{lo:5.1%}, {hi:5.1%}] ({r['k']}/{r['n']})"
    if "ci95_groups" in r and r["n"]:
        glo, ghi = r["ci95_groups"]
        text += f"  by group [{glo:5.1%}, {ghi:5.1%}]"
    return text


def format_report(reports: dict[str, dict[str, Any]]) -> str:
    """The reports of several subsets (e.g. whole set, half A, half B) as a text table."""
    rows = ["top1", "top5", "crystal_system", "accept_precision", "coverage"]
    lines = []
    for name, rep in reports.items():
        lines.append(f"{name}: {rep['n']} patterns, {rep['refined']} refined, median {rep['median_s']:.1f} s")
        lines += [f"  {r:17s} {_fmt(rep[r])}" for r in rows]
        lines.append(f"  EGs per accept    {rep['accepted_set_size']:.1f}")
        lines.append(f"  {'verdict':10s} {'right EG':>9s} {'right sys':>10s} {'wrong sys':>10s}")
        for v in VERDICT_ORDER:
            row = rep["verdicts"].get(v, {})
            lines.append(f"  {v:10s} {row.get('right EG', 0):9d} {row.get('right system', 0):10d} "
                         f"{row.get('wrong system', 0):10d}")
        lines.append("  per system (true): top-1, accepted right/accepted")
        for s, r in rep["per_system"].items():
            lines.append(f"    {s:13s} {_fmt(r['top1'])}  {r['accepted_right']}/{r['accepted']}")
        lines.append("  crystal system missed, why:")
        lines += [f"    {k:4d}  {m}" for m, k in rep["system_misses"].items()]
        top = ", ".join(f"{t} as {p} {k}" for t, p, k in rep["system_confusions"][:_CONFUSIONS_SHOWN])
        lines.append(f"  most frequent: {top or 'none'}")
    return "\n".join(lines)


_CONFUSIONS_SHOWN = 5


# ---------------------------------------------------------------------- trust thresholds

#: Values tried for each threshold of :mod:`ratagent.trust` by :func:`choose_thresholds`:
#: two or three values each (512 combinations) — a finer grid over these few hundred
#: patterns finds combinations that fit the tuning half's handful of wrong accepts and
#: not the other half's. The checks of unindexed lines and rival indexings stay at
#: their defaults (off): no choice on either half kept them.
TRUST_GRID: dict[str, tuple[float | None, ...]] = {
    "min_accept_m20": (20.0, 40.0),
    "min_lines_per_parameter": (3.0, 4.0),
    "metric_tolerance_deg": (0.5, 1.0),
    "min_family_probability": (0.0, 0.1),
    "min_cell_delta_bic": (10.0, 50.0),
    # fixed, not tuned: a fit within twice the counting-statistics limit (chosen among 2 and
    # 4 on one half, 4 let through fits of wrong cells and EGs on the other)
    "max_accept_chi2_reduced": (2.0,),
    "accept_set_delta_bic": (30.0, 60.0),
    "max_network_rank": (None, 40, 30, 20),
}


def replay(case: dict[str, Any], config: Any) -> str:
    """The verdict the agent with ``config`` gives a stored case (only the trust step is re-run).

    Everything before the trust step (indexing, Pawley ranking, their thresholds) is as
    stored; an accept on an indexed cell is re-checked with :func:`ratagent.trust.gate`, and
    a posterior-only accept follows ``config.accept_posterior_only``.
    """
    from ratagent.trust import gate

    return _replay(case, config, lambda: gate(case["meta"], case["nn_probs"], config)[1])


def _replay(case: dict[str, Any], config: Any, doubts_of) -> str:
    verdict = case["meta"].get("verdict_before_trust", case["verdict"])
    if verdict != "accept":
        return verdict
    if not case["refined"]:
        return "accept" if config.accept_posterior_only else "flag"
    if case["meta"].get("cell_from_indexing") is None:
        return "accept"  # refined in a given cell
    return "flag" if doubts_of() else "accept"


def _in_cell(case: dict[str, Any]) -> list[tuple[int, float | None]]:
    """(EG, ΔB) of the EGs fitted in the cell a refined case was decided in, as
    Agent._widened takes them: those with a Pawley weight, or, in cases stored without
    it, the first ``n_candidates`` of that cell's fit (``meta["cell_fits"]``) in the
    order of the fits, which lists the winning cell's first."""
    cands, meta = case["candidates"], case["meta"]
    if all("pawley_weight" in c for c in cands):
        return [(c["eg"], c["delta_bic"]) for c in cands if c["pawley_weight"] is not None]
    fitted = meta.get("fitted_order") or [c["eg"] for c in cands]
    n = next((f["n_candidates"] for f in meta.get("cell_fits") or [] if f["cell"] == meta.get("cell")),
             len(fitted))
    own = set(fitted[:n])
    return [(c["eg"], c["delta_bic"]) for c in cands if c["eg"] in own]


def _with_verdict(case: dict[str, Any], verdict: str, config: Any) -> dict[str, Any]:
    """The case with a replayed verdict and, for a refined accept, its reported set; for
    a flagged refined one, its ranking in :func:`ratagent.trust.undecided_order`."""
    from ratagent.trust import accepted_set, undecided_order

    out = {**case, "verdict": verdict}
    fitted = case["meta"].get("fitted_order") if case["refined"] else None
    if fitted is not None:  # the agent reordered an undecided ranking: the fits' order
        out["ranking"] = list(dict.fromkeys(fitted + case["ranking"]))[:10]
    if verdict == "accept" and case["refined"]:
        out["indistinguishable"] = list(accepted_set(case["indistinguishable"], _in_cell(case),
                                                     config.accept_set_delta_bic))
    elif verdict == "flag" and case["refined"] and config.undecided_fitted is not None:
        out["ranking"] = undecided_order(out["ranking"], case["nn_probs"], config.undecided_fitted)[:10]
    return out


def replayed(cases: Sequence[dict[str, Any]], config: Any) -> list[dict[str, Any]]:
    """The cases with their verdicts (and accepted sets) replayed under ``config`` (:func:`replay`)."""
    return [_with_verdict(c, replay(c, config), config) for c in cases]


def choose_thresholds(cases: Sequence[dict[str, Any]], base: Any, *, min_precision_bound: float = 0.0,
                      grid: dict[str, tuple[float, ...]] | None = None) -> tuple[Any, dict[str, Any]]:
    """The trust thresholds whose accepts on ``cases`` have the highest Wilson 95 % lower
    bound of accept precision: trust first, then coverage.

    The bound, not the precision: 20 right of 20 accepts vouch for more (≥ 84 %) than
    6 of 6 (≥ 61 %), and among thousands of combinations the one that accepts most at
    a plain precision sits on the edge of what a few dozen accepts allow and loses it on
    other data. Exhaustive over ``grid`` (default :data:`TRUST_GRID`); ties go to more
    accepts, then to the stricter thresholds (the grid's later values). When no
    combination's bound reaches ``min_precision_bound``, nothing is accepted. Returns the
    config (``base`` with the chosen thresholds) and its report on ``cases``. Each check
    of :data:`ratagent.trust.CHECKS` reads one threshold, so it is evaluated once per
    value of its threshold (and per metric tolerance, which the evidence depends on) and
    the combinations are logical ands of those.
    """
    import itertools
    from dataclasses import replace

    from ratagent.trust import CHECKS, cell_evidence

    grid = TRUST_GRID if grid is None else grid
    names = list(grid)
    tolerances = grid.get("metric_tolerance_deg", (base.metric_tolerance_deg,))
    evidence = {t: [cell_evidence(c["meta"], c["nn_probs"], t) if c["refined"] else None for c in cases]
                for t in tolerances}
    gated = np.array([_replay(c, base, lambda: True) == "flag" and _replay(c, base, lambda: False) == "accept"
                      for c in cases])  # accepted exactly when the trust step has no doubt
    free = np.array([_replay(c, base, lambda: True) == "accept" for c in cases])  # accepted regardless

    def passes(name: str, value: float, tolerance: float) -> np.ndarray:
        config = replace(base, **{name: value, "metric_tolerance_deg": tolerance})
        return np.array([ev is not None and CHECKS[name](ev, config) is None for ev in evidence[tolerance]])

    # by tolerance: the rival-lattice evidence depends on it too, not only the metric check
    ok = {t: {n: {v: passes(n, v, t) for v in grid[n]} for n in names if n in CHECKS} for t in tolerances}
    base_ok = {t: np.logical_and.reduce([np.array([ev is not None for ev in evidence[t]]),
                                         *(passes(n, getattr(base, n), t) for n in CHECKS if n not in grid)])
               for t in tolerances}

    def right_with(delta: float) -> np.ndarray:
        config = replace(base, accept_set_delta_bic=delta)
        return np.array([accepted_right(_with_verdict(c, "accept", config)) for c in cases])

    deltas = grid.get("accept_set_delta_bic", (base.accept_set_delta_bic,))
    right = {d: right_with(d) for d in deltas}
    best: tuple[tuple[float, int], dict[str, float]] | None = None
    for values in itertools.product(*(grid[n] for n in names)):
        chosen = dict(zip(names, values, strict=True))
        tolerance = chosen.get("metric_tolerance_deg", base.metric_tolerance_deg)
        accept = base_ok[tolerance].copy()
        for n, v in chosen.items():
            if n in ok[tolerance]:
                accept &= ok[tolerance][n][v]
        accept = free | (gated & accept)
        n_acc = int(accept.sum())
        if not n_acc:
            continue
        n_right = int(right[chosen.get("accept_set_delta_bic", base.accept_set_delta_bic)][accept].sum())
        bound = wilson(n_right, n_acc)[0]
        if bound < min_precision_bound:
            continue
        key = (bound, n_acc)
        if best is None or key >= best[0]:
            best = (key, chosen)
    config = replace(base, min_family_probability=1.0) if best is None else replace(base, **best[1])
    return config, pipeline_report(replayed(cases, config))


def results_markdown(reports: dict[str, dict[str, Any]], command: str) -> str:
    """The reports as a Markdown table (one column per report), with the command that made them."""
    rows = [("accept precision", "accept_precision"), ("coverage (accepted)", "coverage"),
            ("top-1 EG", "top1"), ("top-5 EG", "top5"), ("crystal system", "crystal_system")]
    names = list(reports)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key in rows:
        cells = []
        for name in names:
            r = reports[name][key]
            lo, hi = r["ci95"]
            cells.append(f"{r['rate']:.1%} [{lo:.1%}, {hi:.1%}] ({r['k']}/{r['n']})" if r["n"] else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sizes = [f"{reports[n]['accepted_set_size']:.1f}" if reports[n]["accept_precision"]["n"] else "—"
             for n in names]
    lines.append("| EGs reported per accept | " + " | ".join(sizes) + " |")
    if all("ci95_groups" in reports[n]["top1"] for n in names):
        lines += ["", "The same figures' 95 % intervals counting the mineral groups (near duplicates of "
                  "one mineral succeed or fail together: Wilson intervals at the effective sample size, "
                  "`training.pipeline.group_interval`):",
                  "", "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for label, key in rows:
            cells = [f"[{reports[n][key]['ci95_groups'][0]:.1%}, {reports[n][key]['ci95_groups'][1]:.1%}]"
                     if reports[n][key]["n"] else "—" for n in names]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Patterns whose leading EG is of the wrong crystal system, by cause "
              "(`training.pipeline.system_miss`):", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for miss in SYSTEM_MISSES:
        counts = [str(reports[n].get("system_misses", {}).get(miss, 0)) for n in names]
        lines.append(f"| {miss} | " + " | ".join(counts) + " |")
    return "\n".join(lines) + f"\n\nProduced by `{command}`.\n"


# ---------------------------------------------------------------------- two runs side by side

#: Figures :func:`compare_cases` puts side by side, in print order.
COMPARED = ("top1", "top5", "crystal_system", "accept_precision", "coverage")


def _standing(case: dict[str, Any]) -> dict[str, Any]:
    """A case's verdict, leading EG, and how the leader stands against the truth: right,
    right system or wrong system."""
    lead = case["ranking"][0] if case["ranking"] else None
    outcome = "right" if lead == case["eg"] else "right system" if _system_right(case) else "wrong system"
    return {"verdict": case["verdict"], "leader": lead, "outcome": outcome}


def _fmt_standing(s: dict[str, Any]) -> str:
    lead = "—" if s["leader"] is None else f"EG {s['leader']}"
    return f"{s['verdict']} {lead} ({s['outcome']})"


def _moves(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]], idx: Sequence[int],
           groups: Sequence[int] | None) -> dict[str, dict[str, int]]:
    """Per ranking figure: the patterns gained and lost, and the groups whose net change is
    up or down (each pattern its own group without ``groups``)."""
    out = {}
    for key, right in _RIGHT.items():
        net: dict[int, int] = {}
        gained = lost = 0
        for i in idx:
            step = int(right(b[i])) - int(right(a[i]))
            if step:
                g = int(groups[i]) if groups is not None else i
                net[g] = net.get(g, 0) + step
                gained += step > 0
                lost += step < 0
        out[key] = {"gained": gained, "lost": lost, "groups_up": sum(v > 0 for v in net.values()),
                    "groups_down": sum(v < 0 for v in net.values())}
    return out


def compare_cases(base: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]],
                  groups: Sequence[int] | None = None) -> dict[str, Any]:
    """Two evaluations of the same dev patterns side by side (e.g. a code change, or an
    :class:`~ratagent.agent.AgentConfig` option, against the revision before it).

    The verdicts are compared as the runs stored them (no trust replay), so each run's
    own thresholds count. Returns ``{"figures": {subset: {figure: (base, new)}},
    "moves": {subset: {figure: counts}}, "changed": [...]}``: subsets are the whole set
    and each half, figures those of :func:`pipeline_report` (:data:`COMPARED`, and the
    median time per pattern ``median_s``, comparable only between runs on one machine
    under the same load); ``moves`` counts, for top-1, top-5 and crystal system, the
    patterns gained and lost and the mineral groups (``groups[index]``, e.g.
    :func:`training.devsplit.dev_groups`) whose net change is up or down: near-duplicate
    patterns of one mineral move together, so a gain in one group of six is one
    mineral's, not six; ``changed`` lists every pattern whose verdict or leading EG
    differs, with the truth.

    Raises
    ------
    ValueError
        The runs hold different patterns, or disagree on a pattern's true EG or half.
    """
    a = {c["index"]: c for c in base}
    b = {c["index"]: c for c in new}
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise ValueError(f"the runs hold different patterns: only in the first {only_a[:10]}"
                         f"{' …' if len(only_a) > 10 else ''}, only in the second {only_b[:10]}"
                         f"{' …' if len(only_b) > 10 else ''}; finish both runs first")
    for i in sorted(a):
        if (a[i]["eg"], a[i]["half"]) != (b[i]["eg"], b[i]["half"]):
            raise ValueError(f"pattern {i}: true EG / half {a[i]['eg']}/{a[i]['half']} in the first run, "
                             f"{b[i]['eg']}/{b[i]['half']} in the second: not the same dev set")
    subsets = {"whole set": sorted(a)}
    for h in sorted({c["half"] for c in a.values()}):
        subsets[f"half {h}"] = [i for i in sorted(a) if a[i]["half"] == h]
    if groups is not None and a and len(groups) <= max(a):
        raise ValueError(f"groups holds {len(groups)} patterns; the runs reach pattern {max(a)}")
    figures, moves = {}, {}
    for name, idx in subsets.items():
        ra, rb = pipeline_report([a[i] for i in idx]), pipeline_report([b[i] for i in idx])
        figures[name] = {k: (ra[k], rb[k]) for k in (*COMPARED, "median_s")}
        moves[name] = _moves(a, b, idx, groups)
    changed = [
        {"index": i, "half": a[i]["half"], "eg": a[i]["eg"], "base": _standing(a[i]), "new": _standing(b[i])}
        for i in sorted(a)
        if (a[i]["verdict"], a[i]["ranking"][:1]) != (b[i]["verdict"], b[i]["ranking"][:1])
    ]
    return {"figures": figures, "moves": moves, "changed": changed}


def format_comparison(comparison: dict[str, Any]) -> str:
    """:func:`compare_cases` as text: each subset's figures first → second, then the changes."""
    lines = []
    for name, figs in comparison["figures"].items():
        n = figs["top1"][0]["n"]
        cells = []
        for key in COMPARED:
            ra, rb = figs[key]
            cells.append(f"{key} {ra['k']}/{ra['n']} → {rb['k']}/{rb['n']} ({rb['k'] - ra['k']:+d})"
                         if key in ("accept_precision", "coverage")
                         else f"{key} {ra['k']} → {rb['k']} ({rb['k'] - ra['k']:+d})")
        ta, tb = figs["median_s"]
        cells.append(f"median {ta:.2f} → {tb:.2f} s per pattern")
        lines.append(f"{name} ({n}): " + ", ".join(cells))
        moved = comparison.get("moves", {}).get(name)
        if moved:
            lines.append("  moved: " + ", ".join(
                f"{key} +{m['gained']} −{m['lost']} (groups {m['groups_up']} up, {m['groups_down']} down)"
                for key, m in moved.items()))
    changed = comparison["changed"]
    lines.append(f"verdict or leading EG changed on {len(changed)} patterns:")
    for c in changed:
        lines.append(f"  {c['index']:4d} half {c['half']}  truth EG {c['eg']} ({_system(c['eg'])}): "
                     f"{_fmt_standing(c['base'])} → {_fmt_standing(c['new'])}")
    return "\n".join(lines)
