"""The quickest upload for a video: its picture as it is, or the proxy.

A proxy (media.prepare_upload) is a small file, but making it costs seconds of decoding; on a fast link
the original is up before the proxy is made, on a slow one the proxy is up long before the original. Which
way is quicker depends on this machine's uplink to the provider and its speed at making proxies, both
measured as uploads and encodes happen and kept in the journal (jobs.UplinkStore):

- measured and clear (one way predicted at least CLEAR times quicker, or the original up within
  NOT_WORTH_SECONDS): that way, without a race. An original sent on that word still watches its own rate:
  once it shows the proxy would clearly win after all (the link got slower), the proxy is started late and
  the race below decides;
- unknown, or close: a race. The original starts at once; once it has gone out for RACE_AFTER with more
  than NOT_WORTH_SECONDS to go, the proxy is encoded in another thread. When the proxy is ready, the
  original is aborted (raised from its body, http.FileBody) and the proxy sent if the proxy has fewer
  bytes than the original still has to hand to the connection; else the original goes on and the proxy is
  dropped. The link's rate cancels out of that comparison: bytes already handed over cross the link
  whatever happens next (http keeps few of them queued unsent), so of two uploads sharing one link the one
  with fewer bytes left ends first. If the original is up first, the encode is stopped.

The choice exists only for a picture a model takes as it is (constant-rate H.264 yuv420p) that the proxy
rule would shrink: a picture that fits is sent unchanged, one that must be converted anyway is converted.
The original goes as its picture alone: the file itself when it is a silent mp4/mov, else its picture
packets copied into a silent mp4. Either file is recorded in the upload cache under its own media key.

Measured: every video upload's rate as its bytes go out (bytes/s per provider endpoint: the whole upload's
when it took at least MEASURE_SECONDS or sent MEASURE_BYTES, or beats the known rate clearly; an aborted
one's over the later three quarters of its watch); every encode's seconds per source megapixel-frame, and
a finished one's bytes per proxy megapixel-frame. Estimates are medians of the newest RECENT; rates older
than UPLINK_MAX_AGE are not used (the machine may be on another network).
"""

from __future__ import annotations

import bisect
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import journal, media
from ..catalog import ProxyRule
from ..errors import Cancelled
from ..providers.base import Provider
from .messages import with_cost
from .types import RunContext, Sent, UploadChoice

log = logging.getLogger("sonify")


CLEAR = 1.5  # one way predicted this many times quicker than the other: taken without a race


RECENT = 3  # estimates are medians of the newest measurements (a change of network shows after two uploads)


UPLINK_MAX_AGE = 6 * 3600.0  # seconds: older upload rates are not used


MEASURE_SECONDS = 0.25  # a whole upload teaches its rate when it took this long...


MEASURE_BYTES = 1 << 20  # ...or sent this many bytes (shorter ones tell the latency more than the link)


RACE_AFTER = 0.05  # seconds the original goes alone before a race's proxy is started (if it has a while to go)


RATE_SECONDS = 0.1  # an upload's rate as it goes is known once it has been watched this long...


LATE_SECONDS = 0.5  # ...and trusted to start a late race after this


NOT_WORTH_SECONDS = 0.3  # an original predicted up within this is sent as it is (no proxy is made that fast)


PARTIAL_FRAMES = 8  # a stopped encode teaches its speed when it got this far


GUESSED_BYTES_PER_MPF = 8000.0  # proxy bytes per proxy megapixel-frame until one is measured: generous


GUESSED_SECONDS_PER_MPF = 0.005  # encode seconds per source megapixel-frame, for a late race only: slow


SWITCH_SLACK = 64 << 10  # bytes the proxy's own requests cost, roughly: it must save more than that


REPORT_EVERY = 0.5  # seconds between progress reports while a video goes out


RACE_NICE = 10  # the racing encode's nice value (see _lower_priority)


STOP_WAIT = 2.0  # seconds to wait for a stopped encode's thread (it stops within a frame)


def uplink_key(client: Provider) -> str:
    """Upload rates belong to a provider endpoint: the emulator's are not WaveSpeed's."""
    return f"{client.name} {client.http.base_url}"


def proxy_key(rule: ProxyRule) -> str:
    return f"{rule.short_side}p{rule.max_fps}"


