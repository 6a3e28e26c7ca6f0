"""Checkpoints: a directory with the weights, the configuration and a model card.

Layout of a checkpoint directory::

    model.safetensors   all parameters and buffers of the ViT (incl. its label code matrix)
    config.json         format, model id, ViTConfig (with the Q grid), calibration, training summary
    MODEL_CARD.md       how it was trained and what it measured, for people

The **model id** is the first 16 hex digits of the SHA-256 of everything that changes an
answer: the bytes of ``model.safetensors`` and the network configuration (with its Q
grid and input transform) and calibration of ``config.json``. :func:`save` writes it and
the weights' own SHA-256 into ``config.json``; :func:`load_checkpoint` checks both, so a
changed or truncated weights file and a hand-edited configuration are caught, and every
posterior names the model that made it. (Format 1 checkpoints hashed the weights alone;
they still load, and report the id of weights and configuration together.)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratagent.model.calibration import Calibration
from ratagent.model.vit import ViT, ViTConfig, config_summary

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_CHECKPOINT",
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_CARD_FILE",
    "WEIGHTS_FILE",
    "Checkpoint",
    "load_checkpoint",
    "model_id_of",
    "save",
]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
FORMAT = "ratagent-vit"
FORMAT_VERSION = 2
#: Format versions this code reads.
_READABLE_VERSIONS = (1, 2)
#: Where the shipped checkpoint lives inside the package.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default"
_ID_HEX_DIGITS = 16


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint: the network (in eval mode, on CPU) and what came with it."""

    model: ViT
    calibration: Calibration
    model_id: str
    path: Path
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> ViTConfig:
        """The network's configuration."""
        return self.model.config


def model_id_of(weights: bytes | str | Path, vit: Mapping[str, Any], calibration: Mapping[str, Any]) -> str:
    """The model id: first 16 hex digits of the SHA-256 of the weights (bytes or a file),
    the network configuration and the calibration (as their ``to_dict()``)."""
    raw = weights if isinstance(weights, bytes) else Path(weights).read_bytes()
    digest = hashlib.sha256(raw)
    digest.update(b"\0")
    digest.update(json.dumps({"vit": vit, "calibration": calibration}, sort_keys=True,
                             separators=(",", ":")).encode())
    return digest.hexdigest()[:_ID_HEX_DIGITS]


def _default_card(model: ViT, calibration: Calibration, model_id: str, training: dict) -> str:
    lines = [
        f"# ratagent ViT checkpoint `{model_id}`",
        "",
        "Physics-informed ViT for powder-diffraction extinction-group classification (ratagent.model).",
        "",
        "## Architecture",
        "",
        *(f"- {k}: {v}" for k, v in config_summary(model.config).items()),
        f"- parameters: {model.num_parameters()}",
        f"- grid: {model.config.grid}",
        f"- fusion α: {float(model.alpha.detach()):.4f}",
        "",
        "## Calibration",
        "",
        f"- temperature T: {calibration.temperature:.4g}",
        f"- prior weight λ: {calibration.prior_weight:.4g}",
        f"- log prior: {'given' if calibration.log_prior is not None else 'none'}",
        "",
        "## Training",
        "",
        *(f"- {k}: {v}" for k, v in training.items()),
        *(["- (no training summary given)"] if not training else []),
        "",
    ]
    return "\n".join(lines)


