"""The running statistics of an activation index: one pass over texts, the same texts split into shards and
merged (in any order), and brute force agree; the best-k lists exactly, even with many tied values. The
update's shortcuts (units left alone, fewer candidates, windows cut only for tokens that enter, the
histogram without bucketize) are checked against plain brute force over all tokens."""

from __future__ import annotations

import pytest
import torch

from yfpo_core.analysis.index_state import (
    EDGES,
    HIST_CHUNK,
    N_BINS,
    SAMPLE_WINDOW,
    SAMPLES,
    TOP_K,
    TOP_WINDOW,
    IndexState,
    add_histogram,
    order_key,
)

N_UNITS = 6
SEED = 5


def _texts(lengths: list[int], ties: bool) -> list[torch.Tensor]:
    """Activations ``[pos, units]`` per text; with ``ties`` drawn from a handful of values (zeros included)."""
    g = torch.Generator().manual_seed(0)
    if ties:
        return [torch.randint(-2, 4, (n, N_UNITS), generator=g).float() / 2 for n in lengths]
    return [torch.randn(n, N_UNITS, generator=g) for n in lengths]


def _fold(texts: list[torch.Tensor], which: list[int]) -> IndexState:
    """One pass over the texts ``which`` (global indices), as a build does."""
    offsets = torch.tensor([0] + [len(x) for x in texts]).cumsum(0).tolist()
    state = IndexState(N_UNITS)
    for i in which:
        state.update(texts[i], offsets[i], i % 3 == 0, torch.Generator().manual_seed(SEED * 1_000_003 + i))
    return state


def _assert_same(a: IndexState, b: IndexState) -> None:
    ta, tb = a.tensors(), b.tensors()
    for name in IndexState.NAMES:
        if ta[name].dtype == torch.float64:  # sums: only the order of the float64 additions differs
            torch.testing.assert_close(ta[name], tb[name], rtol=1e-12, atol=1e-12, msg=name)
        else:
            torch.testing.assert_close(ta[name], tb[name], rtol=0, atol=0, equal_nan=True, msg=name)


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("lengths", [[5, 9, 3, 12, 7, 4, 11], [40, 25, 37, 50, 3]])
def test_shards_merged_in_any_order_equal_one_pass(lengths, ties):
    texts = _texts(lengths, ties)
    one = _fold(texts, list(range(len(texts))))
    for world in (2, 3):
        shards = [_fold(texts, list(range(rank, len(texts), world))) for rank in range(world)]
        for order in (range(world), reversed(range(world))):
            order = list(order)
            merged = _fold(texts, [])  # an empty state first, as rank 0 starts from its own (maybe empty) share
            for rank in order:
                merged.merge(IndexState.from_tensors({k: v.clone() for k, v in shards[rank].tensors().items()}))
            _assert_same(merged, one)
    # a checkpoint split (texts before and after) is a merge too
    split = _fold(texts, [0, 1])
    split.merge(_fold(texts, list(range(2, len(texts)))))
    _assert_same(split, one)


def test_best_k_lists_are_the_brute_force_best_under_value_then_token():
    """Texts shorter than TOP_K: every token is a candidate, so the lists can be checked against sorting
    all tokens by (value descending, token ascending) and (random key, token)."""
    lengths = [5, 9, 3, 12, 7, 4, 11]
    assert max(lengths) <= min(TOP_K, SAMPLES)
    texts = _texts(lengths, ties=True)
    state = _fold(texts, list(range(len(texts))))
    x = torch.cat(texts)
    keys = torch.cat([torch.rand(t.shape, generator=torch.Generator().manual_seed(SEED * 1_000_003 + i))
                      for i, t in enumerate(texts)])
    tokens = list(range(len(x)))
    for unit in range(N_UNITS):
        best = sorted(tokens, key=lambda t: (-float(x[t, unit]), t))[:TOP_K]
        assert state.top_tokens[:, unit].tolist() == best
        assert state.top_values[:, unit].tolist() == [float(x[t, unit]) for t in best]
        active = [t for t in tokens if x[t, unit] > 0]
        sample = sorted(active, key=lambda t: (float(keys[t, unit]), t))[:SAMPLES]
        kept = state.sample_tokens[:, unit].tolist()
        assert kept == sample + [-1] * (SAMPLES - len(sample))
        assert state.sample_values[: len(sample), unit].tolist() == [float(x[t, unit]) for t in sample]
    assert int(state.active.sum()) == int((x > 0).sum())


