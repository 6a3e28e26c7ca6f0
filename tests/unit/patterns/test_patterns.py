"""Pattern validation, readers, Q conversion and resampling."""

import numpy as np
import pytest

from ratagent.patterns import (
    MODEL_GRID,
    Pattern,
    QGrid,
    d_spacing,
    q_from_two_theta,
    read_pattern,
    resample_to_q_grid,
    two_theta_from_q,
)

TTH = np.linspace(5, 90, 500)


def _pattern(**kw):
    args = {"two_theta": TTH, "intensity": np.ones_like(TTH), "wavelength": 1.5406}
    args.update(kw)
    return Pattern(**args)


def test_bragg_law_silicon_111():
    # Si a = 5.431 Å (NIST SRM 640), d111 = a/√3 = 3.1356 Å; Cu Kα1 2θ(111) = 28.44° (ICDD 27-1402)
    d111 = 5.4311 / np.sqrt(3)
    tth = float(two_theta_from_q(2 * np.pi / d111, 1.5406))
    assert tth == pytest.approx(28.44, abs=0.01)
    assert float(d_spacing(tth, 1.5406)) == pytest.approx(d111, rel=1e-9)
    assert float(q_from_two_theta(180.0, 1.0)) == pytest.approx(4 * np.pi)


def test_pattern_properties_are_read_only():
    p = _pattern(meta={"sample": "Si"})
    assert len(p) == 500 and p.q[0] < p.q[-1] and p.d_min == pytest.approx(p.d[-1])
    with pytest.raises(ValueError):
        p.intensity[0] = 5.0
    with pytest.raises(TypeError):
        p.meta["x"] = 1  # type: ignore[index]
    assert np.allclose(p.sigma_or_counting(), 1.0)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"wavelength": None}, "wavelength is required"),
        ({"wavelength": 0.0}, "wavelength must be a positive"),
        ({"wavelength": -1.54}, "-1.54"),
        ({"wavelength": float("nan")}, "nan"),
        ({"wavelength": 154.06}, "154.06"),
        ({"intensity": np.r_[np.ones(499), np.nan]}, "non-finite.*index 499"),
        ({"two_theta": np.r_[TTH[:-1], np.inf]}, "two_theta has 1 non-finite"),
        ({"intensity": np.ones(499)}, "500 vs 499"),
        ({"two_theta": TTH[::-1]}, "strictly increasing"),
        ({"two_theta": np.r_[TTH[:10], TTH[9], TTH[11:]]}, r"two_theta\[9\]"),
        ({"two_theta": TTH[:50], "intensity": np.ones(50)}, "50 points"),
        ({"intensity": np.ones((2, 250))}, "one-dimensional"),
        ({"sigma": -np.ones(500)}, "sigma must be positive"),
        ({"two_theta": np.linspace(-1, 90, 500)}, "within \\(0, 180\\)"),
    ],
)
def test_bad_input_names_the_value(kw, message):
    with pytest.raises(ValueError, match=message):
        _pattern(**kw)


def test_wavelength_of_wrong_type():
    with pytest.raises(TypeError, match="wavelength"):
        _pattern(wavelength="copper")


def test_readers_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    inten = rng.uniform(10, 100, TTH.size)
    sig = np.sqrt(inten)
    xy = tmp_path / "a.xy"
    np.savetxt(xy, np.c_[TTH, inten], header="sample A\nwavelength: 0.7293")
    xye = tmp_path / "a.xye"
    np.savetxt(xye, np.c_[TTH, inten, sig])
    csv = tmp_path / "a.csv"
    np.savetxt(csv, np.c_[TTH, inten], delimiter=",", header="two_theta,intensity", comments="")
    npy = tmp_path / "a.npy"
    np.save(npy, np.stack([TTH, inten]))
    npz = tmp_path / "a.npz"
    np.savez(npz, two_theta=TTH, intensity=inten, wavelength=1.0)

    p = read_pattern(xy)
    assert p.wavelength == 0.7293 and np.allclose(p.intensity, inten)
    assert read_pattern(xy, wavelength=1.5406).wavelength == 1.5406  # explicit value wins
    p = read_pattern(xye, wavelength=1.5406)
    assert np.allclose(p.sigma, sig)
    assert np.allclose(read_pattern(csv, wavelength=1.5406).two_theta, TTH)
    assert np.allclose(read_pattern(npy, wavelength=1.5406).intensity, inten)
    assert read_pattern(npz).wavelength == 1.0
    assert Pattern.from_file(npz).meta["source"] == str(npz)


