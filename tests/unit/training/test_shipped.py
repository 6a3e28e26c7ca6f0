"""The shipped checkpoint loads and reproduces the figures its model card states."""

import re

import numpy as np
import pytest

from ratagent.model.checkpoint import DEFAULT_CHECKPOINT, MODEL_CARD_FILE
from ratagent.model.inference import load
from training.evaluate import evaluate_probs, load_dev_set


@pytest.mark.slow
def test_shipped_checkpoint_reproduces_its_card(dev_set_path):
    card = (DEFAULT_CHECKPOINT / MODEL_CARD_FILE).read_text(encoding="utf-8")
    row = re.search(r"^model shipped\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%", card, re.MULTILINE)
    assert row, "the model card has no measured 'model shipped' row"
    n, top1, top5 = int(row[1]), float(row[2]), float(row[3])
    patterns, eg = load_dev_set(dev_set_path)
    clf = load()
    assert clf.model_id in card
    probs = np.stack([p.probs for p in clf.predict(patterns)])
    r = evaluate_probs(probs, eg)
    assert r["n"] == n
    assert 100 * r["top1"] == pytest.approx(top1, abs=0.05)
    assert 100 * r["top5"] == pytest.approx(top5, abs=0.05)
