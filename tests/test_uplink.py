"""The quickest upload for a file (sonify/uplink.py), against the emulator's uplink setting: a fast link gets
the picture as it is, a slow one the proxy (raced the first time, decided from the journal's measurements
after), a link that got slower starts the proxy late, Cancel stops the race, and the upload cache keeps
the two files apart. Small grainy clips (megabytes, like footage) and low rates show each regime in a
second or two."""

from __future__ import annotations

import filecmp
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import pytest
import requests
from clips import video_packets, write_clip
from pack import ROOT

from sonify import journal as jobs
from sonify import media, pipeline, settings
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL, ProxyRule
from sonify.errors import Cancelled
from sonify.pipeline import uploads
from sonify.providers import client
from sonify.waiter import Waiter
from sonify_devtools.demo import DEMO_KEY
from sonify_devtools.emulator import Emulator

PUT = r"^/(storage/put/|files/upload$)"  # WaveSpeed's ticket PUT, fal's CDN upload (both on the files origin)
SLOW = 16.0  # Mbit/s: the 8 MB clip takes 4 s as it is, its proxy a fraction of that


def grainy(path: Path, flash: int = 6) -> Path:
    """3 s of 960x540 at 24 fps with grain: about 8 MB (too big for the v2a proxy rule's 480 px)."""
    return write_clip(path, 72, Fraction(24), 960, 540, flash_at=(flash,), grain=16)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    """Two such clips (other files, other content hashes), written once for the module."""
    folder = tmp_path_factory.mktemp("grainy")
    return grainy(folder / "clip.mp4"), grainy(folder / "other.mp4", flash=9)


def run(source: Path, tmp_path: Path, spec=MMAUDIO_V2, **kwargs) -> pipeline.Result:
    params = {**({"prompt": "rain"} if spec is MMAUDIO_V2 else {}), **kwargs.pop("params", {})}
    return pipeline.run(spec, params, media.VideoSource(path=str(source)), out_dir=tmp_path / "out", **kwargs)


def sent_file(emulator: Emulator, result: pipeline.Result, spec=MMAUDIO_V2) -> Path:
    """The file the emulator got as the task's video."""
    return emulator.storage.resolve(emulator.tasks.get(result.info["task_id"]).media[spec.video_field])


def puts(emulator: Emulator, since: int = 0) -> list[tuple[int | None, int]]:
    """(status, declared bytes) of every upload body the emulator answered, from request `since` on."""
    return [(r.status, int(r.headers.get("Content-Length", 0))) for r in emulator.requests[since:]
            if r.method in ("PUT", "POST") and re.search(PUT, r.path)]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Bounded polling (not a fixed sleep): returns as soon as the condition holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def measured(spec=MMAUDIO_V2) -> tuple[list[float], list[tuple[float, float | None]]]:
    """The journal's upload rates for the spec's provider endpoint and its proxy speeds."""
    store = jobs.UplinkStore()
    return (store.uplink_rates(uploads.uplink_key(client(spec.provider, settings.current())), 20, 0.0),
            store.proxy_speeds(uploads.proxy_key(spec.proxy), 20))


def no_proxy_thread() -> bool:
    return not any(t.name == "sonify-proxy" and t.is_alive() for t in threading.enumerate())


def test_a_fast_link_gets_the_picture_as_it_is(emulator, wavespeed_env, tmp_path, clips):
    source, other = clips

    result = run(source, tmp_path)

    info = result.info
    assert filecmp.cmp(sent_file(emulator, result), source, shallow=False)  # byte for byte at the provider
    assert not info["proxy"] and info["uploaded_bytes"] == source.stat().st_size
    assert info["upload_choice"]["sent"] == "as is" and info["upload_choice"]["by"] == "race"
    assert puts(emulator) == [(200, source.stat().st_size)] and no_proxy_thread()
    rates, _ = measured()
    assert len(rates) == 1 and rates[0] * 8e-6 > 100  # loopback: far above 100 Mbit/s

    again = run(other, tmp_path)  # another file: decided from the journal
    assert again.info["upload_choice"]["by"] == "measurements" and not again.info["proxy"]


@pytest.mark.parametrize("spec", [MMAUDIO_V2, THINKSOUND_FAL], ids=lambda s: s.provider)
def test_a_slow_link_gets_the_proxy_raced_then_decided_from_the_journal(request, emulator, tmp_path, clips, spec):
    request.getfixturevalue("fal_env" if spec.provider == "fal" else "wavespeed_env")
    emulator.uplink_mbps = SLOW
    source, other = clips

    first = run(source, tmp_path, spec)

    proxy = sent_file(emulator, first, spec)
    shape = media.probe(proxy)
    assert first.info["proxy"] and first.info["upload_choice"] == {"sent": "proxy", "by": "race",
                                                                   "uplink_mbps": pytest.approx(SLOW, rel=0.25)}
    assert (shape.width, shape.height, shape.frames) == (854, 480, 72)
    wait_until(lambda: len(puts(emulator)) == 2)  # the aborted original is answered once its bytes stop coming
    assert sorted(puts(emulator)) == [(200, proxy.stat().st_size), (400, source.stat().st_size)]
    rates, speeds = measured(spec)
    assert len(rates) >= 1 and all(SLOW * 0.5 < r * 8e-6 < SLOW * 1.5 for r in rates)
    assert len(speeds) == 1 and speeds[0][0] > 0 and speeds[0][1] > 0  # seconds and bytes per megapixel-frame

    since = len(emulator.requests)
    second = run(other, tmp_path, spec)  # no race: the proxy only
    assert second.info["upload_choice"]["by"] == "measurements" and second.info["proxy"]
    assert puts(emulator, since) == [(200, sent_file(emulator, second, spec).stat().st_size)]
    assert no_proxy_thread()


