"""The running statistics of an activation index build (:mod:`yfpo_core.analysis.activation_index`) and how
two of them merge.

Every statistic is a sum, an extremum, a count, or a "best k" list, so a build over a corpus can be split
into builds over parts of it (the shards of a data-parallel run, the texts before and after a checkpoint)
whose states :meth:`IndexState.merge` folds together into the state of one pass:

* sums (float64), counts, histograms, minima and maxima: exact up to the order of float64 additions
  (relative differences around 1e-16);
* the top-k tokens per unit and the sample of active tokens per unit: *identical*. Each is the best ``k``
  of all candidate tokens under a total order: by activation (top-k) or random key (sample), ties broken by
  the smaller global token index. A total order makes "keep the best ``k``" associative and commutative, so
  the order in which texts and shards are folded in does not matter. The random keys come from a generator
  seeded by ``(seed, text index)``, so a text draws the same keys whichever process reads it, and the sample
  is the same uniform sample without replacement (a bottom-k of random keys) in one process or in ``N``.
"""

from __future__ import annotations

import torch

TOP_K, TOP_WINDOW = 16, 10
SAMPLES, SAMPLE_WINDOW = 32, 6
_POS = torch.logspace(-3, 3, 25)
EDGES = torch.cat([-_POS.flip(0), _POS])  # 50 edges -> 51 bins; the middle bin is |x| < 1e-3
N_BINS = len(EDGES) + 1


class IndexState:
    """The running statistics of a build, unit-last (``[..., n_units]``) so that each text updates them
    with a few whole-tensor operations. Empty top-k and sample slots hold token -1 and NaN windows."""

    NAMES = ("sum", "sum_sq", "max", "min", "active", "hist", "math_sum", "other_sum", "top_values", "top_tokens",
             "top_windows", "sample_keys", "sample_values", "sample_tokens", "sample_windows")

    def __init__(self, n: int) -> None:
        self.sum = torch.zeros(n, dtype=torch.float64)
        self.sum_sq = torch.zeros(n, dtype=torch.float64)
        self.max = torch.full((n,), float("-inf"))
        self.min = torch.full((n,), float("inf"))
        self.active = torch.zeros(n, dtype=torch.int64)
        self.hist = torch.zeros(n * N_BINS, dtype=torch.int64)
        self.math_sum = torch.zeros(n, dtype=torch.float64)
        self.other_sum = torch.zeros(n, dtype=torch.float64)
        self.top_values = torch.full((TOP_K, n), float("-inf"))
        self.top_tokens = torch.full((TOP_K, n), -1, dtype=torch.int64)
        self.top_windows = torch.full((TOP_K, 2 * TOP_WINDOW + 1, n), float("nan"), dtype=torch.float16)
        self.sample_keys = torch.full((SAMPLES, n), float("inf"))
        self.sample_values = torch.full((SAMPLES, n), float("nan"))
        self.sample_tokens = torch.full((SAMPLES, n), -1, dtype=torch.int64)
        self.sample_windows = torch.full((SAMPLES, 2 * SAMPLE_WINDOW + 1, n), float("nan"), dtype=torch.float16)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).contiguous() for name in self.NAMES}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> IndexState:
        state = cls.__new__(cls)
        for name in cls.NAMES:
            setattr(state, name, tensors[name])
        return state

    def update(self, x: torch.Tensor, first_token: int, math: bool, generator: torch.Generator) -> None:
        """Fold in one text's activations ``x`` (``[pos, n_units]``, float32) whose first token has global
        index ``first_token``; ``generator`` draws the text's sample keys (seed it per text)."""
        length, n = x.shape
        sums = x.sum(0, dtype=torch.float64)
        self.sum += sums
        self.sum_sq += (x * x).sum(0, dtype=torch.float64)
        (self.math_sum if math else self.other_sum).add_(sums)
        self.max = torch.maximum(self.max, x.max(0).values)
        self.min = torch.minimum(self.min, x.min(0).values)
        active = x > 0
        self.active += active.sum(0)
        add_histogram(self.hist, x)
        # top-k: this text's best positions per unit, merged with the best so far
        k = min(TOP_K, length)
        values, positions = x.topk(k, dim=0)
        self._keep_top((values, positions + first_token, _windows(x, positions, TOP_WINDOW)))
        # uniform sample of active tokens: the smallest random keys win
        keys = torch.rand(x.shape, generator=generator).masked_fill_(~active, float("inf"))
        s = min(SAMPLES, length)
        kept, positions = keys.topk(s, dim=0, largest=False)
        self._keep_samples((kept, positions + first_token, x.gather(0, positions),
                            _windows(x, positions, SAMPLE_WINDOW)))

    def merge(self, other: IndexState) -> None:
        """Fold in the state of other texts (another shard, or the texts after a checkpoint)."""
        for name in ("sum", "sum_sq", "math_sum", "other_sum", "active", "hist"):
            getattr(self, name).add_(getattr(other, name))
        self.max = torch.maximum(self.max, other.max)
        self.min = torch.minimum(self.min, other.min)
        self._keep_top((other.top_values, other.top_tokens, other.top_windows))
        self._keep_samples((other.sample_keys, other.sample_tokens, other.sample_values, other.sample_windows))

    def _keep_top(self, new: tuple[torch.Tensor, ...]) -> None:
        self.top_values, self.top_tokens, self.top_windows = keep_best(
            (self.top_values, self.top_tokens, self.top_windows), new, TOP_K, largest=True)

    def _keep_samples(self, new: tuple[torch.Tensor, ...]) -> None:
        keys, tokens, values, windows = keep_best(
            (self.sample_keys, self.sample_tokens, self.sample_values, self.sample_windows), new, SAMPLES,
            largest=False)
        empty = torch.isinf(keys)  # inactive tokens: no sample; cleared so every empty slot is the same
        tokens.masked_fill_(empty, -1)
        values.masked_fill_(empty, float("nan"))
        windows.masked_fill_(empty[:, None, :], float("nan"))
        self.sample_keys, self.sample_tokens, self.sample_values, self.sample_windows = keys, tokens, values, windows


