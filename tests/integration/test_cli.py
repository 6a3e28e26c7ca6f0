"""The ``ratagent`` command line, run as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import torch

from ratagent.model import Calibration, ViT, ViTConfig, save


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
    assert (tmp_path / "p.png").stat().st_size > 1000
    # no wavelength anywhere: a clear error, not a Cu Kα default
    out = _run("classify", str(xy), "--checkpoint", str(ckpt))
    assert out.returncode == 2 and "states no wavelength" in out.stderr


def test_classify_with_a_corrupt_checkpoint(tmp_path, rruff_dev):
    xy = tmp_path / "dev0.xy"
    np.savetxt(xy, np.c_[rruff_dev["two_theta"], rruff_dev["intensity"][0]])
    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    out = _run("classify", str(xy), "--wavelength", "1.5406", "--checkpoint", str(ckpt))
    assert out.returncode == 2
    assert "model.safetensors" in out.stderr
