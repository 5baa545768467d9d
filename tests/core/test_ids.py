"""CUIDs: shape, uniqueness and rough time order."""

from __future__ import annotations

import time

from services.core.ids import is_cuid, new_cuid


def test_cuid_has_the_cuid_shape() -> None:
    value = new_cuid()

    assert len(value) == 25
    assert is_cuid(value)


def test_cuids_are_unique() -> None:
    values = {new_cuid() for _ in range(50_000)}

    assert len(values) == 50_000


def test_later_cuids_sort_after_earlier_ones() -> None:
    first = new_cuid()
    time.sleep(0.002)

    assert new_cuid()[:9] > first[:9]
