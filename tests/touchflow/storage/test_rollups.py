"""touchflow.storage.rollups: stale hours recounted in runs of consecutive hours."""

from __future__ import annotations

from touchflow.storage.rollups import _spans


def test_stale_hours_in_runs() -> None:
    assert _spans([]) == []
    assert _spans([3, 4, 5, 9]) == [range(3, 6), range(9, 10)]
    assert _spans([7]) == [range(7, 8)]