def test_a_link_that_got_slower_starts_the_proxy_late(emulator, wavespeed_env, tmp_path, clips):
    fast, slow = clips
    run(fast, tmp_path)  # learns a fast uplink
    emulator.uplink_mbps = SLOW

    result = run(slow, tmp_path)

    assert result.info["proxy"] and result.info["upload_choice"]["by"] == "late race"
    assert media.probe(sent_file(emulator, result)).height == 480


def test_cancel_during_the_race_stops_the_upload_and_the_encode_at_once(emulator, wavespeed_env, tmp_path, clips):
    emulator.uplink_mbps = 2.0  # the original would take 30 s
    source, _ = clips
    pressed: list[float] = []

    def on_progress(text: str, fraction: float | None) -> None:
        if "making a proxy meanwhile" in text and not pressed:
            pressed.append(time.monotonic())

    with pytest.raises(Cancelled):
        run(source, tmp_path, on_progress=on_progress, is_cancelled=lambda: bool(pressed))

    assert pressed and time.monotonic() - pressed[0] < 1.0
    assert no_proxy_thread() and emulator.submits() == 0
    assert not [p for p in emulator.storage.root.glob("files/*/*") if not p.name.startswith(".partial-")]  # none whole
    journal = jobs.Journal(Path(wavespeed_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)
    assert journal.recent() == []  # the claim is gone: nothing was submitted


def test_the_upload_cache_keeps_the_picture_and_the_proxy_apart(emulator, wavespeed_env, tmp_path, clips):
    source, other = clips
    as_is = run(source, tmp_path)  # fast: the picture as it is
    emulator.uplink_mbps = SLOW

    reused = run(source, tmp_path, params={"prompt": "hail"})  # same content: its upload is reused, as what it was

    assert reused.info["uploads_reused"] == 1 and reused.info["uploaded_bytes"] == 0 and not reused.info["proxy"]
    assert sent_file(emulator, reused) == sent_file(emulator, as_is)
    proxied = run(other, tmp_path)
    again = run(other, tmp_path, params={"prompt": "hail"})
    assert proxied.info["proxy"] and again.info["proxy"] and again.info["uploads_reused"] == 1
    assert sent_file(emulator, again) == sent_file(emulator, proxied) != other


def test_a_picture_with_sound_goes_as_its_picture_alone(emulator, wavespeed_env, tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 960, 540, grain=16, with_audio=True)

    result = run(source, tmp_path)

    sent = sent_file(emulator, result)
    assert result.info["upload_choice"]["sent"] == "as is" and not result.info["proxy"]
    assert not media.probe(sent).has_audio and video_packets(sent) == video_packets(source)


# ---------------------------------------------------------------- the pieces


def test_plan_upload_says_what_prepare_upload_does(tmp_path):
    rule = ProxyRule(short_side=480, max_fps=30)
    big = write_clip(tmp_path / "big.mp4", 12, Fraction(24), 960, 540)
    small = write_clip(tmp_path / "small.mp4", 12, Fraction(24), 64, 48)
    voiced = write_clip(tmp_path / "voiced.mp4", 12, Fraction(24), 64, 48, with_audio=True)

    plans = {p.name: media.plan_upload(p, rule) for p in (big, small, voiced)}

    assert [(plan.action, plan.unchanged) for plan in plans.values()] == [
        ("encode", "as is"), ("as is", None), ("copy", None)]
    assert plans["big.mp4"].proxy_frames == 12
    assert plans["big.mp4"].proxy_megapixel_frames == pytest.approx(854 * 480 * 12 / 1e6)
    assert media.unchanged_upload(plans["big.mp4"], tmp_path) == (str(big), False)
    with pytest.raises(ValueError, match="re-encoded"):
        media.unchanged_upload(plans["small.mp4"], tmp_path)


def test_an_encode_stops_between_frames_and_leaves_nothing(tmp_path):
    source = write_clip(tmp_path / "big.mp4", 48, Fraction(24), 960, 540)
    work = tmp_path / "work"
    seen: list[int] = []

    class Enough(Exception):
        pass

    def check() -> None:
        seen.append(1)
        if len(seen) == 5:
            raise Enough

    with pytest.raises(Enough):
        media.prepare_upload(source, MMAUDIO_V2.proxy, work, check=check)
    assert len(seen) == 5 and list(work.iterdir()) == []


def test_the_model_sees_the_proxy_no_worse_than_before(tmp_path):
    """At the models' own input size (384 px, squashed), the proxy is as close to the source as the
    earlier encoder settings (veryfast crf 26) made it."""
    np = pytest.importorskip("numpy")
    source = write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 960, 540, flash_at=(6,), grain=24)
    rule = MMAUDIO_V2.proxy
    info = media.probe(source)
    proxy, _ = media.prepare_upload(source, rule, tmp_path)
    before = str(tmp_path / "before.mp4")
    media._encode_proxy(source, info, rule, before, info.fps, {"preset": "veryfast", "crf": "26"})

    def seen(path) -> np.ndarray:
        frames, _ = media.decode_frames(path)
        return np.stack([_squash(f) for f in frames])

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(1 / np.mean((a - b) ** 2)))

    reference = seen(source)
    assert psnr(seen(proxy), reference) >= psnr(seen(before), reference) - 0.1


