"""The extinction-group subgroup DAG (networkx).

Edges point from an EG to an EG with **one extinction condition fewer** ("descendant",
lower symmetry), as in the paper's ``paper_eg_adjacency.json``.

How the graph is built:

1. **Derived within a lattice family** (triclinic, monoclinic, orthorhombic, tetragonal,
   hexagonal = trigonal + hexagonal, cubic). For each EG, the absence sets (|h|,|k|,|l| ≤ 8,
   gemmi) of its settings (:func:`~ratagent.crystallography.extinction.eg_settings`) are
   taken; A → B when some setting of B forbids a strict subset of what some setting of A
   forbids, and no third EG lies strictly between (transitive reduction). These edges are
   ours, computed from gemmi; the tests compare them edge by edge with the paper's.
2. **Across lattice families** (e.g. cubic F → tetragonal I, tetragonal → orthorhombic)
   absence sets live in different cells and cannot be compared without a cell
   transformation. Those edges are taken from the paper's DAG as published, with
   ``source="paper"`` on the edge (provenance in ``data/PROVENANCE.md``).

The paper's DAG has 98 nodes: canonical entries 72 and 73 (EGs 73 "P - - c" and 74
"P - c -") share one node there; here they are two nodes, each given that node's edges.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

import gemmi
import networkx as nx
import numpy as np

from ratagent.crystallography.extinction import (
    N_EG,
    _data,
    eg_settings,
    extinction_group,
    extinction_groups,
)
from ratagent.crystallography.spacegroups import (
    absence_signature,
    hkl_box,
    settings,
    systematically_absent,
)

__all__ = [
    "EDGE_SETS",
    "ancestors",
    "candidates",
    "dag_distance",
    "derived_edges",
    "descendants",
    "distance_matrix",
    "eg_dag",
    "neighbours",
    "paper_edges",
]

_HMAX = 8


def _laue(sg: gemmi.SpaceGroup) -> frozenset[tuple[int, ...]]:
    """Rotation parts of a setting's operations with inversion added (its Laue group)."""
    rots = {tuple(np.ravel(op.rot)) for op in sg.operations().sym_ops}
    return frozenset(rots | {tuple(-x for x in r) for r in rots})


def _absence_sets(eg: int) -> list[tuple[np.ndarray, list[frozenset]]]:
    """(absent mask, Laue groups of the members in that setting) for each setting of an EG."""
    box = hkl_box(_HMAX)
    out = []
    for rep in eg_settings(eg):
        sig = absence_signature(rep, _HMAX)
        laues = [
            _laue(s)
            for sg in extinction_group(eg).space_groups
            for s in settings(sg)
            if absence_signature(s, _HMAX) == sig
        ]
        out.append((systematically_absent(rep, box), laues))
    return out


def _comparable(la: list[frozenset], lb: list[frozenset]) -> bool:
    return any(a <= b or b <= a for a in la for b in lb)


@cache
def derived_edges() -> frozenset[tuple[int, int]]:
    """Edges derived from gemmi absence sets within each lattice family (see module doc)."""
    sets = {g.number: _absence_sets(g.number) for g in extinction_groups()}
    relation = nx.DiGraph()
    relation.add_nodes_from(sets)
    for a in extinction_groups():
        for b in extinction_groups():
            if a.number == b.number or a.lattice_family != b.lattice_family:
                continue
            if any(
                sb.sum() < sa.sum() and not (sb & ~sa).any() and _comparable(la, lb)
                for sa, la in sets[a.number]
                for sb, lb in sets[b.number]
            ):
                relation.add_edge(a.number, b.number)
    return frozenset(nx.transitive_reduction(relation).edges)


@cache
def paper_edges() -> frozenset[tuple[int, int]]:
    """The paper's DAG edges in EG numbering (1–99), joined through the space-group lists."""
    raw = json.loads(_data("paper_eg_adjacency.json"))
    by_sgs = {g.space_groups: g.number for g in extinction_groups()}
    node_egs: dict[str, list[int]] = {}
    for key, node in raw["nodes"].items():
        sgs = set(node["space_groups"])
        egs = [n for s, n in by_sgs.items() if set(s) <= sgs]
        if sorted(x for n in egs for x in extinction_group(n).space_groups) != sorted(sgs):
            raise RuntimeError(f"paper DAG node {key} ({sorted(sgs)}) is not a union of EGs")
        node_egs[key] = egs
    return frozenset(
        (a, b)
        for key, targets in raw["adjacency"].items()
        for t in targets
        for a in node_egs[key]
        for b in node_egs[t]
    )


EDGE_SETS = ("union", "derived", "paper")


