"""The results cache: look-ups of any number of keys, in batches SQLite accepts; on SQLite and PostgreSQL."""

from __future__ import annotations

from weightguard.catalogue import cache as cache_module
from weightguard.catalogue.cache import CachedResult, FileStamp, ResultsCache
from weightguard.catalogue.interface import UnitKind


def test_look_ups_of_more_keys_than_one_statement_takes_find_every_stored_one(database_url: str) -> None:
    cache = ResultsCache(database_url, policy_sha256="p", version="v")
    count = 2 * cache_module._BATCH + 1
    cache.put_many(UnitKind.SCAN, [CachedResult(f"k{i}", i, f'"{i}"') for i in range(0, count, 2)])
    keys = [f"k{i}" for i in range(count)] + ["k0", "k2"]  # missing ones and repeats too
    found = cache.get_many(UnitKind.SCAN, keys)
    assert found == {f"k{i}": CachedResult(f"k{i}", i, f'"{i}"') for i in range(0, count, 2)}
    assert cache.get_many(UnitKind.MODEL, keys) == {}  # another kind
    stamps = {f"/m/{i}": (FileStamp(1, i, i, i, i), {"sha256": f"{i:064x}"}) for i in range(count)}
    cache.put_digests(stamps)
    assert cache.get_digests([*stamps, "/m/absent"]) == stamps
    cache.close()
