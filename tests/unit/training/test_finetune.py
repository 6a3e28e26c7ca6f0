"""Fine-tuning on measured, labelled patterns: sources, the dev-set guard, the loop."""

import numpy as np
import pytest

from ratagent.crystallography import sg_to_eg
from ratagent.model.checkpoint import load_checkpoint
from ratagent.patterns import CU_KA1_ANGSTROM
from ratagent.testing import TINY_GRID, tiny_checkpoint
from training.__main__ import main
from training.finetune import DirectorySource, FinetuneConfig, NpzSource, finetune, open_source

SGS = np.array([14, 62, 225, 194, 2, 167, 12, 227])


def _patterns(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n patterns on the tiny grid, each with peaks at its own positions (learnable)."""
    rng = np.random.default_rng(seed)
    tth = TINY_GRID.two_theta
    inten = np.full((n, tth.size), 10.0)
    for i in range(n):
        for c in rng.uniform(10, 85, size=4):
            inten[i] += 1000 * np.exp(-0.5 * ((tth - c) / 0.15) ** 2)
    return tth, inten


@pytest.fixture
def npz(tmp_path):
    tth, inten = _patterns(len(SGS))
    path = tmp_path / "measured.npz"
    np.savez(path, two_theta=tth, intensity=inten, space_group=SGS, wavelength=CU_KA1_ANGSTROM)
    return path


def test_npz_source_reads_patterns_and_converts_space_groups(npz):
    items = list(NpzSource(npz))
    assert [it.eg for it in items] == [sg_to_eg(int(s)) for s in SGS]
    assert items[0].pattern.wavelength == pytest.approx(CU_KA1_ANGSTROM)
    assert items[3].pattern.meta["source"] == "measured.npz[3]"


def test_npz_source_errors_name_the_problem(tmp_path):
    tth, inten = _patterns(2)
    bad = tmp_path / "bad.npz"
    np.savez(bad, two_theta=tth, intensity=inten, space_group=np.array([14, 231]))
    with pytest.raises(ValueError, match="space group 231"):
        list(NpzSource(bad))
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, two_theta=tth, intensity=inten)
    with pytest.raises(ValueError, match="space_group"):
        list(NpzSource(unlabelled))
    with pytest.raises(FileNotFoundError):
        NpzSource(tmp_path / "missing.npz")


def test_the_dev_set_is_refused_as_a_training_source(dev_set_path):
    with pytest.raises(ValueError, match="validation and calibration only"):
        NpzSource(dev_set_path)


def test_directory_source_reads_labels_csv(tmp_path):
    tth, inten = _patterns(2)
    for i in range(2):
        np.savetxt(tmp_path / f"p{i}.xy", np.column_stack([tth, inten[i]]))
    (tmp_path / "labels.csv").write_text("file,space_group,wavelength\np0.xy,14,1.5406\np1.xy,225,1.5406\n")
    items = list(open_source(str(tmp_path)))
    assert [it.eg for it in items] == [sg_to_eg(14), sg_to_eg(225)]
    (tmp_path / "labels.csv").write_text("file,space_group\np0.xy,\n")
    with pytest.raises(ValueError, match=r"labels\.csv:2"):
        list(DirectorySource(tmp_path))


@pytest.mark.slow
def test_finetune_fits_the_measured_patterns_and_writes_an_uncalibrated_checkpoint(npz, tmp_path):
    start = tiny_checkpoint(tmp_path / "start", stem="conv", pool="flatten")
    before = load_checkpoint(start)
    summary = finetune(start, NpzSource(npz), tmp_path / "tuned",
                       FinetuneConfig(steps=80, batch_size=8, lr=3e-3, warmup_steps=1), progress=False)
    assert summary["loss_last"] < 0.5 * summary["loss_first"]
    tuned = load_checkpoint(tmp_path / "tuned")
    assert tuned.model_id == summary["model_id"] != before.model_id
    assert tuned.calibration.temperature == 1.0 and tuned.calibration.prior_weight == 0.0
    assert tuned.training["finetune"]["from_model"] == before.model_id
    assert tuned.training["finetune"]["n_patterns"] == len(SGS)
    assert "calibration" not in tuned.training  # the old (T, λ) belonged to the old weights


def test_finetune_config_errors_name_the_value():
    with pytest.raises(ValueError, match="no measured pattern"):
        FinetuneConfig(batch_size=2, synthetic_fraction=0.9, bank_dir="banks/x")
    with pytest.raises(ValueError, match="loss_weights"):
        FinetuneConfig(loss_weights=(1.0,))


def test_finetune_command(npz, tmp_path, capsys):
    start = tiny_checkpoint(tmp_path / "start")
    code = main(["finetune", str(npz), "--checkpoint", str(start), "--out", str(tmp_path / "t"),
                 "--steps", "2", "--batch-size", "4"])
    assert code == 0
    assert "uncalibrated" in capsys.readouterr().out
    assert main(["finetune", str(tmp_path / "nothing.txt"), "--out", str(tmp_path / "u")]) == 2
