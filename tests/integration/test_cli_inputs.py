"""``ratagent classify`` on awkward input: every bad file named, the others still answered."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ratagent.cli import main
from ratagent.model import Calibration, ViT, ViTConfig, save

TTH = np.linspace(10.0, 80.0, 3501)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    save(ViT(ViTConfig(width=16, depth=1, heads=2, pe_hidden=8), generator=torch.Generator().manual_seed(0)),
         Calibration(), path, overwrite=True)
    return str(path)


def _write(path, *columns, header="wavelength: 1.5406"):
    np.savetxt(path, np.c_[columns], header=header)
    return str(path)


def _peaks():
    rng = np.random.default_rng(0)
    return rng.poisson(50 + 2000 * np.exp(-0.5 * ((TTH - 30) / 0.06) ** 2)).astype(float)


def test_one_bad_file_among_many_is_named_and_the_others_answered(tmp_path, checkpoint, capsys):
    good = _write(tmp_path / "good.xy", TTH, _peaks())
    bad = _write(tmp_path / "bad.xy", TTH, np.where(TTH > 50, np.nan, _peaks()))
    empty = _write(tmp_path / "empty.xy", TTH, np.zeros(TTH.size))
    rc = main(["classify", good, bad, empty, "--checkpoint", checkpoint, "--json"])
    out, err = capsys.readouterr()
    assert rc == 2
    answers = {r["source"]: r for r in json.loads(out)}
    assert len(answers[good]["top"]) == 5
    assert answers[empty]["top"] == [] and "constant" in answers[empty]["no_signal"]
    assert bad not in answers
    assert f"error: {bad}: " in err and "non-finite" in err


def test_a_file_without_signal_is_not_ranked_in_the_table(tmp_path, checkpoint, capsys):
    background = np.random.default_rng(1).poisson(30.0, TTH.size).astype(float)
    path = _write(tmp_path / "background.xy", TTH, background)
    assert main(["classify", path, "--checkpoint", checkpoint]) == 0
    out = capsys.readouterr().out
    assert "not classified: no diffraction signal: no peak above the noise" in out
    assert "rank" not in out


def test_columns_option(tmp_path, checkpoint, capsys):
    path = _write(tmp_path / "three.dat", TTH, np.zeros(TTH.size), _peaks())
    assert main(["classify", path, "--checkpoint", checkpoint]) == 2
    assert "which hold 2θ, I and σ is not guessed" in capsys.readouterr().err
    assert main(["classify", path, "--checkpoint", checkpoint, "--columns", "0,2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["top"]) == 5


def test_refine_answers_the_good_files_too(tmp_path, checkpoint, capsys):
    good = _write(tmp_path / "good.xy", TTH, _peaks())
    missing = str(tmp_path / "missing.xy")
    rc = main(["classify", missing, good, "--checkpoint", checkpoint, "--refine", "--json"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert [r["source"] for r in json.loads(out)] == [good]
    assert f"{missing}: no such file" in err
