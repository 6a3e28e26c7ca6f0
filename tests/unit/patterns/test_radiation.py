"""Radiation by element: published Kα1/Kα2 wavelengths, header reading, and the CLI's choice."""

import pytest

from ratagent.instrument import RADIATIONS, Instrument, radiation_lines, reading_wavelength, stated_instrument
from ratagent.patterns import read_pattern

# Kα1, Kα2 in Å: Hölzer et al., Phys. Rev. A 56, 4554 (1997) (Cr, Fe, Co, Cu) and
# International Tables Vol. C, Table 4.2.2.1 (Mo, Ag); Cu Kα1 as laboratory software writes it
PUBLISHED = {
    "Cr": (2.28970, 2.29361),
    "Fe": (1.93604, 1.93998),
    "Co": (1.78897, 1.79285),
    "Cu": (1.54056, 1.54439),
    "Mo": (0.70930, 0.71359),
    "Ag": (0.55941, 0.56380),
}


@pytest.mark.parametrize("element", sorted(PUBLISHED))
def test_each_anode_has_its_published_doublet(element):
    inst = Instrument.for_radiation(element)
    ka1, ka2 = PUBLISHED[element]
    assert inst.wavelengths_angstrom == pytest.approx((ka1, ka2), abs=5e-5)
    assert inst.line_ratios == (1.0, 0.5)
    assert inst.anode == element and inst.radiation == f"{element} Kα1/Kα2"


@pytest.mark.parametrize("name", ["cu", "CuKa", "Cu Kα", "Cu-Ka12", "CU"])
def test_spellings_of_the_copper_doublet(name):
    assert radiation_lines(name) == radiation_lines("Cu")


def test_mono_is_one_line_at_the_given_wavelength():
    inst = Instrument.for_radiation("mono", 0.7293)
    assert inst.wavelengths_angstrom == (0.7293,) and inst.anode is None
    assert inst.radiation == "mono 0.7293 Å"


@pytest.mark.parametrize(
    "args, words",
    [
        (("W",), "unknown radiation 'W'"),
        (("Cux",), "unknown radiation 'Cux'"),
        (("mono",), "needs a positive wavelength"),
        (("Mo", 1.5406), "is not Mo Kα1"),
    ],
)
def test_bad_radiation_is_named(args, words):
    with pytest.raises(ValueError, match=words):
        radiation_lines(*args)


@pytest.mark.parametrize(
    "radiation, wavelength, read_at",
    [
        (None, None, None),  # the file's header must say
        (None, 0.7293, 0.7293),
        ("mono", 0.7293, 0.7293),
        ("Synchrotron", 0.4592, 0.4592),
        ("Mo", None, 0.70930),
        ("Cu", 1.5406, 1.5406),
    ],
)
def test_a_file_is_read_at_the_given_wavelength_else_the_anodes_ka1(radiation, wavelength, read_at):
    got = reading_wavelength(radiation, wavelength)
    assert got == (None if read_at is None else pytest.approx(read_at, abs=5e-5))


def test_a_wavelength_that_is_not_the_anodes_ka1_is_refused():
    with pytest.raises(ValueError, match="is not Co Kα1"):
        reading_wavelength("Co", 1.5406)


def test_every_table_entry_is_a_known_anode():
    assert set(RADIATIONS) == set(PUBLISHED)


@pytest.mark.parametrize(
    "line, anode",
    [
        ("# radiation: Co", "Co"),
        ("# Anode = Mo", "Mo"),
        ("# CuKa1/Ka2, 40 kV 40 mA", "Cu"),
        ("# target: Ag Kalpha", "Ag"),
        ("# sample: quartz", None),
        ("# Cu Ka1 (Ge(111) monochromator)", "mono"),  # Kα1 alone: one line
        ("# radiation: Cu Kalpha1", "mono"),
        ("# Cu Ka1+2", "Cu"),
        ("# Fe Ka fluorescence suppressed; radiation: Cu", "Cu"),  # the keyword wins
    ],
)
def test_the_anode_is_read_from_a_header(tmp_path, line, anode):
    path = tmp_path / "p.xy"
    rows = "".join(f"{10 + 0.01 * i:.2f} {i % 7 + 1}\n" for i in range(200))
    path.write_text(f"{line}\n# wavelength: 1.5406\n{rows}")
    assert read_pattern(path).meta.get("radiation") == anode


def _headed(tmp_path, header: str):
    path = tmp_path / "p.xy"
    rows = "".join(f"{10 + 0.01 * i:.2f} {i % 7 + 1}\n" for i in range(200))
    path.write_text(f"{header}\n{rows}")
    return path


def test_the_stated_instrument_follows_the_header_and_what_was_given(tmp_path):
    """Given beats the header; a header's anode gives λ = Kα1 and the doublet; a header
    wavelength that is the Kα mean (1.5418 Å) is fitted from Kα1; a header anode that
    the wavelength given in its place contradicts is left aside, not an error."""
    cu = read_pattern(_headed(tmp_path, "# radiation: Cu"))
    inst, source, pattern = stated_instrument(cu)
    assert (inst.radiation, source, pattern.wavelength) == ("Cu Kα1/Kα2", "file header", 1.5406)
    mean = read_pattern(_headed(tmp_path, "# radiation: Cu\n# wavelength: 1.5418"))
    inst, _, pattern = stated_instrument(mean)
    assert mean.wavelength == 1.5418 and pattern.wavelength == inst.wavelength == 1.5406
    given = read_pattern(_headed(tmp_path, "# radiation: Cu"), wavelength=1.0)
    inst, source, pattern = stated_instrument(given)
    assert inst.radiation == "mono 1 Å" and source == "one line: the file header's Cu does not match λ"
    assert stated_instrument(cu, "mono")[:2] == (Instrument.for_radiation("mono", 1.5406), "given")
    with pytest.raises(ValueError, match=r"p\.xy: wavelength 1\.5406 Å is not Mo Kα1.*\(radiation given\)"):
        stated_instrument(cu, "Mo")
    inst, source, _ = stated_instrument(read_pattern(_headed(tmp_path, "# Cu Ka1 monochromated")))
    assert inst.radiation == "mono 1.5406 Å" and source == "file header"
