"""The model card of a trained checkpoint, written from what the training run recorded.

``python -m training evaluate --card`` appends the measured evaluation table; nothing in
the card is typed by hand.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render_card"]

_AUG_KEYS = (
    "log10_counts",
    "po_probability",
    "po_ratio",
    "impurity_probability",
    "impurity_fraction",
    "zero_shift_deg",
    "background",
    "max_strain",
    "processed_probability",
)
_OPTIONAL_AUG_KEYS = ("kbeta",)  # a column only where a phase draws it


def _fmt(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "–".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _bank_draw(summary: dict[str, Any]) -> str:
    """How the bank drew its structures: space-group balance and, where not the legacy pool,
    element statistics (runs older than ``bank`` in the summary drew EG-balanced from the pool)."""
    bank = summary.get("bank") or {}
    if bank.get("balance") == "sg":
        groups = "uniform over the 230 space groups"
    else:
        groups = "EG-balanced, all 230 space groups"
    structures = bank.get("structures", "pool")
    if structures == "pool":
        return groups
    return f"{groups}, elements as in the {structures.upper()} (`--structures {structures}`)"


def render_card(model_id: str, training: dict[str, Any], calibration: dict[str, Any] | None = None) -> str:
    """Markdown model card from a checkpoint's ``training`` record (see :func:`training.fit.fit`)."""
    fit = training.get("fit", {})
    summary = training.get("summary", {})
    model = fit.get("model", {})
    augs = [p.get("augmentation", {}) for p in fit.get("phases", [])]
    keys = _AUG_KEYS + tuple(k for k in _OPTIONAL_AUG_KEYS if any(max(a.get(k) or [0]) > 0 for a in augs))
    lines = [
        f"# ratagent ViT checkpoint `{model_id}`",
        "",
        "Physics-informed ViT (ratagent.model) for extinction-group classification of powder patterns.",
        "",
        "## Network",
        "",
        f"- width {model.get('width')}, depth {model.get('depth')}, heads {model.get('heads')}, "
        f"patch {model.get('patch_size')} points, stem {model.get('stem', 'patch')}, "
        f"pool {model.get('pool')}, physics PE {model.get('physics_pe')}, "
        f"intensity transform {model.get('intensity_transform')}"
        + (f", {model['peak_tokens']} peak tokens" if model.get("peak_tokens") else ""),
        f"- loss weights (bits, aux, fused, crystal system): {_fmt(list(fit.get('loss_weights', [])))}",
        "",
        "## Data and curriculum",
        "",
        f"- structure bank `{fit.get('bank_dir')}`: {summary.get('n_records', '?')} random structures "
        f"({_bank_draw(summary)}) + {summary.get('n_impurities', '?')} "
        "held out as impurity phases; patterns rendered on the fly (ratagent.simulation), "
        "Cu Kα1/Kα2, 2θ 5–90°, 0.01°",
        f"- batch {fit.get('batch_size')}, seed {fit.get('seed')}, "
        f"AdamW (weight decay {fit.get('weight_decay')})",
        "",
        "| phase | steps | peak lr | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for p in fit.get("phases", []):
        aug = p.get("augmentation", {})
        cells = " | ".join(_fmt(aug.get(k, "")) for k in keys)
        lines.append(f"| {p['name']} | {p['steps']} | {p['lr']:g} | {cells} |")
    total = summary.get("total_steps", sum(p.get("steps", 0) for p in fit.get("phases", [])))
    lines += [
        "",
        "## Run",
        "",
        f"- steps reached: {summary.get('step', '?')} of {total}"
        + (" (stopped by time and exported)" if summary.get("step", total) < total else ""),
        f"- device: {summary.get('device', 'cpu')}, world size {summary.get('world_size', 1)}",
    ]
    if "wall_s" in summary:
        lines.append(f"- wall time: {summary['wall_s'] / 60:.1f} min")
    step, batch = summary.get("step"), fit.get("batch_size")
    if isinstance(step, int) and isinstance(batch, int):
        seen = step * batch * int(summary.get("world_size", 1))
        rate = f", {seen / summary['wall_s']:.0f} samples/s" if summary.get("wall_s") else ""
        lines.append(f"- patterns seen: {seen:,}".replace(",", " ") + rate)
    if training.get("notes"):
        lines += ["", "## Notes", "", str(training["notes"])]
    tuned = training.get("finetune")
    if tuned:  # training.finetune keeps the parent's record above and adds its own
        lines += [
            "",
            "## Fine-tuning",
            "",
            f"- from model `{tuned.get('from_model')}` (the run above) on {tuned.get('n_patterns')} "
            f"measured patterns, {tuned.get('synthetic_per_batch', 0)} simulated ones in each batch",
            f"- {tuned.get('steps')} steps × {tuned.get('batch_size')}, lr {_fmt(tuned.get('lr'))}, "
            f"loss {_fmt(tuned.get('loss_first'))} → {_fmt(tuned.get('loss_last'))}",
        ]
    if calibration:
        lines += [
            "",
            "## Calibration",
            "",
            f"- temperature T = {calibration['temperature']:.4g}, "
            f"prior weight λ = {calibration['prior_weight']:.4g} on the paper's EG prior",
            f"- fitted on {calibration.get('data', 'held-out data')} (n = {calibration.get('n')})",
        ]
    lines.append("")
    return "\n".join(lines)
