"""RenderPool: the renderer on worker processes gives what ``render`` gives, in order."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from ratagent.instrument import Instrument
from ratagent.simulation import PatternParams, RenderPool, collate, random_record, render
from ratagent.simulation.pool import split_rows


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(23)
    return [random_record(rng, d_min=1.2) for _ in range(24)]


@pytest.fixture(scope="module")
def pool():
    with RenderPool(2) as p:
        yield p


def _textured(records, ratio: float) -> tuple:
    """A batch with preferred orientation and its parameters, float64."""
    inst = Instrument()
    batch = collate(records, laue=True, dtype=torch.float64)
    params = PatternParams.from_instrument(inst, len(records), dtype=torch.float64)
    po = torch.full((len(records),), ratio, dtype=torch.float64)
    return batch, PatternParams(**{**params.__dict__, "po_ratio": po})


def test_map_gives_every_batch_as_render_does_in_input_order(pool, records):
    inst = Instrument()
    batches = [collate(records[i : i + n]) for i, n in ((0, 5), (5, 3), (8, 7), (15, 1), (16, 8), (0, 2))]
    batches.append(_textured(records[:4], 0.7))
    expected = [render(b, inst) if not isinstance(b, tuple) else render(b[0], inst, b[1]) for b in batches]
    got = list(pool.map(batches, inst))
    assert len(got) == len(expected)
    for y, e in zip(got, expected, strict=True):
        assert y.dtype == e.dtype and torch.equal(y, e)  # whole batches: bit for bit


def test_map_grows_its_buffer_for_a_larger_batch(pool, records):
    inst = Instrument()
    batches = [collate(records[:2]), collate(records[2:4]), collate(records), collate(records[:3])]
    for y, b in zip(pool.map(batches, inst), batches, strict=True):
        assert torch.equal(y, render(b, inst))


def test_map_grows_its_input_buffer_for_more_reflections_in_as_many_rows(pool, records):
    inst = Instrument()
    by_size = sorted(records, key=lambda r: len(r.hkl))
    batches = [collate(by_size[:3]), collate(by_size[-3:]), collate(by_size[3:6])]
    assert batches[1].hkl.shape[1] > batches[0].hkl.shape[1]  # the same output, larger input
    for y, b in zip(pool.map(batches, inst), batches, strict=True):
        assert torch.equal(y, render(b, inst))


def test_render_splits_a_batch_and_agrees_to_rounding(pool, records):
    inst = Instrument()
    batch = collate(records)
    y = pool.render(batch, inst)
    ref = render(batch, inst)
    assert y.shape == ref.shape == (len(records), len(inst.two_theta))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6 * float(ref.max()))


def test_a_consumer_that_stops_early_leaves_the_pool_usable(pool, records):
    inst = Instrument()
    batches = [collate(records[i : i + 4]) for i in range(0, 24, 4)]
    stream = pool.map(batches, inst)
    first = next(stream)
    with pytest.raises(RuntimeError, match="already rendering"):
        pool.render(batches[1], inst)
    stream.close()
    assert torch.equal(first, render(batches[0], inst))
    assert torch.equal(next(pool.map(batches[2:3], inst)), render(batches[2], inst))


def test_a_worker_failure_is_raised_with_its_traceback(pool, records):
    inst = Instrument()
    batch = collate(records[:3])
    wrong = PatternParams.from_instrument(inst, 2)  # parameters for 2 patterns, batch of 3
    with pytest.raises(RuntimeError, match=r"render worker 1 failed:(.|\n)*ValueError"):
        list(pool.map([(batch, wrong)], inst))
    assert torch.equal(pool.render(batch, inst), pool.render(batch, inst))  # still serves


def test_one_process_renders_here():
    with RenderPool(1) as alone:
        assert alone._conns == []
        rng = np.random.default_rng(5)
        batch = collate([random_record(rng, d_min=1.5) for _ in range(3)])
        assert torch.equal(alone.render(batch, Instrument()), render(batch, Instrument()))
    with pytest.raises(ValueError, match="processes must be at least 1, got 0"):
        RenderPool(0)


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_split_rows_covers_the_rows_in_balanced_contiguous_ranges(parts):
    weights = np.random.default_rng(parts).integers(0, 400, size=50)
    ranges = split_rows(weights, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == 50 and len(ranges) <= parts
    assert all(a < b for a, b in ranges) and all(b == c for (_, b), (c, _) in itertools.pairwise(ranges))
    share = [weights[a:b].sum() for a, b in ranges]
    assert max(share) - min(share) <= 2 * weights.max() + 1  # one row either side of each cut


def test_split_rows_edge_cases():
    assert split_rows(np.array([]), 2) == []
    assert split_rows(np.array([5.0]), 4) == [(0, 1)]
    assert split_rows(np.zeros(4), 2) == [(0, 2), (2, 4)]
    with pytest.raises(ValueError, match="parts must be at least 1, got 0"):
        split_rows(np.ones(3), 0)


def test_render_of_a_batch_whose_work_is_one_row(pool, records):
    """All reflections in the last row: the split leaves one part, rendered here."""
    inst = Instrument()
    batch = collate([records[5], records[5]])
    batch = replace(batch, mask=batch.mask & torch.tensor([[False], [True]]))
    assert split_rows(batch.mask.sum(1).numpy(), 2) == [(0, 2)]
    assert torch.equal(pool.render(batch, inst), render(batch, inst))


def test_a_failed_split_render_leaves_no_reply_behind(pool, records):
    """Every part fails (texture asked of a batch without its Laue rotations): the error is
    raised, and every worker's reply is taken, so the next batch gets its own results."""
    inst = Instrument()
    batch = collate(records[:6])
    bad = replace(PatternParams.from_instrument(inst, 6), po_ratio=torch.full((6,), 0.7))
    with pytest.raises(ValueError, match=r"collate\(\.\.\., laue=True\)"):
        pool.render(batch, inst, bad)
    other = collate(records[6:12])
    torch.testing.assert_close(pool.render(other, inst), render(other, inst), rtol=1e-5,
                               atol=1e-6 * float(render(other, inst).max()))
