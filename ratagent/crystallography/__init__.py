"""Crystallography core: space groups (gemmi), the paper's extinction groups, the 37-bit
split label and the EG subgroup DAG (networkx).

This layer imports nothing of ratagent's above :mod:`ratagent.patterns`.
"""

from ratagent.crystallography.dag import candidates, dag_distance, eg_dag, neighbours
from ratagent.crystallography.extinction import (
    CENTRINGS,
    N_EG,
    ExtinctionGroup,
    eg_crystal_system,
    eg_settings,
    eg_symbol,
    eg_to_sgs,
    extinction_group,
    extinction_groups,
    monoclinic_unique_axis,
    read_paper_prior,
    sg_to_eg,
)
from ratagent.crystallography.labels import N_BITS, code_matrix, decode, encode
from ratagent.crystallography.spacegroups import (
    CRYSTAL_SYSTEMS,
    crystal_system,
    space_group,
    systematically_absent,
)

__all__ = [
    "CENTRINGS",
    "CRYSTAL_SYSTEMS",
    "N_BITS",
    "N_EG",
    "ExtinctionGroup",
    "candidates",
    "code_matrix",
    "crystal_system",
    "dag_distance",
    "decode",
    "eg_crystal_system",
    "eg_dag",
    "eg_settings",
    "eg_symbol",
    "eg_to_sgs",
    "encode",
    "extinction_group",
    "extinction_groups",
    "monoclinic_unique_axis",
    "neighbours",
    "read_paper_prior",
    "sg_to_eg",
    "space_group",
    "systematically_absent",
]