@dataclass(frozen=True)
class Known:
    """What this machine has measured that bears on one upload (None: not measured)."""

    uplink: float | None  # bytes/s to the provider endpoint
    seconds_per_mpf: float | None  # proxy encode seconds per source megapixel-frame
    bytes_per_mpf: float  # proxy bytes per proxy megapixel-frame (GUESSED_BYTES_PER_MPF until measured)

    @classmethod
    def read(cls, store: journal.UplinkStore, client: Provider, rule: ProxyRule) -> Known:
        rates = store.uplink_rates(uplink_key(client), RECENT, time.time() - UPLINK_MAX_AGE)
        speeds = store.proxy_speeds(proxy_key(rule), RECENT)
        sizes = [b for _, b in speeds if b is not None]
        return cls(_median(rates), _median([s for s, _ in speeds]), _median(sizes) or GUESSED_BYTES_PER_MPF)

    def proxy_seconds(self, plan: media.UploadPlan, uplink: float) -> float:
        """Predicted seconds to make the proxy and send it at `uplink` bytes/s."""
        return ((self.seconds_per_mpf or GUESSED_SECONDS_PER_MPF) * plan.source_megapixel_frames
                + self.bytes_per_mpf * plan.proxy_megapixel_frames / uplink)


def decide(known: Known, plan: media.UploadPlan) -> str:
    """"proxy" or "as is" when the measurements say clearly; else "race"."""
    if known.uplink is None:
        return "race"
    original = plan.info.size_bytes / known.uplink
    if original <= NOT_WORTH_SECONDS:
        return "as is"
    if known.seconds_per_mpf is None:
        return "race"
    proxy = known.proxy_seconds(plan, known.uplink)
    if proxy * CLEAR <= original:
        return "proxy"
    if original * CLEAR <= proxy:
        return "as is"
    return "race"


def video_choice(source: Path, rule: ProxyRule | None, content_hash: str, cost: float | None,
                 info: media.VideoInfo | None = None) -> UploadChoice:
    """The video input of a job: its picture as it is or its proxy, chosen when it is sent (see the module
    docstring); an earlier upload of either is reused. Without a rule (full resolution) there is no choice:
    the file as prepare_upload leaves it. `info`: the source's probe, if the caller made one (not made again)."""
    if rule is None:
        key = journal.digest_of("upload", content_hash, repr(None))
        return UploadChoice((key,), frozenset(), lambda client, run: _VideoUpload(source, None, key, key, cost,
                                                                                   client, run, info).send())
    as_is = journal.digest_of("upload", content_hash, "as is")
    proxy = journal.digest_of("upload", content_hash, repr(rule))
    return UploadChoice((as_is, proxy), frozenset({proxy}),
                        lambda client, run: _VideoUpload(source, rule, as_is, proxy, cost, client, run, info).send())


class _Switch(Exception):
    """Raised from the original's body: the proxy is ready and quicker to send."""


class _Stopped(Exception):
    """Raised in the encode: its proxy is no longer wanted."""


class _VideoUpload:
    """One video input being sent (the choice, the encode, the uploads, what they measured)."""

    def __init__(self, source: Path, rule: ProxyRule | None, as_is_key: str, proxy_key: str, cost: float | None,
                 client: Provider, run: RunContext, info: media.VideoInfo | None = None) -> None:
        self.source, self.rule, self.client, self.run, self.info = source, rule, client, run, info
        self.as_is_key, self.proxy_key, self.cost = as_is_key, proxy_key, cost
        self.store = journal.UplinkStore()
        self.known_uplink: float | None = None  # the estimate the choice was made with

    def send(self) -> Sent:
        with self.run.timer("encode"):
            plan = media.plan_upload(self.source, self.rule, self.info)
        if plan.unchanged is None or self.rule is None:
            return self._without_choice(plan)
        known = Known.read(self.store, self.client, self.rule)
        self.known_uplink = known.uplink
        way = decide(known, plan)
        log.info("upload of %s: %s (uplink %s, proxy %s s/Mpx-frame)", self.source.name, way,
                 _mbps(known.uplink), known.seconds_per_mpf)
        if way == "proxy":
            return self._proxy(plan, {"sent": "proxy", "by": "measurements", "uplink_mbps": _mbps(known.uplink)})
        return _Race(self, plan, known, start_proxy=way == "race").run()

    def _without_choice(self, plan: media.UploadPlan) -> Sent:
        """A picture that fits goes unchanged, one that cannot go as it is is converted."""
        if plan.action == "encode":
            return self._proxy(plan, None)
        with self.run.timer("encode"):
            path, _ = media.make_upload(plan, self.run.work)
        url, size, _ = self.upload(_Meter(Path(path)))
        return Sent(self.as_is_key, url, size)

    def _proxy(self, plan: media.UploadPlan, choice: dict[str, Any] | None) -> Sent:
        with self.run.timer("encode"):
            self.report("making the upload proxy", 0.05)
            start = time.monotonic()
            path, _ = media.make_upload(plan, self.run.work, check=self.run.waiter.check)
            self.learn_proxy(plan, time.monotonic() - start, Path(path).stat().st_size)
        url, size, _ = self.upload(_Meter(Path(path)))
        return Sent(self.proxy_key, url, size, proxy=True, choice=choice)

    def upload(self, meter: _Meter, then: Callable[[int], None] | None = None,
               note: Callable[[], str] = str) -> tuple[str, int, float | None]:
        """Send the meter's file, watched by it (and by `then`, which may abort it), from a worker thread while
        this one shows its progress (with `note()` after it): (URL, bytes, the whole upload's rate if it says
        something about the link, then learned)."""
        shown = [0.0, False]  # when progress was last shown, and whether it had a note

        def watch(sent: int) -> None:
            meter.watch(sent)
            if then is not None:
                then(sent)

        def show() -> None:
            now, extra = time.monotonic(), note()
            # every REPORT_EVERY, and at once when a note comes or goes (a proxy made meanwhile can be quick)
            if now - shown[0] >= REPORT_EVERY or bool(extra) != shown[1]:
                shown[0], shown[1] = now, bool(extra)
                self.report(f"uploading {meter.sent / 1e6:.1f} of {meter.size / 1e6:.1f} MB{extra}",
                            0.05 + 0.04 * meter.sent / max(meter.size, 1))

        show()
        url = self.run.waiter.run(lambda: self.client.upload(meter.path, self.run.waiter, watch=watch),
                                  "sonify-upload", show)
        rate = meter.whole_rate(time.monotonic(), self.known_uplink)
        if rate is not None:
            self.learn_uplink(rate)
        return url, meter.size, rate

    def learn_uplink(self, rate: float) -> None:
        log.debug("uplink to %s: %.1f Mbit/s", self.client.http.base_url, rate * 8e-6)
        self.store.record_uplink(uplink_key(self.client), rate)

    def learn_proxy(self, plan: media.UploadPlan, seconds: float, size: int | None) -> None:
        """A finished encode's seconds and bytes, or a stopped one's seconds for the whole (size None)."""
        if self.rule is not None and plan.source_megapixel_frames > 0 and plan.proxy_megapixel_frames > 0:
            self.store.record_proxy_speed(proxy_key(self.rule), seconds / plan.source_megapixel_frames,
                                          None if size is None else size / plan.proxy_megapixel_frames)

    def report(self, text: str, fraction: float) -> None:
        self.run.report(with_cost(text, self.cost), fraction)


