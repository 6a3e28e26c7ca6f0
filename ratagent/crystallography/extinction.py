"""The paper's 99 extinction groups (EGs): table, symbols, and their absence sets in gemmi.

Data (packaged in ``data/``, provenance in ``data/PROVENANCE.md``):

* ``paper_sg_to_eg.csv`` — space group 1–230 → EG **1–99** and crystal system, the
  paper's ``FINAL_SPG_ExtG_CrysS_Table.csv``. This numbering is the one ratagent uses
  everywhere (model output index i ↔ EG i + 1).
* ``paper_eg_symbols.csv`` — the paper's **0-based canonical index** → extinction symbol
  (with equivalent settings) → space groups. It is joined to the 1–99 table through the
  space-group lists, never by "subtract one".

An EG's *settings* are the gemmi settings, common to all of its space groups, in which
they all forbid the same reflections; for orthorhombic and monoclinic EGs there are
several (axis permutations, unique axis, cell choice, A/B/C centring), which is how the
paper's "equiv:" lists group settings together.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import gemmi
import numpy as np

from ratagent.crystallography.spacegroups import (
    absence_signature,
    lattice_family,
    settings,
)

__all__ = [
    "CENTRINGS",
    "N_EG",
    "ExtinctionGroup",
    "eg_crystal_system",
    "eg_settings",
    "eg_symbol",
    "eg_to_sgs",
    "extinction_group",
    "extinction_groups",
    "monoclinic_unique_axis",
    "read_paper_prior",
    "sg_to_eg",
]

#: Number of extinction groups in the paper's table.
N_EG = 99

#: Lattice centrings of the 37-bit label; A and B centring are folded into C.
CENTRINGS = ("P", "C", "I", "F", "R")


@dataclass(frozen=True)
class ExtinctionGroup:
    """One extinction group of the paper's table."""

    number: int  # 1–99, the paper's FINAL table numbering
    canonical_index: int  # 0–98, the paper's canonical symbol / DAG numbering
    symbol: str  # canonical extinction symbol, e.g. "P 21/b 1 1"
    equivalent_symbols: tuple[str, ...]  # the same EG in other settings
    space_groups: tuple[int, ...]  # member space-group numbers, ascending
    crystal_system: str  # one system; "hexagonal" where trigonal and hexagonal groups mix
    member_systems: tuple[str, ...]  # crystal systems of the members (paper's table)
    centring: str  # one of CENTRINGS (A/B → C)
    positions: tuple[str, str, str]  # the three symbol positions, "-" where no condition

    @property
    def lattice_family(self) -> str:
        """Lattice family (trigonal and hexagonal EGs share "hexagonal")."""
        return lattice_family(self.crystal_system)


def _data(name: str) -> str:
    return resources.files("ratagent.crystallography").joinpath("data").joinpath(name).read_text("utf-8")


_TOKEN = re.compile(r"\(\w+\)|[^\s()]+")


def parse_symbol(symbol: str) -> tuple[str, tuple[str, str, str]]:
    """Split an extinction symbol into (centring, three positions).

    ``"C - c (ab)"`` → ``("C", ("-", "c", "(ab)"))``; ``"R (obv)- - c"`` → ``("R", ("-", "-", "c"))``;
    ``"P -"`` → ``("P", ("-", "-", "-"))``. A and B centring are returned as C.
    """
    s = re.sub(r"\((obv|rev)\)", " ", symbol.strip())
    if not s or s[0] not in "PABCIFR":
        raise ValueError(f"extinction symbol {symbol!r} does not start with a lattice letter")
    centring = "C" if s[0] in "AB" else s[0]
    tokens = _TOKEN.findall(s[1:])
    if not 1 <= len(tokens) <= 3:
        raise ValueError(f"extinction symbol {symbol!r} has {len(tokens)} positions, expected 1–3")
    padded = (*tokens, *["-"] * (3 - len(tokens)))
    return centring, (padded[0], padded[1], padded[2])


@cache
def _sg_table() -> tuple[dict[int, int], dict[int, str]]:
    sg_to_eg: dict[int, int] = {}
    systems: dict[int, str] = {}
    for row in csv.DictReader(_data("paper_sg_to_eg.csv").splitlines()):
        sg = int(row["Space Group"])
        sg_to_eg[sg] = int(row["Extinction Group"])
        systems[sg] = row["Crystal System"].strip().lower()
    if sorted(sg_to_eg) != list(range(1, 231)):
        raise RuntimeError("packaged paper_sg_to_eg.csv does not list space groups 1–230 once each")
    return sg_to_eg, systems


