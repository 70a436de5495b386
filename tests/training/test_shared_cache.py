"""The frozen-work cache shared by runs from one base (yfpo_core.training.shared_cache)."""

from __future__ import annotations


def test_shared_cache_makes_each_key_once_across_threads():
    import threading
    import time

    from yfpo_core.training import shared_cache

    shared_cache.clear_shared()
    made = []

    def make():
        made.append(threading.get_ident())
        time.sleep(0.05)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(shared_cache.shared(("test-key",), make)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len({id(r) for r in results}) == 1
    shared_cache.clear_shared()