def _squash(frame):
    """A frame as a model looks at it: 384x384, area-averaged (rows and columns binned)."""
    import numpy as np

    h, w, _ = frame.shape
    rows = np.linspace(0, h, 385).astype(int)
    cols = np.linspace(0, w, 385).astype(int)
    binned = np.add.reduceat(np.add.reduceat(frame, rows[:-1], axis=0), cols[:-1], axis=1)
    return binned / np.outer(np.diff(rows), np.diff(cols))[..., None]


# ---------------------------------------------------------------- the emulator's uplink


@pytest.mark.parametrize("route", ["ticket PUT", "legacy multipart", "fal CDN", "fal storage PUT"])
def test_the_emulator_reads_every_upload_no_faster_than_its_uplink(emulator, wavespeed_env, fal_env, tmp_path, route):
    body = tmp_path / "noise.mp4"
    body.write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    emulator.uplink_mbps = 4.0  # 0.5 MB/s: at least 0.52 s for the body
    if route == "legacy multipart":
        emulator.inject("POST", r"^/api/v3/media/uploads$", 404)  # no ticket route: the client falls back
    if route == "fal storage PUT":
        emulator.inject("POST", r"^/files/upload$", 500)  # the CDN fails: fal's storage upload instead
    provider = client("fal" if route.startswith("fal") else "wavespeed", settings.current())
    started = time.monotonic()

    url = provider.upload(body, Waiter())

    assert time.monotonic() - started >= 0.9 * body.stat().st_size / 0.5e6  # no faster (lower bound only)
    assert requests.get(url, timeout=30).content == body.read_bytes()


def test_the_emulator_command_takes_an_uplink_setting(tmp_path):
    body = bytes(100 * 1024)
    command = subprocess.Popen([sys.executable, "-m", "sonify", "emulator", "--port", "0", "--uplink-mbps", "2"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = re.search(r"API (http://\S+),", command.stdout.readline())[1]
        ticket = requests.post(f"{url}/api/v3/media/uploads", json={"filename": "a.mp4", "size": len(body)},
                               headers={"Authorization": f"Bearer {DEMO_KEY}"}, timeout=30).json()["data"]["upload"]
        started = time.monotonic()
        assert requests.put(ticket["url"], data=body, headers=ticket["headers"], timeout=30).status_code == 200
        assert time.monotonic() - started >= 0.9 * len(body) / 0.25e6  # 2 Mbit/s: 0.25 MB/s
    finally:
        command.terminate()
        command.wait(10)
    assert subprocess.run([sys.executable, "-m", "sonify", "emulator", "--uplink-mbps", "0"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          check=False).returncode == 2


def test_measurements_keep_the_newest_and_an_older_journal_gets_their_tables(tmp_path):
    path = tmp_path / jobs.JOURNAL_FILE
    journal = jobs.Journal(path)
    for i in range(jobs.MEASUREMENTS_KEPT + 5):
        journal.record_uplink("a", float(i))
    journal.record_proxy_speed("p", 0.002, None)  # a stopped encode: its speed, no size
    assert journal.uplink_rates("a", 3, 0.0) == [24.0, 23.0, 22.0]  # the newest first
    assert journal.uplink_rates("a", 3, time.time() + 1) == []  # none measured after that
    assert journal.proxy_speeds("p", 5) == [(0.002, None)]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM uplinks").fetchone() == (jobs.MEASUREMENTS_KEPT,)
        db.execute("DROP TABLE uplinks")  # as version 2 left it
        db.execute("DROP TABLE proxy_speeds")
        db.execute("PRAGMA user_version = 2")
    again = jobs.Journal(path)
    again.record_uplink("b", 1e6)
    assert again.uplink_rates("b", 3, 0.0) == [1e6] and again.proxy_speeds("p", 5) == []


def test_a_file_is_probed_once_on_its_way_to_the_provider(emulator, wavespeed_env, clip_path, tmp_path, monkeypatch):
    """The look at the source before its upload is one probe: the plan of its upload reads what that probe found
    (its container, whether its rate is constant) rather than opening the file again."""
    opened: list[str] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(clip_path)), out_dir=tmp_path / "out")
    assert opened.count(str(clip_path)) == 2  # its probe; then the mux that copies its picture packets