def save(
    model: ViT,
    calibration: Calibration,
    path: str | Path,
    *,
    card: str | Callable[[str], str] | None = None,
    training: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write a checkpoint directory and return its model id.

    Parameters
    ----------
    model : ViT
    calibration : Calibration
    path : str or Path
        Directory to create (parents too).
    card : str or callable, optional
        Markdown model card, or a function of the model id that returns it (the id is
        known only once the weights are written); default: one generated from the
        config, calibration and ``training``.
    training : dict, optional
        JSON-serialisable training summary (data, steps, metrics...).
    overwrite : bool
        Replace files of an existing checkpoint at ``path``.

    Raises
    ------
    FileExistsError
        ``path`` already holds a checkpoint and ``overwrite`` is False.
    """
    from safetensors.torch import save_file

    path = Path(path)
    training = dict(training or {})
    if (path / WEIGHTS_FILE).exists() and not overwrite:
        raise FileExistsError(f"{path} already holds a checkpoint; pass overwrite=True")
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": FORMAT})
    raw = (path / WEIGHTS_FILE).read_bytes()
    vit, cal = model.config.to_dict(), calibration.to_dict()
    model_id = model_id_of(raw, vit, cal)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "weights_sha256": hashlib.sha256(raw).hexdigest(),
        "vit": vit,
        "calibration": cal,
        "training": training,
    }
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    if card is None:
        text = _default_card(model, calibration, model_id, training)
    else:
        text = card(model_id) if callable(card) else card
    (path / MODEL_CARD_FILE).write_text(text, encoding="utf-8")
    logger.info("saved checkpoint %s to %s", model_id, path)
    return model_id


def _read_config(file: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ValueError(f"{file}: not a ratagent ViT config (expected format={FORMAT!r})")
    if cfg.get("format_version") not in _READABLE_VERSIONS:
        raise ValueError(
            f"{file}: format_version {cfg.get('format_version')!r} is not supported "
            f"(this ratagent reads {', '.join(map(str, _READABLE_VERSIONS))})"
        )
    missing = {"model_id", "vit", "calibration"} - set(cfg)
    if cfg["format_version"] >= 2:
        missing |= {"weights_sha256"} - set(cfg)
    if missing:
        raise ValueError(f"{file}: missing entries {sorted(missing)}")
    return cfg


def load_checkpoint(path: str | Path | None = None) -> Checkpoint:
    """Load a checkpoint directory (default: the shipped one) onto the CPU, in eval mode.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``path`` (or none shipped, when ``path`` is None).
    ValueError
        Unreadable or inconsistent files: invalid JSON, an unknown format, a truncated or
        corrupt safetensors file, weights that do not hash to the stated model id, missing
        or unexpected tensors, or tensor shapes that do not match the configuration. The
        message names the file and the problem.
    """
    from safetensors.torch import load as load_safetensors

    if path is None:
        path = DEFAULT_CHECKPOINT
        if not (path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"no checkpoint is shipped yet (nothing at {path}); train one "
                "(python -m training ...) and pass its directory, or save one there"
            )
    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path}: not a checkpoint directory (no {name})")
    cfg_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    cfg = _read_config(cfg_file)
    try:
        config = ViTConfig.from_dict(cfg["vit"], saved=True)
        calibration = Calibration.from_dict(cfg["calibration"])
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{cfg_file}: invalid configuration ({err})") from None

    raw = weights_file.read_bytes()
    try:
        state = load_safetensors(raw)
    except Exception as err:  # safetensors raises its own error types for bad headers/sizes
        raise ValueError(
            f"{weights_file}: not a readable safetensors file, truncated or corrupt ({err})"
        ) from None
    weights_sha = hashlib.sha256(raw).hexdigest()
    stated_sha = cfg.get("weights_sha256") or cfg["model_id"]  # format 1: the id was the weights' hash
    if not weights_sha.startswith(stated_sha):
        raise ValueError(
            f"{weights_file}: the weights hash to {weights_sha[:_ID_HEX_DIGITS]}, but {cfg_file} states "
            f"{stated_sha[:_ID_HEX_DIGITS]}; the weights were changed or corrupted"
        )
    if "code_matrix" not in state:
        raise ValueError(f"{weights_file}: missing tensor 'code_matrix'")
    try:
        model = ViT(config, code_matrix=state["code_matrix"].numpy())
    except ValueError as err:
        raise ValueError(f"{weights_file}: {err}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{weights_file}: tensors do not match the ViTConfig in {cfg_file}: "
            f"missing {missing}, unexpected {unexpected}"
        )
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(
            f"{weights_file}: tensor shapes do not match the ViTConfig in {cfg_file}: " + "; ".join(wrong)
        )
    model.load_state_dict(state)
    model.eval()
    n_eg = config.n_eg
    if calibration.log_prior is not None and calibration.log_prior.size != n_eg:
        raise ValueError(
            f"{cfg_file}: calibration log_prior has {calibration.log_prior.size} entries, "
            f"the model has {n_eg} EGs"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise ValueError(f"{weights_file}: non-finite values in {bad}")
    model_id = model_id_of(raw, config.to_dict(), calibration.to_dict())
    if cfg["format_version"] >= 2 and model_id != cfg["model_id"]:
        raise ValueError(
            f"{cfg_file}: the network configuration or calibration differs from the one model "
            f"{cfg['model_id']} was saved with (they give id {model_id}); an edited checkpoint "
            "gives other answers under the same id: save it again to give it its own id"
        )
    logger.info("loaded checkpoint %s from %s", model_id, path)
    return Checkpoint(model, calibration, model_id, path, dict(cfg.get("training") or {}))
