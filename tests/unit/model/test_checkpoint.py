"""Checkpoint round trip and the errors for missing, corrupt or mismatched checkpoints."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ratagent.model import checkpoint
from ratagent.model.calibration import Calibration
from ratagent.model.checkpoint import load_checkpoint, model_id_of, save


@pytest.fixture
def saved(tmp_path, tiny_model):
    model = tiny_model(seed=2)
    with torch.no_grad():
        model.alpha_logit.fill_(-0.4)
    cal = Calibration(temperature=4.0, prior_weight=0.6, log_prior=np.linspace(-1, 1, 99))
    path = tmp_path / "ckpt"
    model_id = save(model, cal, path, training={"steps": 10, "data": "unit test"})
    return model, cal, path, model_id


def test_round_trip_gives_identical_outputs(saved):
    model, cal, path, model_id = saved
    ckpt = load_checkpoint(path)
    cfg = json.loads((path / "config.json").read_text())
    weights = path / "model.safetensors"
    assert ckpt.model_id == model_id == model_id_of(weights, cfg["vit"], cfg["calibration"])
    assert len(model_id) == 16
    assert ckpt.config == model.config
    assert ckpt.training == {"steps": 10, "data": "unit test"}
    assert ckpt.calibration.temperature == 4.0 and ckpt.calibration.prior_weight == 0.6
    np.testing.assert_allclose(ckpt.calibration.log_prior, cal.log_prior)
    x = torch.rand(2, model.config.n_points, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ckpt.model(x).log_p, model(x).log_p)
    assert not ckpt.model.training
    card = (path / "MODEL_CARD.md").read_text()
    assert model_id in card and "temperature T: 4" in card


def test_a_peak_token_network_round_trips(tmp_path, tiny_model):
    model = tiny_model(seed=3, peak_tokens=8, peak_frequencies=6)
    cal = Calibration(temperature=2.0, prior_weight=0.0, log_prior=None)
    model_id = save(model, cal, tmp_path / "ckpt", training={})
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.model_id == model_id
    assert (ckpt.config.peak_tokens, ckpt.config.peak_frequencies) == (8, 6)
    x = torch.rand(2, model.config.n_points, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ckpt.model(x).log_p, model(x).log_p)


def test_saving_the_same_weights_gives_the_same_id(saved, tmp_path):
    model, cal, _, model_id = saved
    assert save(model, cal, tmp_path / "again") == model_id


def test_save_refuses_to_overwrite(saved):
    model, cal, path, _ = saved
    with pytest.raises(FileExistsError):
        save(model, cal, path)
    save(model, cal, path, overwrite=True, card="# custom card\n")
    assert (path / "MODEL_CARD.md").read_text() == "# custom card\n"


def test_no_shipped_checkpoint_is_a_clear_file_not_found(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no checkpoint is shipped yet"):
        load_checkpoint()
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path)


def test_truncated_weights_name_the_file(saved):
    path = saved[2]
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        load_checkpoint(path)


def test_garbage_weights_name_the_file(saved):
    path = saved[2]
    (path / "model.safetensors").write_bytes(b"\x00not a safetensors file at all" * 10)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        load_checkpoint(path)


def test_changed_weights_do_not_match_the_model_id(saved):
    path = saved[2]
    weights = path / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF  # one byte of tensor data
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="changed or corrupted"):
        load_checkpoint(path)


def _rewrite_weights(path, state):
    save_file(state, str(path / "model.safetensors"))
    cfg = json.loads((path / "config.json").read_text())
    cfg["weights_sha256"] = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    cfg["model_id"] = model_id_of(path / "model.safetensors", cfg["vit"], cfg["calibration"])
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "edit",
    [
        lambda cfg: cfg["vit"]["grid"].update(wavelength_angstrom=0.7093),
        lambda cfg: cfg["vit"].update(intensity_transform="log"),
        lambda cfg: cfg["vit"].update(background_quantile=0.3),
        lambda cfg: cfg["calibration"].update(temperature=1.0),
    ],
    ids=["grid wavelength", "intensity transform", "background quantile", "temperature"],
)
def test_edited_configuration_does_not_keep_the_model_id(saved, edit):
    """Each of these edits changes the answers: it must not load under the saved id."""
    path = saved[2]
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json: the network configuration or calibration differs"):
        load_checkpoint(path)


def test_the_model_id_covers_weights_configuration_and_calibration(saved, tmp_path):
    model, cal, _, model_id = saved
    other = Calibration(temperature=2.0, prior_weight=0.6, log_prior=cal.log_prior)
    assert save(model, other, tmp_path / "recalibrated") != model_id


def test_format_1_checkpoint_loads_with_the_id_of_weights_and_configuration(saved):
    """Format 1 stated the weights' hash as the id; it loads, reporting the full id."""
    path, model_id = saved[2], saved[3]
    cfg = json.loads((path / "config.json").read_text())
    sha = cfg.pop("weights_sha256")
    cfg.update(format_version=1, model_id=sha[:16])
    (path / "config.json").write_text(json.dumps(cfg))
    assert load_checkpoint(path).model_id == model_id


def test_missing_tensor_is_named(saved):
    path = saved[2]
    state = load_file(str(path / "model.safetensors"))
    del state["blocks.1.mlp.fc.weight"]
    _rewrite_weights(path, state)
    with pytest.raises(ValueError, match=r"missing \['blocks\.1\.mlp\.fc\.weight'\]"):
        load_checkpoint(path)


def test_config_weights_shape_mismatch_is_named(saved):
    path = saved[2]
    cfg = json.loads((path / "config.json").read_text())
    cfg["vit"]["mlp_ratio"] = 2.0
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"shapes do not match.*mlp\.fc\.weight"):
        load_checkpoint(path)


def test_depth_mismatch_reports_unexpected_tensors(saved):
    path = saved[2]
    cfg = json.loads((path / "config.json").read_text())
    cfg["vit"]["depth"] = 1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unexpected \['blocks\.1\."):
        load_checkpoint(path)


def test_non_finite_weights_are_rejected(saved):
    path = saved[2]
    state = load_file(str(path / "model.safetensors"))
    state["aux_head.bias"][3] = float("nan")
    _rewrite_weights(path, state)
    with pytest.raises(ValueError, match=r"non-finite values in \['aux_head\.bias'\]"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda cfg: "{not json", "not valid JSON"),
        (lambda cfg: json.dumps({**cfg, "format": "other"}), "not a ratagent ViT config"),
        (lambda cfg: json.dumps({**cfg, "format_version": 99}), "format_version 99"),
        (lambda cfg: json.dumps({**cfg, "vit": {**cfg["vit"], "heads": 5}}), "invalid configuration"),
        (
            lambda cfg: json.dumps({**cfg, "calibration": {**cfg["calibration"], "temperature": -1}}),
            "invalid configuration",
        ),
    ],
)
def test_bad_config_json_names_the_file(saved, edit, match):
    path = saved[2]
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(edit(cfg))
    with pytest.raises(ValueError, match=rf"config\.json: .*{match}|config\.json.*{match}"):
        load_checkpoint(path)