def test_windows_and_exact_counts():
    texts = _texts([40, 25, 37], ties=False)
    state = _fold(texts, [0, 1, 2])
    x = torch.cat(texts)
    offsets = [0, 40, 65, 102]
    assert torch.equal(state.max, x.max(0).values) and torch.equal(state.min, x.min(0).values)
    assert state.sum.tolist() == pytest.approx(x.double().sum(0).tolist(), rel=1e-12)
    assert state.math_sum.tolist() == pytest.approx(texts[0].double().sum(0).tolist(), rel=1e-12)  # text 0: math
    hist = state.hist.reshape(N_UNITS, -1)
    for unit in range(N_UNITS):
        assert hist[unit].tolist() == torch.bincount(torch.bucketize(x[:, unit].contiguous(), EDGES),
                                                     minlength=len(EDGES) + 1).tolist()
        for slot, token in enumerate(state.top_tokens[:, unit].tolist()):
            text = max(j for j in range(3) if offsets[j] <= token)
            for j, value in enumerate(state.top_windows[slot, :, unit].float().tolist()):
                where = token - TOP_WINDOW + j
                if offsets[text] <= where < offsets[text + 1]:
                    assert value == pytest.approx(float(x[where, unit]), rel=1e-3, abs=1e-3)
                else:
                    assert value != value  # NaN: never across a text boundary


def test_empty_sample_slots_are_all_alike():
    """A unit active on fewer tokens than SAMPLES leaves slots with token -1, value NaN and an all-NaN
    window, whatever inactive tokens were candidates (so merges compare equal)."""
    texts = [torch.tensor([[1.0, -1.0]] * 3 + [[-1.0, -1.0]] * 20), torch.tensor([[-1.0, -1.0]] * 30)]
    state = IndexState(2)
    for i, x in enumerate(texts):
        state.update(x, 23 * i, False, torch.Generator().manual_seed(i))
    assert sorted(state.sample_tokens[:3, 0].tolist()) == [0, 1, 2]
    assert (state.sample_tokens[3:, 0] == -1).all() and (state.sample_tokens[:, 1] == -1).all()
    assert state.sample_values[3:, 0].isnan().all() and state.sample_windows[3:, :, 0].isnan().all()
    assert state.sample_windows[:, :, 1].isnan().all()
    assert state.sample_windows.shape == (SAMPLES, 2 * SAMPLE_WINDOW + 1, 2)


@pytest.mark.parametrize("largest", [True, False])
def test_order_key_sorts_by_value_then_the_smaller_token(largest):
    values = [float("-inf"), -2.5, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 0.5, 3.0, 3.0, float("inf")]
    tokens = [4, 0, 7, 2, 9, 3, 11, 5, 1, 8, 6, -1]
    key = order_key(torch.tensor(values)[:, None], torch.tensor(tokens)[:, None], largest)[:, 0]
    order = sorted(range(len(values)), key=lambda i: (-values[i] if largest else values[i], tokens[i]))
    assert key.argsort(descending=largest).tolist() == order  # -0.0 and 0.0 are one value: the token decides


def _brute_windows(x: torch.Tensor, offsets: list[int], tokens: torch.Tensor, width: int) -> torch.Tensor:
    """``x [tokens, units]`` around each global token of ``tokens [k, units]`` (-1: empty), NaN outside its
    text or for an empty slot: ``[k, 2 * width + 1, units]`` in float16."""
    bounds = torch.tensor(offsets)
    text = torch.searchsorted(bounds, tokens.clamp(min=0), right=True) - 1  # [k, units]
    at = tokens[:, None, :] + torch.arange(-width, width + 1)[None, :, None]
    inside = (at >= bounds[text][:, None, :]) & (at < bounds[text + 1][:, None, :]) & (tokens[:, None, :] >= 0)
    units = torch.arange(x.shape[1]).expand_as(at)
    values = x[at.clamp(0, len(x) - 1), units]
    return values.masked_fill(~inside, float("nan")).half()


