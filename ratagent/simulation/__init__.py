"""Forward simulator: random structure bank and a batched powder-pattern renderer (torch).

Importing this package is cheap: the names below load their module (and torch, for
the renderer) on first use, so bank-writing worker processes never import torch.

* Structures: :class:`Crystal`, :func:`random_crystal`, :func:`crystal_from_sites`, and the
  element statistics they draw from, :func:`composition`.
* Reflection lists: :class:`ReflectionList`, :func:`reflection_list`, :func:`from_cif`,
  :func:`from_gemmi`.
* Bank: :func:`write_bank`, :func:`read_shard`, :func:`iter_bank`, :func:`bank_settings`,
  :func:`check_absences`, :func:`random_record`, :func:`sample_space_group`.
* Rendering: :func:`collate`, :func:`render`, :func:`peak_table`, :class:`PatternParams`;
  on several CPU cores :class:`RenderPool`;
  with noise and background :func:`simulate_batch` (:class:`AugmentationConfig`), and for
  one structure :func:`simulate_pattern`.
* Physics: :mod:`ratagent.simulation.physics` (pure torch functions).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "AugmentationConfig": "augment",
    "Conditions": "augment",
    "SimulatedBatch": "augment",
    "simulate_batch": "augment",
    "AbsenceReport": "bank",
    "bank_settings": "bank",
    "check_absences": "bank",
    "iter_bank": "bank",
    "random_record": "bank",
    "read_shard": "bank",
    "sample_space_group": "bank",
    "write_bank": "bank",
    "simulate_pattern": "pattern",
    "ReflectionList": "reflections",
    "from_cif": "reflections",
    "from_gemmi": "reflections",
    "reflection_list": "reflections",
    "PatternParams": "renderer",
    "ReflectionBatch": "renderer",
    "collate": "renderer",
    "peak_table": "renderer",
    "render": "renderer",
    "RenderPool": "pool",
    "Crystal": "structures",
    "composition": "structures",
    "crystal_from_sites": "structures",
    "random_crystal": "structures",
}

__all__ = [
    "AbsenceReport",
    "AugmentationConfig",
    "Conditions",
    "Crystal",
    "PatternParams",
    "ReflectionBatch",
    "ReflectionList",
    "RenderPool",
    "SimulatedBatch",
    "bank_settings",
    "check_absences",
    "collate",
    "composition",
    "crystal_from_sites",
    "from_cif",
    "from_gemmi",
    "iter_bank",
    "peak_table",
    "random_crystal",
    "random_record",
    "read_shard",
    "reflection_list",
    "render",
    "sample_space_group",
    "simulate_batch",
    "simulate_pattern",
    "write_bank",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:
    from ratagent.simulation.augment import (
        AugmentationConfig,
        Conditions,
        SimulatedBatch,
        simulate_batch,
    )
    from ratagent.simulation.bank import (
        AbsenceReport,
        bank_settings,
        check_absences,
        iter_bank,
        random_record,
        read_shard,
        sample_space_group,
        write_bank,
    )
    from ratagent.simulation.pattern import simulate_pattern
    from ratagent.simulation.reflections import ReflectionList, from_cif, from_gemmi, reflection_list
    from ratagent.simulation.renderer import PatternParams, ReflectionBatch, collate, peak_table, render
    from ratagent.simulation.structures import Crystal, composition, crystal_from_sites, random_crystal
