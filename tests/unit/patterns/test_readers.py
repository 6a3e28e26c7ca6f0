"""Pattern files as instruments and programs write them: units, columns, and errors that name the file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ratagent.patterns import HC_KEV_ANGSTROM, read_pattern

TTH = np.linspace(10.0, 80.0, 701)
INTENSITY = 100.0 + 1000.0 * np.exp(-0.5 * ((TTH - 30.0) / 0.1) ** 2)


def _xy(path, header, *columns):
    np.savetxt(path, np.c_[columns] if columns else np.c_[TTH, INTENSITY], header=header, comments="# ")
    return path


@pytest.mark.parametrize(
    ("header", "wavelength"),
    [
        ("wavelength: 0.7293", 0.7293),
        ("Wavelength (A) = 1.5406", 1.5406),
        ("lambda = 0.07293 nm", 0.7293),
        ("Wavelength [nm]: 0.07293", 0.7293),
        ("λ = 72.93 pm", 0.7293),
        ("energy: 17.0 keV", HC_KEV_ANGSTROM / 17.0),
        ("Energy (keV) = 30", HC_KEV_ANGSTROM / 30.0),
        ("beam energy [eV]: 17000", HC_KEV_ANGSTROM / 17.0),
    ],
)
def test_header_wavelength_and_energy_with_units(tmp_path, header, wavelength):
    p = read_pattern(_xy(tmp_path / "a.xy", header))
    assert p.wavelength == pytest.approx(wavelength, rel=1e-12)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("energy: 17.0", "energy without a unit"),
        ("wavelength (furlong): 1.5", "'furlong' is not one of"),
        ("wavelength: 15.406 nm", "not an X-ray or neutron diffraction wavelength"),
    ],
)
def test_header_wavelength_errors_name_the_file(tmp_path, header, words):
    path = _xy(tmp_path / "b.xy", header)
    with pytest.raises(ValueError, match=str(path)) as err:
        read_pattern(path)
    assert words in str(err.value)


def test_three_unnamed_columns_are_not_guessed(tmp_path):
    path = _xy(tmp_path / "c.xy", "wavelength: 1.5406", TTH, INTENSITY, -np.ones_like(TTH))
    with pytest.raises(ValueError, match=rf"{path}: 3 columns and no header naming them"):
        read_pattern(path)
    assert read_pattern(path, columns=(0, 1)).sigma is None


def test_columns_by_header_name(tmp_path):
    q = 4 * np.pi * np.sin(np.radians(TTH / 2)) / 1.5406
    path = _xy(tmp_path / "d.dat", "wavelength: 1.5406\n2Theta(deg) Q counts esd", TTH, q, INTENSITY,
               np.sqrt(INTENSITY))
    p = read_pattern(path)
    np.testing.assert_array_equal(p.intensity, INTENSITY)
    np.testing.assert_allclose(p.sigma, np.sqrt(INTENSITY))
    p = read_pattern(path, columns=("2theta", "counts"))
    assert p.sigma is None
    with pytest.raises(ValueError, match="no column named 'yobs'"):
        read_pattern(path, columns=("2theta", "yobs"))
    with pytest.raises(ValueError, match="column 7 does not exist"):
        read_pattern(path, columns=(0, 7))


def test_xye_zero_sigma_at_zero_counts_is_one_count(tmp_path):
    counts = np.where(TTH < 12.0, 0.0, INTENSITY)
    sigma = np.sqrt(counts)
    path = _xy(tmp_path / "e.xye", "wavelength: 1.5406", TTH, counts, sigma)
    p = read_pattern(path)
    assert np.all(p.sigma[counts == 0] == 1.0)
    np.testing.assert_array_equal(p.sigma[counts > 0], sigma[counts > 0])
    assert p.meta["sigma_of_zero_counts"] == int((counts == 0).sum())


@pytest.mark.parametrize(
    ("columns", "words"),
    [
        ((TTH, np.where(TTH > 50, np.nan, INTENSITY)), "non-finite"),
        ((TTH, INTENSITY, np.where(TTH > 50, -1.0, 10.0)), "sigma must be positive"),
        ((TTH[::-1], INTENSITY), "strictly increasing"),
    ],
    ids=["NaN", "negative sigma", "decreasing"],
)
def test_bad_values_name_the_file(tmp_path, columns, words):
    path = _xy(tmp_path / "f.xye", "wavelength: 1.5406", *columns)
    with pytest.raises(ValueError, match=str(path)) as err:
        read_pattern(path)
    assert words in str(err.value)


def test_too_few_points_names_the_file(tmp_path):
    path = tmp_path / "g.xy"
    path.write_text("# wavelength: 1.5406\n10 1\n")
    with pytest.raises(ValueError, match=rf"{path}: .*at least"):
        read_pattern(path)


def test_pickled_npz_names_the_file(tmp_path):
    path = tmp_path / "h.npz"
    np.savez(path, two_theta=TTH, intensity=np.array([pickle.dumps(1)], dtype=object))
    with pytest.raises(ValueError, match=str(path)):
        read_pattern(path, wavelength=1.5406)


def test_wrong_given_wavelength_names_the_file(tmp_path):
    path = _xy(tmp_path / "i.xy", "")
    with pytest.raises(ValueError, match=rf"{path}: wavelength must be a positive"):
        read_pattern(path, wavelength=-1.0)
