"""A batch within the provider's slots: it keeps its concurrency at the provider while it prepares the
next clips, and a cancel stops the clips still waiting for a slot before their submit."""

from __future__ import annotations

from fractions import Fraction

from clips import write_clip

from sonify.catalog import MMAUDIO_V2
from sonify.pipeline import batch


def test_a_batch_keeps_its_concurrency_at_the_provider_and_prepares_the_next_clips_meanwhile(
        emulator, wavespeed_env, tmp_path):
    emulator.model_seconds = 1.0
    sources = [write_clip(tmp_path / f"clip{i}.mp4", 12, Fraction(24), 64, 48, flash_at=(i,)) for i in range(6)]
    out = tmp_path / "out"
    engine = batch.Batch(MMAUDIO_V2, {"prompt": "rain"}, batch.plan(MMAUDIO_V2, {"prompt": "rain"}, sources, out),
                         out, concurrency=2)
    engine.run(lambda: None)
    assert engine.counts()["done"] == 6 and emulator.submits() == 6
    assert all("slot" in item.info["seconds"] for item in engine.items)  # the wait for a slot is a stage
    tasks = [emulator.tasks.get(item.task_id) for item in engine.items]
    for task in tasks:  # when each was submitted, at most one other was still at the provider
        assert sum(1 for other in tasks if other.submitted < task.submitted < other.completed_at) <= 1
    uploads = sorted(r.at for r in emulator.requests if r.method == "POST" and r.path == "/api/v3/media/uploads")
    assert uploads[3] < min(task.completed_at for task in tasks)  # 4 clips ready before the first job ended


def test_cancelling_a_batch_stops_the_clips_waiting_for_a_slot_before_their_submit(emulator, wavespeed_env, tmp_path):
    emulator.model_seconds = 30.0
    sources = [write_clip(tmp_path / f"clip{i}.mp4", 12, Fraction(24), 64, 48, flash_at=(i,)) for i in range(4)]
    out = tmp_path / "out"
    engine = batch.Batch(MMAUDIO_V2, {"prompt": "rain"}, batch.plan(MMAUDIO_V2, {"prompt": "rain"}, sources, out),
                         out, concurrency=1, is_cancelled=lambda: emulator.submits() > 0)  # Ctrl-C after the first submit
    engine.run(lambda: None)
    assert emulator.submits() == 1
    assert [item.state for item in engine.items] == ["cancelled"] * 4
    assert sum(1 for item in engine.items if item.task_id) == 1  # the submitted one says which task to fetch