class _Meter:
    """One upload body's progress: the bytes handed to the connection over time (http.FileBody's watch)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.points: list[tuple[float, int]] = []  # (time.monotonic(), bytes handed over)
        self._lock = threading.Lock()  # watched in the upload's thread, read in others

    def watch(self, sent: int) -> None:
        with self._lock:
            if self.points and sent < self.points[-1][1]:  # sent again from the start (a retry)
                self.points.clear()
            self.points.append((time.monotonic(), sent))

    @property
    def sent(self) -> int:
        with self._lock:
            return self.points[-1][1] if self.points else 0

    @property
    def elapsed(self) -> float:
        with self._lock:
            return self.points[-1][0] - self.points[0][0] if self.points else 0.0

    def rate(self) -> float | None:
        """Bytes/s over the later three quarters of the time watched (the first bytes fill the connection's
        buffers faster than the link takes them), once RATE_SECONDS have been watched and three pieces
        went out in that stretch."""
        with self._lock:
            points = list(self.points)
        if not points or points[-1][0] - points[0][0] < RATE_SECONDS:
            return None
        first = bisect.bisect_left(points, (points[0][0] + (points[-1][0] - points[0][0]) / 4,))
        if len(points) - first < 3:
            return None
        (t0, s0), (t1, s1) = points[first], points[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def whole_rate(self, ended: float, known: float | None = None) -> float | None:
        """The whole upload's bytes/s, if it was long or large enough to say something about the link, or
        if it beats the `known` rate clearly: a short upload's rate, held down by the latency, is no more
        than the link's, so the link got faster."""
        with self._lock:
            started = self.points[0][0] if self.points else None
        if started is None or ended <= started:
            return None
        seconds = ended - started
        rate = self.size / seconds
        telling = seconds >= MEASURE_SECONDS or self.size >= MEASURE_BYTES
        return rate if telling or (known is not None and rate > known * CLEAR) else None


