"""Evaluation of EG posteriors: metrics, the frequency-prior baseline, a JSON report and plots.

Every report puts the model beside the frequency prior on the same data, because on
measured patterns the prior alone is a strong baseline (the paper's prior scores
≈11 % top-1 and ≈51 % top-5 on ``rruff_dev.npz``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ratagent.crystallography import N_EG, extinction_group, read_paper_prior
from ratagent.crystallography.dag import descendants, distance_matrix, eg_dag
from ratagent.model.calibration import (
    expected_calibration_error,
    negative_log_likelihood,
    top_k_accuracy,
)
from ratagent.patterns import CU_KA1_ANGSTROM, Pattern

__all__ = [
    "ERROR_KINDS",
    "error_kinds",
    "evaluate_probs",
    "load_dev_set",
    "plot_error_flows",
    "plot_report",
    "prior_probs",
    "synthetic_scores",
    "uniform_probs",
    "write_report",
]

logger = logging.getLogger(__name__)


def _systems() -> np.ndarray:
    return np.array([extinction_group(eg).crystal_system for eg in range(1, N_EG + 1)])


#: How a wrong top-1 EG sits against the true one on the paper's DAG (the talk's analysis):
#: a descendant has lost extinction conditions (lower symmetry), an ancestor gained some,
#: a branch jump is neither.
ERROR_KINDS = ("descendant", "ancestor", "branch")


def error_kinds(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """The :data:`ERROR_KINDS` entry of each error (EG numbers 1–99, ``predicted != true``)."""
    out = []
    for p, t in zip(np.asarray(predicted, int), np.asarray(true, int), strict=True):
        if p == t:
            raise ValueError(f"EG {p} is the true EG: not an error")
        out.append("descendant" if p in descendants(int(t), "paper") else
                   "ancestor" if t in descendants(int(p), "paper") else "branch")
    return np.array(out, dtype=object)


def evaluate_probs(probs: np.ndarray, eg_true: np.ndarray) -> dict[str, Any]:
    """Metrics of EG posteriors against true EGs (1–99).

    Returns a dict with n, top1, top5, crystal_system (accuracy of the top-1's system),
    nll (nats), ece (15 equal-width bins), dag (errors only: mean undirected distance on
    the paper's DAG, fraction within 1 and within 2 hops, and the share of descendant,
    ancestor and branch errors — :func:`error_kinds`, comparable with the talk) and
    per_eg_recall ({EG: [recall, support]}).
    """
    p = np.asarray(probs, float)
    y = np.asarray(eg_true, int)
    if p.ndim != 2 or p.shape[1] != N_EG or p.shape[0] != y.size:
        raise ValueError(f"probs must have shape ({y.size}, {N_EG}), got {p.shape}")
    if y.size == 0 or y.min() < 1 or y.max() > N_EG:
        raise ValueError(
            f"eg_true must hold EG numbers 1–{N_EG}, got range {y.min(initial=0)}…{y.max(initial=0)}"
        )
    t = y - 1
    top = p.argmax(axis=1)
    systems = _systems()
    wrong = top != t
    dist = distance_matrix("paper")[top[wrong], t[wrong]].astype(float)
    kinds = error_kinds(top[wrong] + 1, y[wrong])
    recall = {}
    for eg in np.unique(y):
        sel = y == eg
        recall[int(eg)] = [float((top[sel] == eg - 1).mean()), int(sel.sum())]
    return {
        "n": int(y.size),
        "top1": top_k_accuracy(p, t, 1),
        "top5": top_k_accuracy(p, t, 5),
        "crystal_system": float((systems[top] == systems[t]).mean()),
        "nll": negative_log_likelihood(p, t),
        "ece": expected_calibration_error(p, t),
        "dag": {
            "n_errors": int(wrong.sum()),
            "mean_distance": float(dist.mean()) if dist.size else 0.0,
            "within_1": float((dist <= 1).mean()) if dist.size else 1.0,
            "within_2": float((dist <= 2).mean()) if dist.size else 1.0,
            **{k: float((kinds == k).mean()) if kinds.size else 0.0 for k in ERROR_KINDS},
        },
        "per_eg_recall": recall,
    }


def prior_probs(n: int, log_prior: np.ndarray | None = None) -> np.ndarray:
    """The frequency-prior "classifier": every row is the prior (default: the paper's)."""
    lp = read_paper_prior() if log_prior is None else np.asarray(log_prior, float)
    p = np.exp(lp - lp.max())
    return np.tile(p / p.sum(), (n, 1))


def uniform_probs(n: int) -> np.ndarray:
    """The chance baseline on EG-balanced synthetic data: every EG 1/99."""
    return np.full((n, N_EG), 1.0 / N_EG)


def synthetic_scores(
    classifier: Any,
    bank: str | Path | list,
    augmentation: Any,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 64,
    impurity_pool: int = 256,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated scores of ``n`` patterns rendered from a bank under ``augmentation``.

    Structures are drawn uniformly from the bank (so EG-balanced if the bank is), each
    rendered once with random conditions (the bank's first ``impurity_pool`` records, at
    most a quarter of it, are the impurity phases, as in training); returns (scores
    (n, 99), true EG 1–99). Use a bank the model was not trained on
    (``python -m training bank DIR --seed S`` with a seed of its own). ``bank`` is its
    directory, or its records already read with :func:`training.fit.load_records` (to
    read it once for several presets).
    """
    import torch
    from tqdm import tqdm

    from ratagent.instrument import Instrument
    from training.fit import load_records, make_batch, split_impurities

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    all_records = load_records(bank) if isinstance(bank, str | Path) else bank
    impurities, records = split_impurities(all_records, impurity_pool)
    instrument = Instrument.from_grid(classifier.grid)
    rng = np.random.default_rng(seed)
    scores, truth, done = [], [], 0
    with tqdm(total=n, desc="synthetic", disable=not progress) as bar:
        while done < n:
            b = min(batch_size, n - done)
            x, mask, target = make_batch(
                records, impurities, instrument, augmentation, b, rng, torch.device("cpu")
            )
            scores.append(classifier.scores(x.numpy(), mask.numpy()))
            truth.append(target.numpy() + 1)
            done += b
            bar.update(b)
    return np.concatenate(scores), np.concatenate(truth)


def load_dev_set(path: str | Path) -> tuple[list[Pattern], np.ndarray]:
    """The measured dev set (``training/data/rruff_dev.npz``): patterns (Cu Kα1) and true EGs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dev set not found: {path}")
    with np.load(path) as z:
        tth, inten, eg = z["two_theta"], z["intensity"], z["extinction_group"].astype(int)
    patterns = [
        Pattern(tth, row, CU_KA1_ANGSTROM, meta={"source": f"{path.name}[{i}]"})
        for i, row in enumerate(inten)
    ]
    return patterns, eg


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``report.json`` into ``out_dir`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2))
    return path


def plot_report(probs: np.ndarray, eg_true: np.ndarray, out_dir: str | Path, title: str = "") -> list[Path]:
    """Confusion matrix, reliability diagram and DAG-distance histogram of errors, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = np.asarray(probs, float)
    t = np.asarray(eg_true, int) - 1
    top = p.argmax(axis=1)
    paths = []

    cm = np.zeros((N_EG, N_EG))
    np.add.at(cm, (t, top), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(np.log1p(cm), cmap="viridis", origin="lower", extent=(0.5, 99.5, 0.5, 99.5))
    ax.set(xlabel="predicted EG", ylabel="true EG", title=f"confusion (log(1+count)) {title}")
    fig.colorbar(im, ax=ax)
    paths.append(out / "confusion.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    conf = p.max(axis=1)
    correct = top == t
    edges = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(conf, edges) - 1, 0, 9)
    acc = [correct[idx == b].mean() if (idx == b).any() else np.nan for b in range(10)]
    cnt = [(idx == b).sum() for b in range(10)]
    fig, ax = plt.subplots(figsize=(5, 5))
    centres = (edges[:-1] + edges[1:]) / 2
    ax.bar(centres, acc, width=0.09, alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for c, a, n in zip(centres, acc, cnt, strict=True):
        if n:
            ax.text(c, (a if np.isfinite(a) else 0) + 0.02, str(n), ha="center", fontsize=7)
    ax.set(xlabel="top-1 probability", ylabel="top-1 accuracy", xlim=(0, 1), ylim=(0, 1.05))
    ax.set_title(f"reliability {title}")
    ax.legend(loc="upper left")
    paths.append(out / "reliability.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    dist = distance_matrix("paper")[top[~correct], t[~correct]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if dist.size:
        ax.hist(dist, bins=np.arange(0.5, dist.max() + 1.5), rwidth=0.85)
    ax.set(xlabel="DAG distance of the top-1 error (paper's DAG)", ylabel="patterns", title=title)
    paths.append(out / "dag_distance.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


_KIND_COLOUR = {"descendant": "tab:blue", "ancestor": "tab:red", "branch": "0.55"}


def plot_error_flows(named_probs: dict[str, np.ndarray], eg_true: np.ndarray, out_dir: str | Path) -> Path:
    """The top-1 errors of each posterior as flows on the paper's EG DAG, side by side.

    Nodes are EGs in rows of the DAG's generations (most extinction conditions at the
    top); a node's size is the number of errors on patterns of that true EG; an arrow
    runs from the true EG to the predicted one, coloured by :func:`error_kinds`
    (descendant blue, ancestor red, branch grey) and as wide as log(1 + count).
    Written to ``out_dir/error_flows.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    graph = eg_dag("paper")  # shared and cached: the layers go on a copy
    layered = nx.DiGraph(graph)
    for layer, nodes in enumerate(nx.topological_generations(graph)):
        for n in nodes:
            layered.nodes[n]["layer"] = -layer
    pos = nx.multipartite_layout(layered, subset_key="layer", align="horizontal")
    y = np.asarray(eg_true, int)
    fig, axes = plt.subplots(1, len(named_probs), figsize=(7 * len(named_probs), 6.5), squeeze=False)
    for ax, (name, probs) in zip(axes[0], named_probs.items(), strict=True):
        top = np.asarray(probs, float).argmax(axis=1) + 1
        wrong = top != y
        kinds = error_kinds(top[wrong], y[wrong])
        size = np.bincount(y[wrong], minlength=N_EG + 1)
        nx.draw_networkx_edges(graph, pos, ax=ax, edge_color="0.9", arrows=False, width=0.5)
        flows: dict[tuple[int, int, str], int] = {}
        for t, p, k in zip(y[wrong], top[wrong], kinds, strict=True):
            flows[(int(t), int(p), k)] = flows.get((int(t), int(p), k), 0) + 1
        for (t, p, k), n in flows.items():
            ax.annotate("", xy=pos[p], xytext=pos[t], arrowprops={
                "arrowstyle": "-|>", "color": _KIND_COLOUR[k], "lw": 0.4 + np.log1p(n), "alpha": 0.6,
                "connectionstyle": "arc3,rad=0.15", "shrinkA": 3, "shrinkB": 3})
        nodes = list(graph)
        nx.draw_networkx_nodes(graph, pos, nodelist=nodes, ax=ax, node_color="0.3",
                               node_size=[8 + 25 * size[n] for n in nodes])
        share = ", ".join(f"{k} {np.mean(kinds == k):.0%}" for k in ERROR_KINDS) if kinds.size else "none"
        ax.set_title(f"{name}: {int(wrong.sum())} top-1 errors ({share})", fontsize=10)
        ax.set_axis_off()
    handles = [plt.Line2D([], [], color=c, lw=2, label=k) for k, c in _KIND_COLOUR.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "error_flows.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
