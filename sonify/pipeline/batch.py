"""Many clips through one model at once: `sonify batch MODEL SOURCES… -o DIR`.

Each clip is one `pipeline.run` on a thread pool, so everything a run does holds per clip: the
journal resumes a job an earlier batch submitted but never delivered, and never pays twice. A clip
whose result is already in DIR (`<name>.mp4` with its `<name>.sonify.json` saying it was made from
the same source, model and parameters) is skipped without any request, so a re-run after a crash or
a failure does only what is left. The batch is one run for SONIFY_MAX_USD_PER_RUN; once a clip would pass a spend
cap, no further clip is started, and the summary says how many were left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import media
from ..atomic import write_atomically
from ..catalog import ModelSpec
from ..errors import BudgetExceeded, Cancelled, ConfigurationError, SonifyError, ValidationError
from ..loudness_target import Target
from ..settings import current
from . import flow, receipts

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


OUTCOMES = ("done", "resumed", "reused", "failed", "cancelled", "left")  # what the summary counts (Item.outcome)


SIDECAR = ".sonify.json"


REFRESH = 0.5  # seconds between redraws of the progress bar


BAR_WIDTH = 24


@dataclass
class Item:
    """One clip of a batch and what happened to it."""

    source: Path
    name: str  # the result's stem in the output folder
    state: str = "waiting"  # waiting | running | done | skipped | failed | cancelled | left (at a spend cap)
    text: str = ""  # the latest progress text of its run
    info: dict[str, Any] = field(default_factory=dict)  # the run's job info (done / skipped)
    error: str = ""
    task_id: str | None = None
    retry_may_help: bool = False  # the failure was not in the input or the setup
    at_provider: bool = False  # its job holds one of the batch's slots: submitted or resumed, not yet seen finished

    @property
    def outcome(self) -> str:
        """What the summary counts it as: done (a new job), resumed (an earlier run's task, waited on again),
        reused (free: the result already in the output folder, or the journal's stored one), failed, cancelled or
        left (not started: the batch reached a spend cap); while it runs, its state (waiting, running)."""
        if self.state == "skipped" or (self.state == "done" and self.info.get("cached")):
            return "reused"
        if self.state == "done" and self.info.get("resumed"):
            return "resumed"
        return self.state

    @property
    def cost(self) -> float | None:
        """The estimate of what this batch spent on it: nothing for a stored or skipped result."""
        if self.state != "done" or self.info.get("cached"):
            return None
        return self.info.get("cost_usd_estimate")


def expand_sources(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for the video files directly in it (sorted by name)."""
    sources: list[Path] = []
    for path in paths:
        if path.is_dir():
            sources += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            sources.append(path)
        else:
            raise ValidationError("SOURCES", f"no such file or folder: {path}")
    if not sources:
        raise ValidationError("SOURCES", f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {', '.join(map(str, paths))}")
    return sources


def plan(spec: ModelSpec, params: dict[str, Any], sources: list[Path], out_dir: Path,
         loudness: Target | None = None) -> list[Item]:
    """One item per source, named after it (`clip.mp4` → `clip`; a repeated stem gets `-2`, `-3`…,
    in the order given, so a re-run with the same command line finds the same names). Items whose
    result is already there (at the same `loudness`) are marked skipped."""
    items: list[Item] = []
    taken: Counter[str] = Counter()
    for source in sources:
        taken[source.stem] += 1
        name = source.stem if taken[source.stem] == 1 else f"{source.stem}-{taken[source.stem]}"
        item = Item(source=source, name=name)
        done = _done_before(spec, params, item, out_dir, loudness)
        if done is not None:
            item.state, item.info, item.task_id = "skipped", done, done.get("task_id")
        items.append(item)
    return items


def _done_before(spec: ModelSpec, params: dict[str, Any], item: Item, out_dir: Path,
                 loudness: Target | None) -> dict[str, Any] | None:
    """The job info of an earlier result of exactly this work, if its files are there."""
    sidecar = out_dir / f"{item.name}{SIDECAR}"
    if not (out_dir / f"{item.name}.mp4").is_file() or not sidecar.is_file():
        return None
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = (record.get("source") == str(item.source.resolve()) and record.get("model") == spec.key
            and record.get("params") == params and record.get("loudness") == _loudness_record(loudness))
    return (record.get("job") or {}) if same else None


def _loudness_record(loudness: Target | None) -> dict[str, float] | None:
    return dataclasses.asdict(loudness) if loudness is not None else None


def keep(out_dir: Path, name: str, video: Path, record: dict[str, Any]) -> None:
    """Name a result (`video`, in `out_dir`) after its source; the sidecar (`record`, with the job's receipt added),
    written last, marks it done."""
    os.replace(video, out_dir / f"{name}.mp4")
    write_sidecar(out_dir, name, {**record, "receipt": receipts.of(record["job"])})


def write_sidecar(out_dir: Path, name: str, record: dict[str, Any]) -> None:
    """`<name>.sonify.json`, the record of a result, written whole or not at all."""
    text = json.dumps(record, indent=2)
    write_atomically(out_dir / f"{name}{SIDECAR}", lambda path: path.write_text(text, encoding="utf-8"))


class Batch:
    """Keeps `concurrency` jobs at the provider. Each clip's local work (prepare, upload; download, mux)
    runs on extra threads while those jobs run, so the provider is never left idle waiting for it.
    `is_cancelled` (Ctrl-C) stops waiting runs at once and keeps the rest from starting."""

    def __init__(self, spec: ModelSpec, params: dict[str, Any], items: list[Item], out_dir: Path, *,
                 audio: Any = None, concurrency: int = 4, is_cancelled: Callable[[], bool] = lambda: False,
                 loudness: Target | None = None) -> None:
        self.spec, self.params, self.items, self.out_dir = spec, params, items, out_dir
        self.loudness = loudness
        self.audio, self.concurrency, self.is_cancelled = audio, concurrency, is_cancelled
        self.started = time.monotonic()
        self.slots = threading.Semaphore(concurrency)
        self.run_id = uuid.uuid4().hex  # every clip's spend counts for the batch (SONIFY_MAX_USD_PER_RUN)
        self.settings = current()  # read once, for every clip of the batch
        self.stopped: str | None = None  # why the batch stopped starting clips: the spend cap's refusal

    def run(self, on_tick: Callable[[], None]) -> None:
        """Blocks until every item is done, failed, skipped or cancelled; `on_tick` redraws progress."""
        todo = [item for item in self.items if item.state == "waiting"]
        # Twice the slots: when a job at the provider ends, the next clip is already uploaded and waiting
        # for its slot, while the finished one downloads and muxes.
        with ThreadPoolExecutor(max_workers=2 * self.concurrency, thread_name_prefix="sonify-batch") as pool:
            pending: set[Future] = {pool.submit(self._one, item) for item in todo}
            while pending:
                on_tick()
                _, pending = wait(pending, timeout=REFRESH, return_when=FIRST_COMPLETED)
        on_tick()

    def _one(self, item: Item) -> None:
        if self.is_cancelled():
            item.state = "cancelled"
            return
        if self.stopped is not None:
            item.state = "left"
            return
        item.state = "running"

        def report(text: str, fraction: float | None) -> None:
            item.text = text

        try:
            result = flow.run(self.spec, self.params, media.VideoSource(path=str(item.source)),
                                  out_dir=self.out_dir, audio=self.audio, on_progress=report,
                                  is_cancelled=self.is_cancelled, slots=ItemSlots(self.slots, item),
                                  loudness=self.loudness, run_id=self.run_id, settings=self.settings)
            self._keep(item, result)
        except BudgetExceeded as exc:  # nothing was sent for it: it and every clip not yet started are left
            self.stopped = self.stopped or str(exc)
            item.state, item.error = "left", str(exc)
        except SonifyError as exc:
            item.state = "cancelled" if isinstance(exc, Cancelled) else "failed"
            item.error, item.task_id = str(exc), exc.task_id
            item.retry_may_help = not isinstance(exc, (ValidationError, ConfigurationError))
        except Exception as exc:  # noqa: BLE001 - a bug must not hide the other clips' results
            item.state, item.error, item.retry_may_help = "failed", f"{type(exc).__name__}: {exc}", True
        else:
            item.state, item.info, item.task_id = "done", result.info, result.info.get("task_id")

    def _keep(self, item: Item, result: Any) -> None:
        record = {"source": str(item.source.resolve()), "model": self.spec.key, "params": self.params,
                  **({"loudness": _loudness_record(self.loudness)} if self.loudness is not None else {}),
                  "job": result.info}
        keep(self.out_dir, item.name, result.video_path, record)

    # --- reporting ---

    def counts(self) -> Counter[str]:
        return Counter(item.state for item in self.items)

    def outcomes(self) -> Counter[str]:
        return Counter(item.outcome for item in self.items)

    def cost(self) -> tuple[float, int]:
        """(sum of the cost estimates of the jobs this batch ran, how many of them had no estimate)."""
        done = [item for item in self.items if item.state == "done" and not item.info.get("cached")]
        known = [item.cost for item in done if item.cost is not None]
        return sum(known), len(done) - len(known)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class ItemSlots:
    """The batch's shared slots as one clip's job takes them: while it holds one, the clip is at the provider —
    what the progress line counts, so it never shows more there than the batch's concurrency."""

    def __init__(self, shared: threading.Semaphore, item: Item) -> None:
        self.shared, self.item = shared, item

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        taken = self.shared.acquire(blocking, timeout)
        self.item.at_provider |= taken
        return taken

    def release(self) -> None:
        self.item.at_provider = False  # before the slot is free for another clip
        self.shared.release()


class ProgressBar:
    """A one-line text bar on a terminal (redrawn in place); on a pipe or file, a line whenever
    the counts change — never a flood of lines for the seconds ticking."""

    def __init__(self, batch: Batch, stream: TextIO = sys.stderr) -> None:
        self.batch, self.stream = batch, stream
        self.tty = stream.isatty()
        self.lock = threading.Lock()
        self.last = ""

    def draw(self) -> None:
        counts = self.batch.outcomes()
        total = len(self.batch.items)
        finished = total - counts["waiting"] - counts["running"]
        filled = round(BAR_WIDTH * finished / total) if total else BAR_WIDTH
        cost, _ = self.batch.cost()
        states = ", ".join(f"{counts[label]} {label}" for label in OUTCOMES if counts[label])
        running = self._running()
        text = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {finished}/{total}"
                + (f" · {states}" if states else "") + (f" · running: {running}" if running else "")
                + f" · est. ${cost:.3f}")
        with self.lock:
            if self.tty:
                self.stream.write(f"\r{text} · {self.batch.elapsed():.0f} s\x1b[K")
            elif text != self.last:
                self.stream.write(f"{text}\n")
            self.stream.flush()
            self.last = text

    def _running(self) -> str:
        """The running items: how many are at the provider (holding a slot), the others by stage: "2 at the
        provider, 1 uploading, 1 waiting"."""
        running = [item for item in self.batch.items if item.state == "running"]
        there = sum(1 for item in running if item.at_provider)
        stages = Counter((item.text.split(" ", 1)[0] or "starting") for item in running if not item.at_provider)
        parts = [f"{there} at the provider"] if there else []
        return ", ".join(parts + [f"{n} {stage}" for stage, n in stages.most_common()])

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def summary(batch: Batch) -> list[str]:
    """The closing lines: done / resumed / reused (free) / failed (and cancelled, if any), estimated cost, wall
    time; where the reused results came from; then each failure with its task id."""
    counts = batch.outcomes()
    cost, unpriced = batch.cost()
    parts = [f"{counts[s]} {s}" + (" (free)" if s == "reused" else "") for s in OUTCOMES
             if counts[s] or s not in ("cancelled", "left")]
    price = f"est. ${cost:.3f}" + (f" (+{unpriced} job(s) without a price estimate)" if unpriced else "")
    lines = [f"batch {batch.spec.key}: {', '.join(parts)} of {len(batch.items)} in {batch.elapsed():.1f} s · {price}"]
    if counts["reused"]:
        skipped = batch.counts()["skipped"]
        stored = counts["reused"] - skipped
        sources = ([f"{skipped} already in {batch.out_dir} from an earlier run (delete a result to redo it)"]
                   if skipped else []) + ([f"{stored} the journal's stored result of an identical job"] if stored else [])
        lines.append(f"reused, no request and no cost: {'; '.join(sources)}")
    if counts["resumed"]:
        lines.append(f"resumed: {counts['resumed']} job(s) an earlier run submitted, waited on again (not paid twice)")
    return lines + failures(batch)


def stopped(batch: Batch) -> list[str]:
    """Why clips were left, and how many (kept with -q: the batch did not do all it was asked)."""
    left = batch.outcomes()["left"]
    if not left or batch.stopped is None:
        return []
    return [f"stopped at a spend cap, {left} clip(s) left (nothing sent for them): {batch.stopped}",
            "raise the cap (or wait for the next day or month), then run the same command: finished clips are reused"]


def failures(batch: Batch) -> list[str]:
    """What went wrong, each with its task id and what to do (the part of the summary that -q keeps)."""
    lines = stopped(batch)
    failed = [item for item in batch.items if item.state == "failed"]
    if failed:
        lines.append("failed:")
        for item in failed:
            task = f"task {item.task_id}" if item.task_id else "no task (nothing was sent)"
            lines.append(f"  {item.source} [{task}]: {item.error}")
        if any(item.retry_may_help for item in failed):
            lines.append("run the same command again to retry: finished clips are reused, submitted jobs resumed")
    submitted = [item for item in batch.items if item.state == "cancelled" and item.task_id]
    if submitted:
        lines.append("cancelled after the submit (the job may run on; the same command resumes it):")
        lines += [f"  {item.source} [task {item.task_id}]" for item in submitted]
    return lines