class _Race:
    """The original going out while the proxy is made (or only once the original shows itself slow)."""

    def __init__(self, upload: _VideoUpload, plan: media.UploadPlan, known: Known, *, start_proxy: bool) -> None:
        self.up, self.plan, self.known = upload, plan, known
        self.maker = _ProxyMaker(upload, plan)
        self.how = "race" if start_proxy else "measurements"
        self.meter: _Meter | None = None
        self.settled = False  # the proxy was ready (or failed) and the original was kept or left

    def run(self) -> Sent:
        up = self.up
        try:
            with up.run.timer("encode"):
                path, _ = media.unchanged_upload(self.plan, up.run.work)  # the file itself, or a silent copy
            self.meter = _Meter(Path(path))
            try:
                url, size, rate = up.upload(self.meter, self.watch, self._note)
            except _Switch:
                return self._switch()
            choice = {"sent": "as is", "by": self.how, "uplink_mbps": _mbps(rate or self.meter.rate())}
            return Sent(up.as_is_key, url, size, choice=choice)
        finally:
            self.maker.stop()

    def watch(self, sent: int) -> None:
        """Called in the upload's thread as the original's bytes go out: switch, keep, or start the proxy."""
        maker, left = self.maker, self.meter.size - sent
        if self.settled:
            return
        if maker.ready:
            self.settled = True
            if maker.size + SWITCH_SLACK < left:
                raise _Switch
            log.info("the proxy is ready but the original is nearly up: keeping the original")
        elif maker.failed:
            self.settled = True
        elif not maker.started:
            self._start_proxy(left)

    def _start_proxy(self, left: int) -> None:
        """A race starts its proxy once the original has gone out for RACE_AFTER and still has more than
        NOT_WORTH_SECONDS to go (at loopback speed it is up before an encode could even start); an original
        sent on the measurements' word starts it only once its own rate shows the proxy would clearly win."""
        elapsed = self.meter.elapsed
        if self.how == "race" and elapsed >= RACE_AFTER:
            pace = self.meter.rate() or self.meter.sent / elapsed  # early: as fast as the buffers fill
            if pace <= 0 or left / pace > NOT_WORTH_SECONDS:
                self.maker.start()
        elif self.how == "measurements" and elapsed >= LATE_SECONDS:
            rate = self.meter.rate()
            if rate is not None and self.known.proxy_seconds(self.plan, rate) * CLEAR < left / rate:
                log.info("the original goes out at %s Mbit/s only: making the proxy after all", _mbps(rate))
                self.how = "late race"
                self.maker.start()

    def _switch(self) -> Sent:
        up, maker = self.up, self.maker
        rate = self.meter.rate()
        if rate is not None:
            up.learn_uplink(rate)
        up.run.timer.add("encode", maker.seconds)  # the proxy's making is what its upload waited for
        log.info("the proxy is ready first: sending it instead of the original's last %.1f MB",
                 (self.meter.size - self.meter.sent) / 1e6)
        url, size, _ = up.upload(_Meter(maker.path))
        return Sent(up.proxy_key, url, size, proxy=True, choice={"sent": "proxy", "by": self.how,
                                                                  "uplink_mbps": _mbps(rate)})

    def _note(self) -> str:
        if self.maker.started and not self.settled:
            return f" · making a proxy meanwhile ({self.maker.progress:.0%})"
        return ""


class _ProxyMaker:
    """The proxy encoded in its own thread; stoppable between frames."""

    def __init__(self, upload: _VideoUpload, plan: media.UploadPlan) -> None:
        self.up, self.plan = upload, plan
        self.path: Path | None = None
        self.size = 0
        self.seconds = 0.0
        self.frames = 0  # encoded so far
        self._thread = threading.Thread(target=self._make, name="sonify-proxy", daemon=True)
        self._stop = threading.Event()
        self._done = threading.Event()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def ready(self) -> bool:
        return self._done.is_set() and self.path is not None

    @property
    def failed(self) -> bool:
        return self._done.is_set() and self.path is None

    @property
    def progress(self) -> float:
        return min(1.0, self.frames / self.plan.proxy_frames)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the encode between two frames, if it still runs, and wait for its thread."""
        self._stop.set()
        if self.started:
            self._thread.join(STOP_WAIT)
            if self._thread.is_alive():
                log.warning("the upload proxy's encode did not stop within %g s", STOP_WAIT)

    def _check(self) -> None:
        self.up.run.waiter.check()
        if self._stop.is_set():
            raise _Stopped
        self.frames += 1

    def _make(self) -> None:
        _lower_priority()
        start = time.monotonic()
        try:
            path, _ = media.make_upload(self.plan, self.up.run.work, check=self._check)
        except _Stopped:
            if self.frames >= PARTIAL_FRAMES:  # the time it would have taken, at the pace it went
                self.up.learn_proxy(self.plan, (time.monotonic() - start) / self.progress, None)
        except Cancelled:
            pass
        except Exception as exc:  # noqa: BLE001 - no proxy then: the original goes on
            log.warning("the upload proxy could not be made (%s); the original goes on", exc)
        else:
            self.seconds = time.monotonic() - start
            self.path, self.size = Path(path), Path(path).stat().st_size
            self._done.set()  # ready for the race before the journal hears of it
            self.up.learn_proxy(self.plan, self.seconds, self.size)
        finally:
            self._done.set()


def _lower_priority() -> None:
    """This thread, and the codec threads it starts (they inherit it), yield the CPU to the upload it races
    and to everything else: the encode is a bet. Linux only, where a thread has its own nice value."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RACE_NICE)
        except OSError:
            pass


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _mbps(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 8e-6, 1)
