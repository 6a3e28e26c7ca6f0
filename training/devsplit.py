"""The fixed two-half split of the measured dev set, grouped by mineral.

Thresholds of the agent are chosen on one half and reported on the other, in both
directions, so that no reported figure comes from the patterns it was tuned on. A
mineral measured more than once gives near-identical patterns; were they split across
the halves, a rule tuned on one copy would be scored on its twin. The dev set carries
no mineral names, so near duplicates are found from the data:

1. profile x = √max(I, 0), smoothed over 0.1° (11 points), centred and normalised;
2. two patterns are linked when they share a space group and the correlation of their
   profiles exceeds :data:`LINK_CORRELATION`; groups are the connected components;
3. groups go, largest first, to the half with fewer patterns of their crystal system
   (ties: fewer patterns in all, then half A), so each system is split about evenly.

The split is shipped as ``training/data/rruff_dev_split.csv`` (``index,half,group``);
:func:`dev_split` reads it and a test checks that :func:`build_split` gives it again.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["DEV_SET", "LINK_CORRELATION", "SPLIT_FILE", "build_split", "dev_groups", "dev_split",
           "write_split"]

DATA = Path(__file__).resolve().parent / "data"
#: The measured dev set shipped with the project (``data/PROVENANCE.md``).
DEV_SET = DATA / "rruff_dev.npz"
#: The shipped split of :data:`DEV_SET`.
SPLIT_FILE = DATA / "rruff_dev_split.csv"
#: Profile correlation above which two patterns of one space group are the same mineral.
LINK_CORRELATION = 0.6


def _profiles(intensity: np.ndarray) -> np.ndarray:
    x = np.sqrt(np.clip(np.asarray(intensity, float), 0.0, None))
    kernel = np.ones(11) / 11.0
    x = np.array([np.convolve(row, kernel, "same") for row in x])
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _components(linked: np.ndarray) -> np.ndarray:
    """Connected components of a symmetric boolean adjacency matrix, numbered from 0."""
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(linked.astype(np.int8), directed=False)
    # renumber by first member so the numbering does not depend on scipy's order
    first: dict[int, int] = {}
    for lab in labels:
        first.setdefault(int(lab), len(first))
    return np.array([first[int(lab)] for lab in labels])


def build_split(path: str | Path = DEV_SET) -> tuple[np.ndarray, np.ndarray]:
    """The split of the dev set at ``path``: (half per pattern, "A" or "B"; group per pattern)."""
    from ratagent.crystallography import extinction_group

    with np.load(path) as z:
        intensity, sg, eg = z["intensity"], z["space_group"].astype(int), z["extinction_group"].astype(int)
    x = _profiles(intensity)
    linked = (x @ x.T > LINK_CORRELATION) & (sg[:, None] == sg[None, :])
    group = _components(linked)
    system = np.array([extinction_group(int(e)).crystal_system for e in eg])
    sizes = np.bincount(group)
    order = sorted(range(sizes.size), key=lambda g: (-sizes[g], g))
    half = np.empty(len(eg), dtype="<U1")
    per_system = {"A": {}, "B": {}}
    total = {"A": 0, "B": 0}
    for g in order:
        members = np.flatnonzero(group == g)
        s = system[members[0]]
        side = min("AB", key=lambda h: (per_system[h].get(s, 0), total[h], h))
        half[members] = side
        per_system[side][s] = per_system[side].get(s, 0) + members.size
        total[side] += members.size
    return half, group


def write_split(path: str | Path = SPLIT_FILE, dev: str | Path = DEV_SET) -> Path:
    """Write :func:`build_split` of ``dev`` as CSV (``index,half,group``)."""
    half, group = build_split(dev)
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "half", "group"])
        w.writerows((i, h, int(g)) for i, (h, g) in enumerate(zip(half, group, strict=True)))
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    idx = [int(r["index"]) for r in rows]
    if idx != list(range(len(rows))):
        raise ValueError(f"{path}: indices must be 0…{len(rows) - 1} in order")
    return rows


def dev_split(path: str | Path = SPLIT_FILE) -> np.ndarray:
    """The shipped half ("A" or "B") of every dev pattern, in dev-set order.

    Raises
    ------
    ValueError
        The file does not list every index 0…n−1 once with half A or B.
    """
    path = Path(path)
    half = np.array([r["half"] for r in _rows(path)])
    bad = sorted({str(h) for h in half} - {"A", "B"})
    if bad:
        raise ValueError(f"{path}: half must be A or B, got {bad}")
    return half


def dev_groups(path: str | Path = SPLIT_FILE) -> np.ndarray:
    """The shipped mineral group of every dev pattern (near duplicates share one), in
    dev-set order.

    Raises
    ------
    ValueError
        The file does not list every index 0…n−1 once, or a group is not an integer.
    """
    path = Path(path)
    rows = _rows(path)  # its own error names a bad index
    try:
        return np.array([int(r["group"]) for r in rows])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: every row needs an integer group ({exc})") from None
