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

from collections.abc import Callable

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
        index ``first_token``; ``generator`` draws the text's sample keys (seed it per text).

        The best-k lists are updated only for the units where this text can change them (see
        :func:`contenders`), and context windows are cut only for the tokens that enter a list: late in a
        build few units change per text, so the update costs far less than ``width x candidates`` windows."""
        length, n = x.shape
        sums = x.sum(0, dtype=torch.float64)
        self.sum += sums
        self.sum_sq += (x * x).sum(0, dtype=torch.float64)
        (self.math_sum if math else self.other_sum).add_(sums)
        high = x.max(0).values  # [n]; (not amax: it may return -0.0 where max returns 0.0)
        self.max = torch.maximum(self.max, high)
        self.min = torch.minimum(self.min, x.min(0).values)
        active = x > 0
        self.active += active.sum(0, dtype=torch.int32)  # int32: counts of one text; 3x faster than int64
        add_histogram(self.hist, x)
        # top-k: this text's best positions per unit, merged with the best so far
        kth = self.top_values[-1]
        columns = contenders(high, kth, largest=True)
        if len(columns):
            values, positions = candidates(x.index_select(1, columns), kth[columns], TOP_K, largest=True)
            self._keep_top(columns, (values, positions + first_token), text_windows(x, positions, columns, TOP_WINDOW))
        # uniform sample of active tokens: the smallest random keys win
        keys = torch.rand(x.shape, generator=generator)  # [pos, n]: every unit's, so the draw is the text's alone
        kth = self.sample_keys[-1]
        columns = keys.le(kth).logical_and_(active).any(0).nonzero()[:, 0]  # an active key not above the k-th
        if len(columns):
            inactive = active.index_select(1, columns).logical_not_()
            kept, positions = candidates(keys.index_select(1, columns).masked_fill_(inactive, float("inf")),
                                         kth[columns], SAMPLES, largest=False)
            values = torch.take(x, positions * n + columns)  # x[positions, columns]
            self._keep_samples(columns, (kept, positions + first_token, values),
                               text_windows(x, positions, columns, SAMPLE_WINDOW))

    def merge(self, other: IndexState) -> None:
        """Fold in the state of other texts (another shard, or the texts after a checkpoint)."""
        for name in ("sum", "sum_sq", "math_sum", "other_sum", "active", "hist"):
            getattr(self, name).add_(getattr(other, name))
        self.max = torch.maximum(self.max, other.max)
        self.min = torch.minimum(self.min, other.min)
        columns = contenders(other.top_values[0], self.top_values[-1], largest=True)
        self._keep_top(columns, (other.top_values[:, columns], other.top_tokens[:, columns]),
                       kept_windows(other.top_windows, columns))
        columns = contenders(other.sample_keys[0], self.sample_keys[-1], largest=False)
        self._keep_samples(columns, (other.sample_keys[:, columns], other.sample_tokens[:, columns],
                                     other.sample_values[:, columns]), kept_windows(other.sample_windows, columns))

    def _keep_top(self, columns: torch.Tensor, new: tuple[torch.Tensor, ...], windows: WindowsOf) -> None:
        keep_best((self.top_values, self.top_tokens), self.top_windows, columns, new, windows, largest=True)

    def _keep_samples(self, columns: torch.Tensor, new: tuple[torch.Tensor, ...], windows: WindowsOf) -> None:
        changed = keep_best((self.sample_keys, self.sample_tokens, self.sample_values), self.sample_windows, columns,
                            new, windows, largest=False)
        # An inactive token (infinite key) ranks after the empty slots (token -1) a list has while it is not
        # full, so it never enters; should one, it is cleared, so that every empty slot is the same.
        stray = self.sample_keys.index_select(1, changed).isinf() & self.sample_tokens.index_select(1, changed).ge(0)
        if stray.any():
            for name, fill in (("sample_tokens", -1), ("sample_values", float("nan"))):
                tensor = getattr(self, name)
                tensor.index_copy_(1, changed, tensor.index_select(1, changed).masked_fill_(stray, fill))
            flat = self.sample_windows.view(-1, self.sample_windows.shape[-1])  # [k * w, n]
            kept = flat.index_select(1, changed).view(SAMPLES, -1, len(changed))
            flat.index_copy_(1, changed, kept.masked_fill_(stray[:, None, :], float("nan")).view(len(flat), -1))


WindowsOf = Callable[[int, torch.Tensor], torch.Tensor]
"""``windows(rows, cols [c]) -> [rows, 2 * width + 1, c]`` (float16): the context windows of the best
``rows`` new candidates of ``c`` units, given by their places ``cols`` among the updated ``columns``."""


def not_worse(scores: torch.Tensor, kth: torch.Tensor, largest: bool) -> torch.Tensor:
    """Where ``scores`` (``[..., n_units]``) are not strictly worse than the k-th of a best-k list (``kth
    [n_units]``): only those can enter it. The list's rows have distinct tokens, so a strictly worse key
    loses to all ``k`` of them; an equal key may still win on its token, and a NaN passes, as it entered
    before this filter. With ``largest`` false (the sample) an infinite key (an inactive token) never
    passes: it could only fill an empty slot, and empty slots are all alike."""
    if largest:
        return ~(scores < kth)
    return ~(scores > kth) & (scores != float("inf"))


def contenders(best: torch.Tensor, kth: torch.Tensor, largest: bool) -> torch.Tensor:
    """The units (``[m]`` indices) whose best new key (``best [n_units]``) is :func:`not_worse` than their
    list's k-th: the others keep their list as it is, which :func:`keep_best` would also give, only after
    sorting it."""
    return not_worse(best, kth, largest).nonzero()[:, 0]


def candidates(scores: torch.Tensor, kth: torch.Tensor, k: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A text's candidates for the best-k lists of ``m`` units: the best ``r`` positions of their ``scores
    [pos, m]`` per unit, as ``(scores [r, m], positions [r, m])``, best first.

    ``r`` is the most any of these units has of positions :func:`not_worse` than its list's k-th (``kth
    [m]``), at most ``k``. Only those can enter; they come first in a unit's order, with no tie across
    their boundary, so the best ``r`` hold all of them and :func:`keep_best` gives what it gives for the
    best ``k``. Late in a build ``r`` is 1 to 3, where ``topk`` is several times faster than for ``k``.
    Each unit's ``topk`` sees its own column only, as it did on the whole text."""
    r = min(k, int(not_worse(scores, kth, largest).sum(0, dtype=torch.int32).max()))
    return scores.topk(r, dim=0, largest=largest)


