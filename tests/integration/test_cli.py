"""The ``ratagent`` command line, run as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ratagent.instrument import Instrument
from ratagent.model import Calibration, ViT, ViTConfig, save
from ratagent.simulation import crystal_from_sites, reflection_list, simulate_pattern


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "ratagent", *args], capture_output=True, text=True, check=False
    )


def test_eg_by_space_group_json():
    out = _run("eg", "--sg", "14", "--json")
    assert out.returncode == 0, out.stderr
    (info,) = json.loads(out.stdout)
    assert info["eg"] == 4 and info["symbol"] == "P 21/b 1 1" and info["space_groups"] == [14]
    assert {2, 3} <= set(info["dag_neighbours"])


def test_bad_eg_is_a_clear_error():
    out = _run("eg", "100")
    assert out.returncode == 2
    assert "got 100" in out.stderr


def _tiny_checkpoint(path):
    """A real (untrained, random-weight) checkpoint written through the public API."""
    config = ViTConfig(width=16, depth=1, heads=2, pe_hidden=8)
    save(ViT(config, generator=torch.Generator().manual_seed(0)), Calibration(), path)
    return path


@pytest.mark.slow
def test_classify_a_dev_pattern_written_as_xy(tmp_path, rruff_dev):
    xy = tmp_path / "dev0.xy"
    np.savetxt(xy, np.c_[rruff_dev["two_theta"], rruff_dev["intensity"][0]])
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    out = _run(
        "classify",
        str(xy),
        "--wavelength",
        "1.5406",
        "--checkpoint",
        str(ckpt),
        "--top",
        "3",
        "--json",
        "--plot",
        str(tmp_path / "p.png"),
    )
    assert out.returncode == 0, out.stderr
    (summary,) = json.loads(out.stdout)
    assert len(summary["top"]) == 3
    assert sum(r["probability"] for r in summary["top"]) <= 1.0
    assert summary["wavelength_angstrom"] == 1.5406
    assert summary["radiation"] == "mono 1.5406 Å (none named: one line)"
    assert (tmp_path / "p.png").stat().st_size > 1000
    # no wavelength anywhere: a clear error, not a Cu Kα default
    out = _run("classify", str(xy), "--checkpoint", str(ckpt))
    assert out.returncode == 2 and "states no wavelength" in out.stderr
    # a header that names the anode: its Kα1/Kα2, and the output says so
    headed = tmp_path / "dev0_cu.xy"
    np.savetxt(headed, np.c_[rruff_dev["two_theta"], rruff_dev["intensity"][0]], header="radiation: Cu")
    out = _run("classify", str(headed), "--checkpoint", str(ckpt))
    assert out.returncode == 0, out.stderr
    assert "λ = 1.5406 Å, radiation Cu Kα1/Kα2 (file header)" in out.stdout


def test_classify_with_a_corrupt_checkpoint(tmp_path, rruff_dev):
    xy = tmp_path / "dev0.xy"
    np.savetxt(xy, np.c_[rruff_dev["two_theta"], rruff_dev["intensity"][0]])
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    out = _run("classify", str(xy), "--wavelength", "1.5406", "--checkpoint", str(ckpt))
    assert out.returncode == 2
    assert "model.safetensors" in out.stderr


@pytest.mark.slow
def test_classify_refine_indexes_and_ranks(tmp_path):
    """`--refine` on a simulated halite file: indexed as cubic F, EG 94 (Fm-3m) leads."""
    crystal = crystal_from_sites(
        225, (5.6402, 5.6402, 5.6402, 90, 90, 90), [("Na", (0, 0, 0)), ("Cl", (0.5, 0.5, 0.5))], b_iso=1.0
    )
    p = simulate_pattern(
        reflection_list(crystal, d_min=1.0),
        Instrument.synchrotron(1.5406, two_theta_min_deg=10, two_theta_max_deg=80),
        np.random.default_rng(0),
        counts=1e4,
        background=(0.05,),
    )
    xy = tmp_path / "halite.xy"
    np.savetxt(xy, np.c_[p.two_theta, p.intensity], header="wavelength: 1.5406")
    out = _run(
        "classify", str(xy), "--refine", "--json", "--checkpoint", str(_tiny_checkpoint(tmp_path / "c"))
    )
    assert out.returncode == 0, out.stderr
    (r,) = json.loads(out.stdout)
    assert r["refined"] and r["candidates"][0]["eg"] == 94, r
    assert r["cell"][0] == pytest.approx(5.6402, rel=1e-3)


@pytest.mark.slow
def test_classify_takes_the_wavelength_from_the_radiation(tmp_path, rruff_dev):
    xy = tmp_path / "dev0.xy"
    np.savetxt(xy, np.c_[rruff_dev["two_theta"], rruff_dev["intensity"][0]])
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    out = _run("classify", str(xy), "--radiation", "Cu", "--checkpoint", str(ckpt), "--json")
    assert out.returncode == 0, out.stderr
    (summary,) = json.loads(out.stdout)
    assert summary["wavelength_angstrom"] == 1.5406  # Cu Kα1
    out = _run("classify", str(xy), "--radiation", "W", "--checkpoint", str(ckpt))
    assert out.returncode == 2 and "unknown radiation 'W'" in out.stderr
    out = _run("classify", str(xy), "--radiation", "Mo", "--wavelength", "1.5406", "--checkpoint", str(ckpt))
    assert out.returncode == 2 and "is not Mo Kα1" in out.stderr


@pytest.mark.slow
def test_classify_refine_reports_the_verdict_the_live_loop_stores(tmp_path):
    """Halite (Walker et al. 2004) rendered with Cu Kα1/Kα2: `--radiation Cu --refine --json`
    gives the verdict, candidates, competing cells and reasons, and names the radiation."""
    inst = Instrument(two_theta_min_deg=10, two_theta_max_deg=80)
    crystal = crystal_from_sites(225, (5.6402,) * 3 + (90,) * 3, [("Na", (0, 0, 0)), ("Cl", (0.5, 0.5, 0.5))],
                                 b_iso=1.0)
    p = simulate_pattern(reflection_list(crystal, d_min=1.0), inst, np.random.default_rng(0), counts=1e4,
                         background=(0.05,))
    xy = tmp_path / "halite.xy"
    np.savetxt(xy, np.c_[p.two_theta, p.intensity])
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    out = _run("classify", str(xy), "--radiation", "Cu", "--refine", "--json", "--checkpoint", str(ckpt))
    assert out.returncode == 0, out.stderr
    (r,) = json.loads(out.stdout)
    assert r["radiation"] == "Cu Kα1/Kα2 (given)"
    assert r["refined"] and r["candidates"][0]["eg"] in r["indistinguishable"]
    assert r["candidates"][0]["setting"].startswith("F ")  # the setting fitted, in the cell's axes
    assert r["cell"][0] == pytest.approx(5.6402, rel=2e-3)
    assert r["cell_fits"] and r["reasons"][0].startswith("no cell given; indexed: cubic F")
    plot = tmp_path / "fit.png"
    text = _run("classify", str(xy), "--radiation", "Cu", "--refine", "--checkpoint", str(ckpt),
                "--plot", str(plot))
    assert f": {r['verdict']} (" in text.stdout and "radiation Cu Kα1/Kα2 (given)" in text.stdout
    assert f"plot: {plot}" in text.stdout and plot.stat().st_size > 1000  # pattern, best fit, difference


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plot", "fit.txt"), "--plot fit.txt: matplotlib writes no 'txt' files"),
        (("--plot", "no_such_folder/fit.png"), "--plot no_such_folder/fit.png: no folder no_such_folder"),
        (("--cell", "4.99", "4.99", "17.06", "1.5708", "1.5708", "2.0944"), "the angles look like radians"),
        (("--cell", "0", "4.99", "17.06", "90", "90", "120"), "cell lengths must be positive"),
    ],
)
def test_classify_checks_plot_and_cell_before_any_work(tmp_path, args, message):
    """A --plot the run could not write, or a --cell no crystal has, is named before the
    pattern is read and the model loaded (the file here does not even exist)."""
    out = _run("classify", str(tmp_path / "missing.xy"), "--wavelength", "1.5406", *args)
    assert out.returncode == 2 and message in out.stderr and "missing.xy" not in out.stderr
