"""Caching of test fixtures that write into assets/, keyed by the assets folder in force.

A plain ``lru_cache`` would hand back files written into another test's temporary assets folder
(tests that monkeypatch ATELIER_ASSETS), and the models would then be "not found" by name.
"""

from __future__ import annotations

import functools

from logic import settings


def per_assets_dir(build):
    """Cache ``build()``'s result per assets folder (and arguments)."""
    results: dict = {}

    @functools.wraps(build)
    def cached(*args):
        key = (str(settings.assets_dir().resolve()), args)
        if key not in results:
            results[key] = build(*args)
        return results[key]

    cached.cache_clear = results.clear
    return cached