@cache
def extinction_groups() -> tuple[ExtinctionGroup, ...]:
    """All 99 EGs, ordered by number (element i is EG i + 1)."""
    sg_to_eg_map, systems = _sg_table()
    members: dict[int, list[int]] = {}
    for sg, eg in sg_to_eg_map.items():
        members.setdefault(eg, []).append(sg)
    by_sgs: dict[tuple[int, ...], tuple[int, str]] = {}
    for row in csv.DictReader(_data("paper_eg_symbols.csv").splitlines()):
        sgs = tuple(sorted(json.loads(row["Space Group Numbers"])))
        by_sgs[sgs] = (int(row["Index"]), row["Canonical Extinction Group"])
    groups = []
    for number in range(1, N_EG + 1):
        sgs = tuple(sorted(members.get(number, ())))
        if sgs not in by_sgs:
            raise RuntimeError(f"EG {number} (space groups {sgs}) has no canonical symbol row")
        index, text = by_sgs[sgs]
        symbol, _, equiv = text.partition(" (equiv:")
        equivalents = tuple(e.strip() for e in equiv.rstrip(")").split(",") if e.strip())
        member_systems = tuple(sorted({systems[s] for s in sgs}))
        system = member_systems[0] if len(member_systems) == 1 else "hexagonal"
        centring, positions = parse_symbol(symbol)
        groups.append(
            ExtinctionGroup(
                number=number,
                canonical_index=index,
                symbol=symbol.strip(),
                equivalent_symbols=equivalents,
                space_groups=sgs,
                crystal_system=system,
                member_systems=member_systems,
                centring=centring,
                positions=positions,
            )
        )
    return tuple(groups)


def _check_eg(eg: int) -> int:
    if isinstance(eg, bool) or not isinstance(eg, int | np.integer):
        raise TypeError(f"extinction group must be an int 1–{N_EG}, got {eg!r}")
    if not 1 <= int(eg) <= N_EG:
        raise ValueError(f"extinction group must be in 1–{N_EG}, got {eg}")
    return int(eg)


def extinction_group(eg: int) -> ExtinctionGroup:
    """The EG with paper number ``eg`` (1–99)."""
    return extinction_groups()[_check_eg(eg) - 1]


def sg_to_eg(sg: int) -> int:
    """Extinction group (1–99) of a space group number (1–230), from the paper's table."""
    if isinstance(sg, bool) or not isinstance(sg, int | np.integer) or not 1 <= int(sg) <= 230:
        raise ValueError(f"space-group number must be an int in 1–230, got {sg!r}")
    return _sg_table()[0][int(sg)]


def eg_to_sgs(eg: int) -> tuple[int, ...]:
    """Space-group numbers of an EG."""
    return extinction_group(eg).space_groups


def eg_crystal_system(eg: int) -> str:
    """Crystal system of an EG ("hexagonal" for EGs 71, 73, 74 that mix trigonal and hexagonal)."""
    return extinction_group(eg).crystal_system


def eg_symbol(eg: int) -> str:
    """Canonical extinction symbol of an EG, e.g. ``eg_symbol(4) == "P 21/b 1 1"``."""
    return extinction_group(eg).symbol


def monoclinic_unique_axis(sg: gemmi.SpaceGroup) -> str:
    """The unique axis of a monoclinic setting from its H–M symbol ("P 1 21/c 1" → "b",
    "B 1 1 2" → "c"; "b" where the symbol names no axis)."""
    parts = sg.hm.split()[1:4]
    return next(("abc"[i] for i, p in enumerate(parts) if p != "1"), "b")


@cache
def eg_settings(eg: int, hmax: int = 8) -> tuple[gemmi.SpaceGroup, ...]:
    """Settings in which **all** space groups of an EG forbid the same reflections.

    For each space group of the EG, gemmi's settings are fingerprinted by their absence
    set over |h|,|k|,|l| ≤ ``hmax``; the fingerprints common to every member are the EG's
    settings (one representative setting each, taken from the lowest-numbered member,
    standard setting first). A monoclinic EG keeps one per fingerprint and unique axis:
    P 1 2 1, P 2 1 1 and P 1 1 2 forbid nothing, but each constrains another angle of the
    cell, and a cell given with unique axis c (γ ≠ 90°) is fitted only in a setting with
    that axis. Only settings with a lattice letter that the paper's symbol or its
    "equiv:" list uses are considered (so the centred triclinic settings gemmi also
    tabulates, such as ``C 1``, are not settings of EG 99 "P -"). Empty if the members
    share no absence set in any such setting, which the tests check never happens.
    """
    group = extinction_group(eg)
    letters = {sym.strip()[0] for sym in (group.symbol, *group.equivalent_symbols)}
    monoclinic = group.lattice_family == "monoclinic"

    def usable(sg: int) -> list[gemmi.SpaceGroup]:
        return [s for s in settings(sg) if s.centring_type() in letters]

    common: set[bytes] | None = None
    for sg in group.space_groups:
        sigs = {absence_signature(s, hmax) for s in usable(sg)}
        common = sigs if common is None else common & sigs
    chosen: dict[tuple[bytes, str], gemmi.SpaceGroup] = {}
    for s in usable(group.space_groups[0]):
        sig = absence_signature(s, hmax)
        if sig in (common or ()):
            chosen.setdefault((sig, monoclinic_unique_axis(s) if monoclinic else ""), s)
    return tuple(chosen.values())


@cache
def read_paper_prior() -> np.ndarray:
    """The paper's EG frequency prior as log-probabilities, shape (99,), index i ↔ EG i + 1."""
    out = np.full(N_EG, np.nan)
    for row in csv.DictReader(_data("paper_eg_prior.csv").splitlines()):
        out[int(row["ext_group"]) - 1] = float(row["log_prior"])
    if np.isnan(out).any():
        raise RuntimeError("packaged paper_eg_prior.csv misses some EGs")
    out.setflags(write=False)
    return out
