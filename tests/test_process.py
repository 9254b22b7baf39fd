"""The garbage collector's policy of a long-running process (callbridge.process)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from callbridge.process import ENV_GC, GC_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_freezes_what_start_up_made_and_runs_the_collector_less_often(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_GC, raising=False)
    start_up = [[n] for n in range(100)]  # live container objects made before tuning
    cycle: list[object] = []
    cycle.append(cycle)  # garbage already: collected, not frozen
    del cycle
    second, third = gc.get_threshold()[1:]
    assert tune_gc() is True
    assert gc.get_threshold() == (GC_THRESHOLD, second, third)
    assert gc.get_freeze_count() > len(start_up)
    walked = {id(o) for generation in (0, 1, 2) for o in gc.get_objects(generation)}
    assert not any(id(x) in walked for x in start_up)  # in the permanent generation now


@pytest.mark.usefixtures("restored_gc")
def test_callbridge_gc_default_leaves_pythons_collector_as_it_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_GC, "default")
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    assert tune_gc() is False
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
