"""Reference structures (published cells and asymmetric units) for the simulator tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Reference:
    """A structure as published: space group, cell and asymmetric unit."""

    name: str
    sg_number: int
    hm: str  # Hermann–Mauguin symbol with setting, for the CIF and gemmi
    pymatgen_symbol: str  # the same setting as pymatgen spells it
    cell: tuple[float, float, float, float, float, float]
    sites: tuple[tuple[str, tuple[float, float, float]], ...]
    n_atoms: int  # atoms in the unit cell (sum of Wyckoff multiplicities)


REFERENCES = (
    # Si, diamond structure: 8a in origin choice 1 (the setting of gemmi and pymatgen).
    Reference(
        "Si", 227, "F d -3 m :1", "Fd-3m", (5.4309, 5.4309, 5.4309, 90, 90, 90), (("Si", (0.0, 0.0, 0.0)),), 8
    ),
    # Halite: Na 4a, Cl 4b.
    Reference(
        "NaCl",
        225,
        "F m -3 m",
        "Fm-3m",
        (5.6402, 5.6402, 5.6402, 90, 90, 90),
        (("Na", (0.0, 0.0, 0.0)), ("Cl", (0.5, 0.5, 0.5))),
        8,
    ),
    # Rutile TiO2 (Baur 1961): Ti 2a, O 4f.
    Reference(
        "rutile",
        136,
        "P 42/m n m",
        "P4_2/mnm",
        (4.5937, 4.5937, 2.9587, 90, 90, 90),
        (("Ti", (0.0, 0.0, 0.0)), ("O", (0.3048, 0.3048, 0.0))),
        6,
    ),
    # Corundum Al2O3, hexagonal axes (Lewis et al. 1982): Al 12c, O 18e.
    Reference(
        "corundum",
        167,
        "R -3 c :H",
        "R-3c",
        (4.7589, 4.7589, 12.991, 90, 90, 120),
        (("Al", (0.0, 0.0, 0.35216)), ("O", (0.30624, 0.0, 0.25))),
        30,
    ),
    # Baddeleyite, monoclinic ZrO2 (Howard et al. 1988): three 4e sites.
    Reference(
        "baddeleyite",
        14,
        "P 1 21/c 1",
        "P2_1/c",
        (5.1505, 5.2116, 5.3173, 90, 99.23, 90),
        (("Zr", (0.2754, 0.0395, 0.2083)), ("O", (0.0700, 0.3317, 0.3447)), ("O", (0.4496, 0.7569, 0.4792))),
        12,
    ),
    # Zincite ZnO, wurtzite type (Kisi & Elcombe 1989): Zn 2b, O 2b.
    Reference(
        "zincite",
        186,
        "P 63 m c",
        "P6_3mc",
        (3.2498, 3.2498, 5.2066, 90, 90, 120),
        (("Zn", (1 / 3, 2 / 3, 0.0)), ("O", (1 / 3, 2 / 3, 0.3819))),
        4,
    ),
    # Forsterite Mg2SiO4, Pbnm setting of Pnma (Fujino et al. 1981).
    Reference(
        "forsterite",
        62,
        "P b n m",
        "Pbnm",
        (4.7540, 10.1971, 5.9806, 90, 90, 90),
        (
            ("Mg", (0.0, 0.0, 0.0)),
            ("Mg", (0.99150, 0.27740, 0.25)),
            ("Si", (0.42620, 0.09400, 0.25)),
            ("O", (0.76570, 0.09150, 0.25)),
            ("O", (0.22150, 0.44740, 0.25)),
            ("O", (0.27770, 0.16280, 0.03310)),
        ),
        28,
    ),
)


def cif_text(ref: Reference, b_iso: float = 0.0) -> str:
    """A minimal CIF of a reference structure (cell, H-M symbol, sites with U_iso)."""
    a, b, c, al, be, ga = ref.cell
    u = b_iso / (8 * 3.141592653589793**2)
    lines = [
        f"data_{ref.name}",
        f"_cell_length_a {a}",
        f"_cell_length_b {b}",
        f"_cell_length_c {c}",
        f"_cell_angle_alpha {al}",
        f"_cell_angle_beta {be}",
        f"_cell_angle_gamma {ga}",
        f"_symmetry_space_group_name_H-M '{ref.hm}'",
        "loop_",
        "_atom_site_label",
        "_atom_site_type_symbol",
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_U_iso_or_equiv",
    ]
    for i, (el, (x, y, z)) in enumerate(ref.sites):
        lines.append(f"{el}{i + 1} {el} {x:.6f} {y:.6f} {z:.6f} {u:.6f}")
    return "\n".join(lines) + "\n"


@pytest.fixture(params=REFERENCES, ids=[r.name for r in REFERENCES])
def reference(request) -> Reference:
    """Each reference structure in turn."""
    return request.param


@pytest.fixture
def references() -> tuple[Reference, ...]:
    return REFERENCES


@pytest.fixture
def make_cif():
    """``make_cif(ref, b_iso=0.0) -> str``: a minimal CIF of a reference structure."""
    return cif_text