def text_windows(x: torch.Tensor, positions: torch.Tensor, columns: torch.Tensor, width: int) -> WindowsOf:
    """The windows of the candidates ``positions [r, m]`` (positions in the text ``x [pos, n_units]`` of the
    units ``columns [m]``), cut only when asked: ``x[p - width : p + width + 1, unit]``, NaN outside the
    text, in float16. Cutting every candidate's window cost more than the rest of the update did. They
    are cut unit-major, where a window is one contiguous run of the padded text (4x faster than a
    gather down the columns of ``x``)."""

    def windows(rows: int, cols: torch.Tensor) -> torch.Tensor:
        units = x.T.index_select(0, columns[cols])  # [c, pos]
        pad = units.new_full((len(units), width), float("nan"))
        runs = torch.cat([pad, units, pad], dim=1).unfold(1, 2 * width + 1, 1)  # [c, pos, 2 * width + 1]
        at = positions[:rows].index_select(1, cols).T  # [c, rows]: each window's first place in the padded text
        cut = runs.gather(1, at[:, :, None].expand(len(units), rows, 2 * width + 1))  # [c, rows, 2 * width + 1]
        return cut.half().permute(1, 2, 0)

    return windows


def kept_windows(windows: torch.Tensor, columns: torch.Tensor) -> WindowsOf:
    """The stored ``windows [k, 2 * width + 1, n_units]`` of another state's rows, for the units ``columns``."""
    return lambda rows, cols: windows[:rows].index_select(2, columns[cols])


def keep_best(old: tuple[torch.Tensor, ...], old_windows: torch.Tensor, columns: torch.Tensor,
              new: tuple[torch.Tensor, ...], new_windows: WindowsOf, largest: bool) -> torch.Tensor:
    """Keep, in place, the best ``k`` rows per unit of ``old`` and ``new`` stacked together, for the units
    ``columns [m]``; returns the units whose rows changed (``[c]``).

    ``old`` is ``(key [k, n], token [k, n], *payload [k, n])`` with ``old_windows [k, w, n]``, each row
    list sorted best first; ``new`` is ``(key [r, m], token [r, m], *payload [r, m])`` for ``columns``, whose
    windows ``new_windows`` cuts when asked. Rows are ordered by key (descending when ``largest``), ties
    by the smaller token: a total order (a token appears once per unit), which makes the result
    independent of how the candidates were split and in which order they were merged.

    Only the units whose best ``k`` differ from their old rows are written, and new windows are cut only
    for those units and down to the last new row that enters: late in a build most units keep their rows
    (which is cheap to see) and the others take one or two new ones."""
    k = old[0].shape[0]
    if not len(columns):
        return columns
    order = order_key(torch.cat([old[0].index_select(1, columns), new[0]]),
                      torch.cat([old[1].index_select(1, columns), new[1]]), largest)
    order = order.topk(k, dim=0, largest=largest).indices  # [k, m]: rows of [old; new]
    changed = (order != torch.arange(k)[:, None]).any(0).nonzero()[:, 0]  # [c], among columns
    if not len(changed):
        return changed
    order, where = order[:, changed], columns[changed]
    for a, b in zip(old, new, strict=True):
        both = torch.cat([a.index_select(1, where), b.index_select(1, changed).to(a.dtype)])
        a.index_copy_(1, where, both.gather(0, order))
    flat = old_windows.view(k * old_windows.shape[1], -1)  # [k * w, n]: one index_select / index_copy_
    kept = flat.index_select(1, where).view(k, -1, len(where))  # [k, w, c]
    rows = int(order.max()) + 1 - k  # the new rows that enter are among the first `rows` (best first)
    if rows > 0:
        kept = torch.cat([kept, new_windows(rows, changed)])  # [k + rows, w, c]
    kept = kept.gather(0, order[:, None, :].expand(k, *kept.shape[1:]))
    flat.index_copy_(1, where, kept.view(len(flat), -1))
    return where


HIST_CHUNK = 2048  # units per step of add_histogram: its temporaries stay in the cache


def add_histogram(hist: torch.Tensor, x: torch.Tensor) -> None:
    """Add the bins of ``x [pos, n_units]`` to ``hist [n_units * N_BINS]`` (unit-major): the counts of
    ``torch.bucketize(x, EDGES)``, 3-4x faster.

    The edges are 10**(i / 4 - 3) either sign, so ``t = 4 * log10|x| + 12`` lies in ``(i, i + 1)``
    exactly when ``|x|`` lies between edges ``i`` and ``i + 1``: a few arithmetic passes over ``x`` give
    the bin, where bucketize's binary search costs far more. ``log10`` and the float32 edges are each
    off by far less than 1e-3 in ``t``, so a value whose ``t`` is within 1e-3 of an integer (an edge,
    about 0.2% of them) or is NaN takes ``bucketize`` itself: the counts are exactly bucketize's."""
    n = x.shape[1]
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