def _windows(x: torch.Tensor, positions: torch.Tensor, width: int) -> torch.Tensor:
    """``x[p - width : p + width + 1, unit]`` for each position ``p`` of each unit (NaN outside the text):
    ``[k, 2 * width + 1, n_units]`` in float16."""
    n = x.shape[1]
    pad = torch.full((width, n), float("nan"))
    padded = torch.cat([pad, x, pad])
    offsets = torch.arange(2 * width + 1)
    index = (positions[:, None, :] + offsets[None, :, None]).reshape(-1, n)
    return padded.gather(0, index).reshape(positions.shape[0], 2 * width + 1, n).half()


def keep_best(old: tuple[torch.Tensor, ...], new: tuple[torch.Tensor, ...], k: int, largest: bool
              ) -> tuple[torch.Tensor, ...]:
    """The ``k`` best rows per unit of ``old`` and ``new`` stacked together.

    Each tuple is ``(key [m, n], token [m, n], *payload)`` (a payload is ``[m, n]`` or ``[m, w, n]``). Rows
    are ordered by key (descending when ``largest``), ties by the smaller token: a total order (a token
    appears once per unit), which makes the result independent of how the candidates were split and in
    which order they were merged."""
    order = order_key(torch.cat([old[0], new[0]]), torch.cat([old[1], new[1]]), largest)
    order = order.topk(k, dim=0, largest=largest).indices  # [k, n]
    out = []
    for a, b in zip(old, new, strict=True):
        both = torch.cat([a, b.to(a.dtype)])
        index = order if both.dim() == 2 else order[:, None, :].expand(k, both.shape[1], both.shape[2])
        out.append(both.gather(0, index))
    return tuple(out)


HIST_CHUNK = 2048  # units per step of add_histogram: its temporaries stay in the cache


def add_histogram(hist: torch.Tensor, x: torch.Tensor) -> None:
    """Add the bins of ``x [pos, n_units]`` to ``hist [n_units * N_BINS]`` (unit-major): the counts of
    ``torch.bucketize(x, EDGES)``, 3-4x faster.

    The edges are 10**(i / 4 - 3) either sign, so ``t = 4 * log10|x| + 12`` lies in ``(i, i + 1)``
    exactly when ``|x|`` lies between edges ``i`` and ``i + 1``: a few arithmetic passes over ``x`` give
    the bin, where bucketize's binary search costs far more. ``log10`` and the float32 edges are each
    off by far less than 1e-3 in ``t``, so a value whose ``t`` is within 1e-3 of an integer (an edge,
    about 0.2% of them) or is NaN takes ``bucketize`` itself: the counts are exactly bucketize's."""
    length, n = x.shape
    offsets = torch.arange(min(n, HIST_CHUNK)) * N_BINS
    middle = (offsets + len(EDGES) // 2).float()  # the bin of |x| < 1e-3 (and of 0), per unit
    for start in range(0, n, HIST_CHUNK):
        part = x[:, start: start + HIST_CHUNK]  # [pos, m]
        m = part.shape[1]
        t = part.abs().log10_().mul_(4).add_(12).clamp_(-0.5, len(EDGES) // 2 - 0.5)  # 0 and inf: clamped
        near = (t - t.round()).abs_().ge(1e-3).logical_not_().view(-1).nonzero()[:, 0]  # NaN is near too
        # |x| above edges 0 .. floor(t): that many bins up from the middle for x > 0, down for x < 0
        bins = t.floor_().add_(1).copysign_(part).add_(middle[:m]).long().view(-1)  # [pos * m]
        bins[near] = torch.bucketize(torch.take(part, near), EDGES) + near.remainder(m).mul_(N_BINS)
        hist[start * N_BINS: (start + m) * N_BINS] += torch.bincount(bins, minlength=m * N_BINS)


def order_key(key: torch.Tensor, token: torch.Tensor, largest: bool) -> torch.Tensor:
    """One int64 per entry that sorts like ``(key, then the smaller token first)``: the float32 key's bits
    made order-preserving in the high half, the token (-1 for an empty slot) in the low half, flipped when
    the largest keys come first. One ``topk`` over it replaces two stable sorts (about 4x faster on CPU)."""
    if token.numel() and int(token.max()) >= 2**32 - 2:
        raise ValueError("an activation index holds fewer than 2**32 - 2 tokens")
    bits = (key.float() + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0, one value
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)  # negative floats: reverse their order
    low = token + 1  # 0 .. 2**32 - 2
    return (bits << 32) | (0xFFFFFFFF - low if largest else low)
