"""The EG DAG: derived edges against gemmi absence sets and edge-by-edge against the paper."""

import json

import networkx as nx
import numpy as np
import pytest

from ratagent.crystallography import candidates, dag_distance, eg_dag, extinction_group, neighbours
from ratagent.crystallography.dag import ancestors, derived_edges, descendants, paper_edges
from ratagent.crystallography.extinction import eg_settings
from ratagent.crystallography.spacegroups import hkl_box, systematically_absent


def _absent_sets(eg):
    return [systematically_absent(s, hkl_box(8)) for s in eg_settings(eg)]


def test_derived_edges_lose_conditions_within_a_family():
    for a, b in derived_edges():
        assert extinction_group(a).lattice_family == extinction_group(b).lattice_family
        # some setting of b forbids a strict subset of what some setting of a forbids
        assert any(
            not (sb & ~sa).any() and sb.sum() < sa.sum() for sa in _absent_sets(a) for sb in _absent_sets(b)
        ), (a, b)


@pytest.mark.parametrize(
    "edge",
    [
        (4, 2),  # P21/c -> P21 (lose the c glide)
        (4, 3),  # P21/c -> Pc  (lose the 21 screw)
        (2, 1),  # P21 -> P2
        (10, 9),  # P212121 -> P21212
        (9, 8),  # P21212 -> P2221
        (8, 7),  # P2221 -> P222
        (89, 88),  # I41.. cubic (I4132) -> I... cubic
        (94, 86),  # F... cubic -> Pa..: F forbids 0kl with k odd
        (98, 97),  # Fd-c -> Fd--
    ],
)
def test_textbook_edges_are_derived(edge):
    assert edge in derived_edges()


def test_paper_graph_as_published():
    from importlib.resources import files

    raw = json.loads((files("ratagent.crystallography") / "data" / "paper_eg_adjacency.json").read_text())
    assert len(raw["nodes"]) == 98
    assert sum(len(v) for v in raw["adjacency"].values()) == 271
    # node "72" stands for EGs 73 and 74: its 7 incident edges count twice in EG numbering
    assert len(paper_edges()) == 278


def test_agreement_with_paper_edge_by_edge():
    """The numbers reported in the issue note; the module docstring explains the difference.

    The paper's DAG follows maximal subgroup relations of member space groups (including
    cell changes across crystal systems); ours is absence-set inclusion in a lattice family.
    """
    family = {n: extinction_group(n).lattice_family for n in range(1, 100)}
    within = {e for e in paper_edges() if family[e[0]] == family[e[1]]}
    ours = derived_edges()
    assert (len(ours), len(within), len(paper_edges()) - len(within)) == (166, 158, 120)
    assert len(ours & within) == 69
    # textbook one-condition steps on which both graphs agree
    assert {(4, 2), (4, 3), (2, 1), (3, 1), (6, 5), (98, 97), (95, 94)} <= ours & within
    # where they differ: the paper links P2221 (EG 8) to monoclinic P21 (EG 2), a
    # translationengleiche subgroup; we link it to P222 (EG 7), one 21 condition fewer
    assert (8, 7) in ours and (8, 7) not in within and (8, 2) in paper_edges()


def test_union_graph():
    g = eg_dag()
    assert g.number_of_nodes() == 99
    assert nx.is_directed_acyclic_graph(g)
    assert nx.is_weakly_connected(g)
    sources = nx.get_edge_attributes(g, "source")
    assert set(sources.values()) == {"derived", "paper", "both"}
    assert g.number_of_edges() == len(derived_edges() | paper_edges())
    with pytest.raises(ValueError, match="nonsense"):
        eg_dag("nonsense")


def test_neighbours_ancestors_descendants_distance():
    assert {2, 3} <= set(neighbours(4))
    assert 4 in ancestors(2) and 2 in descendants(4)
    assert dag_distance(4, 4) == 0
    assert dag_distance(4, 2) == 1 == dag_distance(2, 4)
    assert dag_distance(4, 1) == 2
    assert dag_distance(10, 7, edges="derived") == 3


def test_candidates():
    post = np.full(99, 1e-4)
    post[3] = 0.6  # EG 4
    post[40] = 0.2  # EG 41
    out = candidates(post, k=2, radius=1, cap=8)
    assert out[:2] == [4, 41]
    assert len(out) == 8
    assert set(out[2:]) <= set(neighbours(4)) | set(neighbours(41))
    assert candidates(post, k=1, radius=0) == [4]
    with pytest.raises(ValueError, match="shape"):
        candidates(np.ones(98))
    with pytest.raises(ValueError, match="NaN"):
        candidates(np.full(99, np.nan))