def test_reader_errors(tmp_path):
    f = tmp_path / "b.xy"
    np.savetxt(f, np.c_[TTH, TTH])
    with pytest.raises(ValueError, match=r"states no wavelength"):
        read_pattern(f)
    comma = tmp_path / "comma.xy"
    np.savetxt(comma, np.c_[TTH, TTH], delimiter=",")
    with pytest.raises(ValueError, match=r"separated by commas; name the file \.csv"):
        read_pattern(comma, wavelength=1.5406)
    # a header naming the tube anode gives its Kα1 (ratagent.instrument.RADIATIONS)
    co = tmp_path / "co.xy"
    np.savetxt(co, np.c_[TTH, TTH], header="Anode = Co")
    assert read_pattern(co).wavelength == 1.788996 and read_pattern(co).meta["radiation"] == "Co"
    assert read_pattern(co, wavelength=1.79).wavelength == 1.79
    with pytest.raises(ValueError, match=r"unsupported file type .\.raw."):
        read_pattern(tmp_path / "b.raw", wavelength=1.0)
    with pytest.raises(FileNotFoundError):
        read_pattern(tmp_path / "missing.xy", wavelength=1.0)
    bad = tmp_path / "c.xy"
    bad.write_text("10 1\n11 x\n")
    with pytest.raises(ValueError, match=r"c\.xy:2"):
        read_pattern(bad, wavelength=1.0)


def test_model_grid():
    assert MODEL_GRID.n_points == 8501
    assert MODEL_GRID.two_theta[-1] == pytest.approx(90.0)
    assert MODEL_GRID.sin2theta[0] == pytest.approx(np.sin(np.radians(2.5)) ** 2)


def test_resample_identity_on_the_model_grid():
    tth = MODEL_GRID.two_theta
    inten = np.exp(-0.5 * ((tth - 30) / 0.05) ** 2)
    out, mask = resample_to_q_grid(Pattern(tth, inten, 1.5406))
    assert mask.all()
    assert np.allclose(out, inten, atol=1e-6)


def test_resample_other_wavelength_keeps_d_spacing():
    # a peak at d = 2.0 Å measured at λ = 0.7 Å must land at d = 2.0 Å on the Cu grid
    lam = 0.7
    tth = np.arange(2.0, 40.0, 0.005)
    peak_tth = float(two_theta_from_q(2 * np.pi / 2.0, lam))
    inten = np.exp(-0.5 * ((tth - peak_tth) / 0.01) ** 2)
    out, mask = resample_to_q_grid(Pattern(tth, inten, lam))
    found = MODEL_GRID.two_theta[np.argmax(out)]
    assert float(d_spacing(found, 1.5406)) == pytest.approx(2.0, abs=2e-3)
    # 2θ = 40° at 0.7 Å is Q = 6.13 Å⁻¹, beyond the grid's 6.10 Å⁻¹; 2° at 0.7 Å is Q = 0.31 Å⁻¹
    assert mask[-1] and not (out[~mask] != 0).any()
    assert not mask[: np.searchsorted(MODEL_GRID.q, q_from_two_theta(2.0, lam))].any()


def test_resample_masks_the_unmeasured_part():
    tth = np.arange(20.0, 60.0, 0.02)
    out, mask = resample_to_q_grid(Pattern(tth, np.ones_like(tth), 1.5406))
    grid_tth = MODEL_GRID.two_theta
    assert mask[(grid_tth > 20.01) & (grid_tth < 59.97)].all()
    assert not mask[(grid_tth < 19.99) | (grid_tth > 60.0)].any()
    assert (out[~mask] == 0).all()


def test_resample_rejects_no_overlap():
    tth = np.linspace(100, 150, 500)
    with pytest.raises(ValueError, match=r"covers 0\.0% of the model.s Q grid"):
        resample_to_q_grid(Pattern(tth, np.ones_like(tth), 1.5406))
    with pytest.raises(ValueError, match="min_coverage"):
        resample_to_q_grid(Pattern(TTH, np.ones_like(TTH), 1.5406), min_coverage=0)


def test_custom_grid():
    g = QGrid(two_theta_min_deg=10, two_theta_max_deg=20, step_deg=0.1)
    assert g.n_points == 101


def test_rruff_dev_pattern_loads(rruff_dev):
    p = Pattern(rruff_dev["two_theta"], rruff_dev["intensity"][0], 1.5406)
    out, mask = resample_to_q_grid(p)
    assert mask.sum() >= 8499 and out.max() > 0
