"""Write ratagent/simulation/data/icsd_element_occurrence.csv from pymatgen's ICSD statistics.

pymatgen ships ``pymatgen/core/icsd_bv.yaml``, bond-valence statistics data-mined from the
ICSD; its ``occurrence`` section counts each species (element and oxidation state) and is
the prior that ``pymatgen.analysis.bond_valence.BVAnalyzer`` weighs oxidation states by.
This script sums the counts over oxidation states, one row per element, heaviest share
first. Run it with pymatgen installed (a test dependency of ratagent):

    python scripts/icsd_elements.py
"""

from __future__ import annotations

import re
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "ratagent" / "simulation" / "data" / "icsd_element_occurrence.csv"


def _pymatgen_version() -> str:
    """The distribution that installs pymatgen.core (pymatgen-core, or pymatgen before the split)."""
    for dist in ("pymatgen-core", "pymatgen"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "pymatgen (version unknown)"


def main() -> None:
    source = files("pymatgen.core") / "icsd_bv.yaml"
    occurrence = yaml.safe_load(source.read_text(encoding="utf-8"))["occurrence"]
    counts: Counter[str] = Counter()
    for species, n in occurrence.items():
        match = re.match(r"[A-Z][a-z]?", species)
        if match is None:
            raise ValueError(f"{source}: species {species!r} does not start with an element symbol")
        counts[match.group(0)] += int(n)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"# element occurrences summed over oxidation states, from {_pymatgen_version()}, "
             "pymatgen/core/icsd_bv.yaml (see PROVENANCE.md)", "element,occurrences"]
    lines += [f"{el},{n}" for el, n in rows]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(rows)} elements, {sum(counts.values())} occurrences")


if __name__ == "__main__":
    main()