@cache
def eg_dag(edges: str = "union") -> nx.DiGraph:
    """The EG graph: nodes 1–99 (attributes symbol, crystal_system, family), edges with ``source``.

    Parameters
    ----------
    edges : {"union", "derived", "paper"}
        ``"derived"``: our absence-inclusion edges (within lattice families);
        ``"paper"``: the paper's published DAG; ``"union"`` (default, used for the
        candidate walk): both, so that a near miss of either kind is tested.
        Each edge's ``source`` attribute is ``"derived"``, ``"paper"`` or ``"both"``.

    Returns a frozen (read-only) ``networkx.DiGraph``.
    """
    if edges not in EDGE_SETS:
        raise ValueError(f"edges must be one of {EDGE_SETS}, got {edges!r}")
    g = nx.DiGraph()
    for eg in extinction_groups():
        g.add_node(eg.number, symbol=eg.symbol, crystal_system=eg.crystal_system, family=eg.lattice_family)
    ours = derived_edges() if edges != "paper" else frozenset()
    theirs = paper_edges() if edges != "derived" else frozenset()
    for a, b in ours | theirs:
        both = (a, b) in ours and (a, b) in theirs
        g.add_edge(a, b, source="both" if both else ("derived" if (a, b) in ours else "paper"))
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        raise RuntimeError(f"EG graph ({edges}) has a cycle: {cycle}")
    return nx.freeze(g)


def _node(eg: int) -> int:
    extinction_group(eg)  # validates
    return int(eg)


def neighbours(eg: int) -> list[int]:
    """EGs one edge away (one extinction condition more or fewer), ascending."""
    g = eg_dag()
    n = _node(eg)
    return sorted(set(g.predecessors(n)) | set(g.successors(n)))


def ancestors(eg: int, edges: str = "union") -> set[int]:
    """EGs from which ``eg`` is reached (more extinction conditions, higher symmetry) on the
    graph ``edges`` picks (:func:`eg_dag`)."""
    return set(nx.ancestors(eg_dag(edges), _node(eg)))


def descendants(eg: int, edges: str = "union") -> set[int]:
    """EGs reached from ``eg`` (fewer extinction conditions, lower symmetry) on the graph
    ``edges`` picks (:func:`eg_dag`)."""
    return set(nx.descendants(eg_dag(edges), _node(eg)))


@cache
def distance_matrix(edges: str = "union") -> np.ndarray:
    """Undirected shortest-path hop counts between all EGs, shape (99, 99), -1 if unconnected.

    ``edges`` picks the graph as in :func:`eg_dag`; ``"paper"`` gives distances comparable
    with the talk's "mean DAG distance".
    """
    und = eg_dag(edges).to_undirected(as_view=True)
    out = np.full((N_EG, N_EG), -1, dtype=np.int16)
    for src, lengths in nx.all_pairs_shortest_path_length(und):
        for dst, d in lengths.items():
            out[src - 1, dst - 1] = d
    out.setflags(write=False)
    return out


def dag_distance(a: int, b: int, edges: str = "union") -> int:
    """Shortest number of DAG edges between two EGs, ignoring direction (graph as in :func:`eg_dag`).

    Raises
    ------
    ValueError
        If the two EGs are not connected.
    """
    d = int(distance_matrix(edges)[_node(a) - 1, _node(b) - 1])
    if d < 0:
        raise ValueError(f"EGs {a} and {b} are not connected in the DAG")
    return d


def candidates(
    posterior: Sequence[float] | np.ndarray, k: int = 3, radius: int = 1, cap: int = 8
) -> list[int]:
    """Candidate EGs for refinement: the top-k of a posterior plus their DAG neighbourhood.

    Takes the ``k`` most probable EGs, adds every EG within ``radius`` undirected hops of
    any of them, orders all by posterior probability (ties by EG number) and keeps at most
    ``max(cap, k)``; the top-k are always kept.

    Parameters
    ----------
    posterior : array, shape (99,)
        Probabilities (or any scores) of EGs 1–99.
    k, radius, cap : int
    """
    p = np.asarray(posterior, float)
    if p.shape != (N_EG,):
        raise ValueError(f"posterior must have shape ({N_EG},), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("posterior contains NaN or inf")
    if k < 1 or radius < 0 or cap < 1:
        raise ValueError(f"need k ≥ 1, radius ≥ 0, cap ≥ 1; got k={k}, radius={radius}, cap={cap}")
    order = np.lexsort((np.arange(N_EG), -p))
    top = [int(i) + 1 for i in order[:k]]
    dist = distance_matrix()
    near = {j + 1 for t in top for j in np.flatnonzero((dist[t - 1] >= 0) & (dist[t - 1] <= radius))}
    rest = [int(i) + 1 for i in order[k:] if int(i) + 1 in near]
    return top + rest[: max(cap, k) - k]