def test_update_equals_brute_force_over_many_long_texts():
    """Texts longer than the lists, many of them (so later texts change few units and the update leaves
    most alone), values tied across texts (the smaller token wins), more units than one histogram step:
    every list, window and count is the one brute force over all tokens gives."""
    n, g = HIST_CHUNK + 52, torch.Generator().manual_seed(1)
    lengths = [70, 45, 5, 90, 60] * 5
    texts = []
    for length in lengths:  # distinct values within a text's unit, repeated across texts
        rank = torch.rand(length, n, generator=g).argsort(0)
        texts.append((rank + torch.randint(0, 40, (1, n), generator=g) - 45).float() / 4)
    offsets = torch.tensor([0] + lengths).cumsum(0).tolist()
    state = IndexState(n)
    for i, x in enumerate(texts):
        state.update(x, offsets[i], False, torch.Generator().manual_seed(SEED * 1_000_003 + i))
    x = torch.cat(texts)
    top = x.sort(dim=0, descending=True, stable=True).indices[:TOP_K]  # ties: the earlier token first
    assert torch.equal(state.top_tokens, top)
    assert torch.equal(state.top_values, x.gather(0, top))
    torch.testing.assert_close(state.top_windows, _brute_windows(x, offsets, top, TOP_WINDOW), rtol=0, atol=0,
                               equal_nan=True)
    keys = torch.cat([torch.rand(t.shape, generator=torch.Generator().manual_seed(SEED * 1_000_003 + i))
                      for i, t in enumerate(texts)]).masked_fill(x <= 0, float("inf"))
    order = keys.sort(dim=0, stable=True).indices[:SAMPLES]
    empty = keys.gather(0, order).isinf()
    sample = order.masked_fill(empty, -1)
    assert torch.equal(state.sample_tokens, sample)
    torch.testing.assert_close(state.sample_values, x.gather(0, order).masked_fill(empty, float("nan")), rtol=0,
                               atol=0, equal_nan=True)
    torch.testing.assert_close(state.sample_windows, _brute_windows(x, offsets, sample, SAMPLE_WINDOW), rtol=0,
                               atol=0, equal_nan=True)
    expected = torch.bincount((torch.bucketize(x, EDGES) + torch.arange(n) * N_BINS).flatten(), minlength=n * N_BINS)
    assert torch.equal(state.hist, expected)
    assert torch.equal(state.active, (x > 0).sum(0))
    shards = [IndexState(n) for _ in range(3)]  # and shards of these texts merge to the same lists
    for i, t in enumerate(texts):
        shards[i % 3].update(t, offsets[i], False, torch.Generator().manual_seed(SEED * 1_000_003 + i))
    for shard in shards[1:]:
        shards[0].merge(shard)
    _assert_same(shards[0], state)


def test_histogram_counts_are_bucketize_counts():
    """Every edge and its float neighbours, zeros of both signs, infinities, NaN, subnormals and random bit
    patterns (all magnitudes) fall in bucketize's bin."""
    g = torch.Generator().manual_seed(2)
    near, up, down = [EDGES], EDGES, EDGES
    for _ in range(3):  # 1, 2 and 3 floats above and below each edge
        up, down = torch.nextafter(up, torch.tensor(float("inf"))), torch.nextafter(down, torch.tensor(float("-inf")))
        near += [up, down]
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-45, -1e-45, 1e-38, 3e38])
    bits = torch.randint(-2**31, 2**31 - 1, (200_000,), generator=g, dtype=torch.int64).to(torch.int32)
    values = torch.cat(near + [special, bits.view(torch.float32), torch.randn(20_000, generator=g)])
    n = HIST_CHUNK + 3
    x = torch.cat([values, values[: (-len(values)) % n]]).reshape(-1, n)  # every value, width over one step
    hist = torch.zeros(n * N_BINS, dtype=torch.int64)
    add_histogram(hist, x)
    expected = torch.bincount((torch.bucketize(x, EDGES) + torch.arange(n) * N_BINS).flatten(), minlength=n * N_BINS)
    assert torch.equal(hist, expected)
