"""The frozen-work cache: work shared between runs in one process, made once per key under a lock.

The frozen prefix, the reference log-probs and the evaluation before the first step depend only on the
base weights and the data, not on the run's lambda, unit set or seed; the experiment's arms (and a UI that
starts a control run next to a real one, in another thread) train from the same base on the same pairs.
Entries are keyed by content (:func:`digest`), so a different base, batch or problem list never hits.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

_SHARED: OrderedDict[tuple, Any] = OrderedDict()
_SHARED_MAX = 64  # a prefix entry per batch (~6 MB for 8 x 320 tokens of SmolLM2)
_SHARED_LOCK = threading.Lock()  # guards _SHARED and _MAKING; never held while computing
_MAKING: dict[tuple, threading.Lock] = {}  # key -> lock held by the thread computing that key


def shared(key: tuple, make: Callable[[], Any]) -> Any:
    """``make()``'s value, computed once per key by whichever thread asks first (the app trains runs in
    threads): a second thread asking for the same key waits for it; other keys go on in parallel."""
    with _SHARED_LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key]
        making = _MAKING.setdefault(key, threading.Lock())
    with making:
        with _SHARED_LOCK:
            if key in _SHARED:  # made by another thread while this one waited
                _SHARED.move_to_end(key)
                return _SHARED[key]
        value = make()
        with _SHARED_LOCK:
            _SHARED[key] = value
            _MAKING.pop(key, None)
            while len(_SHARED) > _SHARED_MAX:
                _SHARED.popitem(last=False)
    return value


def clear_shared() -> None:
    """Forget every shared entry (tests; a UI's "free memory")."""
    with _SHARED_LOCK:
        _SHARED.clear()


def digest(*tensors: torch.Tensor) -> str:
    """A content hash of tensors (shapes and bytes): the cache key of data."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
