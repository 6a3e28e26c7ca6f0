"""A built-in library of real mineral structures for the simulated sample changer.

Each entry is a published structure: cell, space group (with the setting the coordinates
refer to) and the atoms of the asymmetric unit, with the reference it comes from.
Displacement parameters are set to a common B = 0.5 Å² (the published anisotropic or
isotropic values are not needed to simulate which reflections are present).
:func:`mineral_record` expands a mineral into a :class:`ratagent.simulation.reflections.ReflectionList`
with :func:`ratagent.simulation.structures.crystal_from_sites` (gemmi's symmetry operations),
so the beamline and the training data share one physics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = ["MINERALS", "Mineral", "mineral", "mineral_crystal", "mineral_record"]

B_ISO = 0.5  # Å², common isotropic displacement of every atom


@dataclass(frozen=True)
class Mineral:
    """A published crystal structure."""

    name: str
    formula: str
    sg_number: int  # 1–230
    setting: str | None  # gemmi H–M name of a non-reference setting (None: gemmi's reference)
    cell: tuple[float, float, float, float, float, float]  # a, b, c (Å), α, β, γ (degrees)
    sites: tuple[tuple[str, tuple[float, float, float]], ...]  # (element, fractional x, y, z)
    reference: str

    @property
    def hall(self) -> str | None:
        """Hall symbol of ``setting`` (None: the reference setting)."""
        if self.setting is None:
            return None
        import gemmi

        return gemmi.find_spacegroup_by_name(self.setting).hall


def _m(name, formula, sg, setting, cell, sites, ref) -> Mineral:
    return Mineral(name, formula, sg, setting, tuple(float(v) for v in cell),
                   tuple((el, tuple(float(v) for v in xyz)) for el, xyz in sites), ref)


C90 = (90.0, 90.0, 90.0)
HEX = (90.0, 90.0, 120.0)

#: The library, by name. 23 minerals; every crystal system is present.
MINERALS: dict[str, Mineral] = {m.name: m for m in (
    # ---------------------------------------------------------------- cubic
    _m("halite", "NaCl", 225, None, (5.6402, 5.6402, 5.6402, *C90),
       [("Na", (0, 0, 0)), ("Cl", (0.5, 0.5, 0.5))],
       "Abrahams & Bernstein, Acta Cryst. 18, 926 (1965)"),
    _m("periclase", "MgO", 225, None, (4.2112, 4.2112, 4.2112, *C90),
       [("Mg", (0, 0, 0)), ("O", (0.5, 0.5, 0.5))],
       "Hazen, Am. Mineral. 61, 266 (1976)"),
    _m("fluorite", "CaF2", 225, None, (5.4631, 5.4631, 5.4631, *C90),
       [("Ca", (0, 0, 0)), ("F", (0.25, 0.25, 0.25))],
       "Batchelder & Simmons, J. Chem. Phys. 41, 2324 (1964)"),
    _m("sphalerite", "ZnS", 216, None, (5.4093, 5.4093, 5.4093, *C90),
       [("Zn", (0, 0, 0)), ("S", (0.25, 0.25, 0.25))],
       "Skinner, Am. Mineral. 46, 1399 (1961)"),
    _m("pyrite", "FeS2", 205, None, (5.4166, 5.4166, 5.4166, *C90),
       [("Fe", (0, 0, 0)), ("S", (0.385, 0.385, 0.385))],
       "Bayliss, Am. Mineral. 62, 1168 (1977)"),
    _m("spinel", "MgAl2O4", 227, "F d -3 m:2", (8.0806, 8.0806, 8.0806, *C90),
       [("Mg", (0.125, 0.125, 0.125)), ("Al", (0.5, 0.5, 0.5)), ("O", (0.2623, 0.2623, 0.2623))],
       "Finger, Hazen & Hofmeister, Phys. Chem. Minerals 13, 215 (1986)"),
    _m("cuprite", "Cu2O", 224, "P n -3 m:2", (4.2696, 4.2696, 4.2696, *C90),
       [("O", (0.25, 0.25, 0.25)), ("Cu", (0, 0, 0))],
       "Restori & Schwarzenbach, Acta Cryst. B42, 201 (1986)"),
    # ---------------------------------------------------------------- tetragonal
    _m("rutile", "TiO2", 136, None, (4.5937, 4.5937, 2.9587, *C90),
       [("Ti", (0, 0, 0)), ("O", (0.30478, 0.30478, 0))],
       "Howard, Sabine & Dickson, Acta Cryst. B47, 462 (1991)"),
    _m("anatase", "TiO2", 141, None, (3.7845, 3.7845, 9.5143, *C90),
       [("Ti", (0, 0, 0)), ("O", (0, 0, 0.2081))],
       "Horn, Schwerdtfeger & Meagher, Z. Kristallogr. 136, 273 (1972)"),
    _m("zircon", "ZrSiO4", 141, "I 41/a m d:2", (6.607, 6.607, 5.982, *C90),
       [("Zr", (0, 0.75, 0.125)), ("Si", (0, 0.25, 0.375)), ("O", (0, 0.0661, 0.1953))],
       "Hazen & Finger, Am. Mineral. 64, 196 (1979)"),
    _m("chalcopyrite", "CuFeS2", 122, None, (5.289, 5.289, 10.423, *C90),
       [("Cu", (0, 0, 0)), ("Fe", (0, 0, 0.5)), ("S", (0.2574, 0.25, 0.125))],
       "Hall & Stewart, Acta Cryst. B29, 579 (1973)"),
    # ---------------------------------------------------------------- hexagonal
    _m("zincite", "ZnO", 186, None, (3.2498, 3.2498, 5.2066, *HEX),
       [("Zn", (1 / 3, 2 / 3, 0)), ("O", (1 / 3, 2 / 3, 0.3819))],
       "Abrahams & Bernstein, Acta Cryst. B25, 1233 (1969)"),
    _m("graphite", "C", 194, None, (2.464, 2.464, 6.711, *HEX),
       [("C", (0, 0, 0.25)), ("C", (1 / 3, 2 / 3, 0.25))],
       "Trucano & Chen, Nature 258, 136 (1975)"),
    _m("fluorapatite", "Ca5(PO4)3F", 176, None, (9.3973, 9.3973, 6.8782, *HEX),
       [("Ca", (1 / 3, 2 / 3, 0.0010)), ("Ca", (0.2415, 0.0071, 0.25)), ("P", (0.3982, 0.3689, 0.25)),
        ("O", (0.3264, 0.4850, 0.25)), ("O", (0.5877, 0.4668, 0.25)), ("O", (0.3418, 0.2576, 0.0704)),
        ("F", (0, 0, 0.25))],
       "Hughes, Cameron & Crowley, Am. Mineral. 74, 870 (1989)"),
    # ---------------------------------------------------------------- trigonal
    _m("quartz", "SiO2", 154, None, (4.9134, 4.9134, 5.4052, *HEX),
       [("Si", (0.4697, 0, 0)), ("O", (0.4135, 0.2669, 0.1191))],
       "Le Page & Donnay, Acta Cryst. B32, 2456 (1976)"),
    _m("calcite", "CaCO3", 167, None, (4.991, 4.991, 17.062, *HEX),
       [("Ca", (0, 0, 0)), ("C", (0, 0, 0.25)), ("O", (0.2578, 0, 0.25))],
       "Effenberger, Mereiter & Zemann, Z. Kristallogr. 156, 233 (1981)"),
    _m("corundum", "Al2O3", 167, None, (4.7589, 4.7589, 12.991, *HEX),
       [("Al", (0, 0, 0.35216)), ("O", (0.30624, 0, 0.25))],
       "Lewis, Schwarzenbach & Flack, Acta Cryst. A38, 733 (1982)"),
    _m("dolomite", "CaMg(CO3)2", 148, None, (4.8012, 4.8012, 16.002, *HEX),
       [("Ca", (0, 0, 0)), ("Mg", (0, 0, 0.5)), ("C", (0, 0, 0.24287)), ("O", (0.24809, 0.96514, 0.24410))],
       "Reeder & Markgraf, Am. Mineral. 71, 795 (1986)"),
    # ---------------------------------------------------------------- orthorhombic
    _m("forsterite", "Mg2SiO4", 62, "P b n m", (4.7535, 10.1943, 5.9807, *C90),
       [("Mg", (0, 0, 0)), ("Mg", (0.9915, 0.2774, 0.25)), ("Si", (0.4262, 0.0940, 0.25)),
        ("O", (0.7657, 0.0913, 0.25)), ("O", (0.2215, 0.4474, 0.25)), ("O", (0.2777, 0.1628, 0.0331))],
       "Smyth & Hazen, Am. Mineral. 58, 588 (1973)"),
    _m("marcasite", "FeS2", 58, None, (4.4431, 5.4245, 3.3871, *C90),
       [("Fe", (0, 0, 0)), ("S", (0.2002, 0.3780, 0))],
       "Brostigen, Kjekshus & Rømming, Acta Chem. Scand. 27, 2791 (1973)"),
    # ---------------------------------------------------------------- monoclinic
    _m("diopside", "CaMgSi2O6", 15, None, (9.746, 8.899, 5.251, 90.0, 105.63, 90.0),
       [("Ca", (0, 0.3015, 0.25)), ("Mg", (0, 0.9082, 0.25)), ("Si", (0.2862, 0.0934, 0.2294)),
        ("O", (0.1156, 0.0873, 0.1422)), ("O", (0.3611, 0.2500, 0.3180)), ("O", (0.3505, 0.0176, 0.9953))],
       "Clark, Appleman & Papike, Mineral. Soc. Am. Spec. Pap. 2, 31 (1969)"),
    _m("baddeleyite", "ZrO2", 14, None, (5.1505, 5.2116, 5.3173, 90.0, 99.23, 90.0),
       [("Zr", (0.2758, 0.0411, 0.2082)), ("O", (0.0703, 0.3359, 0.3406)), ("O", (0.4423, 0.7549, 0.4789))],
       "Howard, Hill & Reichert, Acta Cryst. B44, 116 (1988)"),
    # ---------------------------------------------------------------- triclinic
    _m("kyanite", "Al2SiO5", 2, None, (7.1262, 7.8520, 5.5724, 89.99, 101.11, 106.03),
       [("Al", (0.3254, 0.7040, 0.4582)), ("Al", (0.2974, 0.6989, 0.9505)), ("Al", (0.0998, 0.3862, 0.6403)),
        ("Al", (0.1120, 0.9175, 0.1649)), ("Si", (0.2962, 0.0649, 0.7066)), ("Si", (0.2910, 0.3317, 0.1892)),
        ("O", (0.1095, 0.1468, 0.1288)), ("O", (0.1230, 0.6856, 0.1812)), ("O", (0.2747, 0.4545, 0.9547)),
        ("O", (0.2831, 0.9354, 0.9353)), ("O", (0.1219, 0.6307, 0.6389)), ("O", (0.2822, 0.4453, 0.4288)),
        ("O", (0.2915, 0.9467, 0.4659)), ("O", (0.5008, 0.2749, 0.2440)), ("O", (0.1084, 0.1520, 0.6669)),
        ("O", (0.5015, 0.2312, 0.7553))],
       "Winter & Ghose, Am. Mineral. 64, 573 (1979)"),
)}  # fmt: skip


def mineral(name: str) -> Mineral:
    """The library entry ``name`` (case-insensitive)."""
    key = name.lower()
    if key not in MINERALS:
        raise ValueError(f"unknown mineral {name!r}; the library holds {sorted(MINERALS)}")
    return MINERALS[key]


def mineral_crystal(name: str):
    """The :class:`ratagent.simulation.structures.Crystal` of a mineral (all atoms of the cell)."""
    from ratagent.simulation.structures import crystal_from_sites

    m = mineral(name)
    return crystal_from_sites(m.sg_number, m.cell, m.sites, b_iso=B_ISO, hall=m.hall)


@functools.lru_cache(maxsize=64)
def mineral_record(name: str, d_min: float = 1.0):
    """The :class:`~ratagent.simulation.reflections.ReflectionList` of a mineral down to ``d_min`` Å."""
    from ratagent.simulation.reflections import reflection_list

    return reflection_list(mineral_crystal(name), d_min=d_min, name=mineral(name).name)
