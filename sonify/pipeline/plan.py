"""A run made ready before any request (`prepare`, its `Plan`): the source, the upload it needs, its windows and
takes, one JobInfo per part, and the price checked against the limit. The run (flow.py) and a Temporal batch's
prepare activity make it the same way."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .. import journal, media, providers
from ..catalog import ModelSpec
from ..errors import ValidationError
from ..loudness_target import Target
from ..media import windows
from ..media.video import check_picture_size
from ..providers.base import Provider
from ..settings import Settings
from ..waiter import Waiter
from . import uploads as uplink
from .several import cut, run_key, take_params
from .types import (
    AudioInput,
    JobInfo,
    ResultBounds,
    RunContext,
    Sent,
    Upload,
    UploadChoice,
)
from .window_feed import WindowFeed


def _checked_voice(spec: ModelSpec, audio: AudioInput | None, settings: Settings) -> AudioInput | None:
    """The voice: required where the model takes one (lipsync), checked (any rate, 1–8 channels) when given."""
    if spec.audio_field and audio is None:
        raise ValidationError("audio", f"{spec.title} needs an audio input")
    if audio is None:
        return None
    voice = AudioInput(media.check_audio(audio.samples, audio.sample_rate), int(audio.sample_rate))
    seconds = voice.samples.shape[1] / voice.sample_rate
    spec.check_length(seconds, settings.max_clip_seconds, "audio")
    spec.check_voice(seconds)
    return voice


@dataclass
class Part:
    """What one remote job is sent: the whole clip, or one window of a long clip (`span`, in frames of the
    picture the model sees), with what its result may be."""

    span: windows.Span | None
    hashes: dict[str, str]
    uploads: dict[str, Upload | UploadChoice]
    bounds: ResultBounds


@dataclass
class Plan:
    """A run, ready for its remote jobs: the source (a file; None for frames the model sees only as a proxy), its
    parts (the whole clip, or its windows, at `fps`), and each take's JobInfo per part (its parameters and cost)."""

    source: Path | None
    clip: media.VideoInfo
    fps: Fraction
    parts: list[Part]
    takes: list[list[JobInfo]]
    source_path: str | None
    run: str | None = None  # several takes: the run's own fingerprint, its drawn seeds' key (takes.run_key)
    loudness: Target | None = None  # where each take's sound is put (run's `loudness`)
    # A long clip from a file: its windows as they are cut. Until window p is, parts[p] has no span and each take's
    # info for it is priced at the longest the window may be (window_feed.py); window() settles both.
    feed: WindowFeed | None = None
    params: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # each take's parameters
    clip_hash: str = ""
    _settling: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def only_job(self) -> tuple[Part, JobInfo]:
        """The one job of a plan of one take for the whole clip (as `prepare(..., one_job=True)` makes): what it
        sends, and its info."""
        (part,), (info,) = self.parts, self.takes[0]
        return part, info

    def window(self, spec: ModelSpec, p: int, waiter: Waiter) -> Part:
        """Part p, its window cut (waiting for it: a long clip from a file), and each take's info for it priced."""
        cut = self.feed.take(p, waiter) if self.feed is not None else None  # waited for unlocked: others go on
        with self._settling:
            if cut is not None and self.parts[p].span is None:
                span, path = cut
                self.parts[p] = _window_part(spec, self.clip_hash, span, path)
                for take, info in zip(self.params, (infos[p] for infos in self.takes)):
                    exact = _info(spec, take, float(span.end - span.start) / float(self.fps))
                    info.params, info.cost_usd_estimate, info.video_seconds = (exact.params, exact.cost_usd_estimate,
                                                                               exact.video_seconds)
            return self.parts[p]


def prepare(spec: ModelSpec, checked: dict[str, Any], video: media.VideoSource, picture_hash: str | None,
            audio: AudioInput | None, client: Provider, ctx: RunContext, *, variations: int = 1,
            one_job: bool = False) -> Plan:
    """The plan of a run of `variations` takes of `spec` (`checked` parameters) on `video` (and `audio`, lipsync's
    voice), its files made in ctx.work. Frames going to a model that sees a proxy are never encoded at full
    resolution: the proxy is made from them (only if it must be uploaded) and the node puts the sound on the frames
    themselves. A clip longer than one job takes is cut into windows here (window_feed.py), each its own upload;
    with `one_job` (a Temporal batch's clip: one take, one job) it is refused instead. The takes' seeds are drawn
    (and journaled) here, once the media is known, before anything is sent."""
    if video.frames is not None:  # before lipsync's frames are encoded
        spec.check_length(float(video.frames.shape[0] / video.fps), ctx.settings.max_clip_seconds, "images")
    hashed = None
    if video.frames is not None and spec.proxy is not None:
        source, clip = None, media.frames_info(video.frames, video.fps)
    else:
        source = Path(media.source_to_file(video, ctx.work))  # lipsync's frames: its full-resolution upload
        with ThreadPoolExecutor(1, thread_name_prefix="sonify-hash") as pool:  # the hash read beside the probe
            hashed = pool.submit(journal.hash_file, source) if picture_hash is None else None
            clip = media.probe(source)
    check_picture_size(clip.width, clip.height, "video")
    media.check_frame_rate(clip.fps, "video")
    spec.check_sides(clip.width, clip.height)
    suffix = Path(video.path).suffix.lower() if video.path else ".mp4"  # frames go as an MP4
    if spec.video_suffixes and suffix not in spec.video_suffixes:
        raise ValidationError("video", f"{spec.title} takes {' or '.join(spec.video_suffixes)} files, got a {suffix or 'nameless'} "
                                       "file: save it as MP4 first")
    if clip.frames < 2:  # as for frames: no motion for a model to follow, and it would still be billed
        raise ValidationError("video", f"needs at least 2 frames, got {clip.frames}")
    seconds = float(clip.duration)
    spec.check_duration(seconds)
    spec.check_length(seconds, ctx.settings.max_clip_seconds)
    hashes = {"video": picture_hash or hashed.result()}
    source_path = str(Path(video.path).resolve()) if video.path else None
    run = run_key(spec, client.http.base_url, checked, variations, hashes["video"]) if variations > 1 else None
    params = take_params(spec, checked, variations, run)
    if spec.output == "audio" and windows.is_long(spec.window, seconds):
        if one_job:
            raise ValidationError("video", f"{spec.title} takes at most {spec.window.longest:g} s in one job, got "
                                           f"{seconds:.3f} s: a longer clip is done in windows by the node, `python "
                                           "-m sonify run` and `batch`, not yet by a Temporal batch")
        if source is not None:  # cut in a thread of its own: each window's job starts as soon as it is cut
            feed = WindowFeed(media.plan_upload(source, spec.proxy, clip), spec.window, ctx.work)
            infos = [[_info(spec, take, length) for length in feed.longest_seconds()] for take in params]
            parts = [Part(None, {}, {}, _window_bounds(spec)) for _ in range(feed.count)]
            feed.start()
            return Plan(source, clip, feed.fps, parts, infos, source_path, run, feed=feed, params=params,
                             clip_hash=hashes["video"])
        fps, pieces = cut(spec, video, ctx)
        parts = [_window_part(spec, hashes["video"], span, path) for span, path in pieces]
        lengths = [float(span.end - span.start) / float(fps) for span, _ in pieces]
        infos = [[_info(spec, take, length) for length in lengths] for take in params]
        return Plan(source, clip, fps, parts, infos, source_path, run)
    infos = [[_info(spec, take, seconds)] for take in params]
    if audio is not None:
        hashes["audio"] = journal.hash_array(audio.samples, audio.sample_rate)
    uploads = {"video": _video_upload(spec, video, source, hashes["video"], infos[0][0].cost_usd_estimate, clip)}
    if audio is not None:
        kind = spec.voice.suffix.lstrip(".")
        uploads["audio"] = (journal.digest_of("upload", hashes["audio"], kind), lambda: _write_voice(spec, audio, ctx.work))
    sent = infos[0][0].params
    voice = audio.samples.shape[1] / audio.sample_rate if audio is not None else 0.0
    longest = max(spec.result_seconds(sent, seconds), voice)  # lipsync may loop the picture to the voice
    bounds = (ResultBounds.expected(longest) if spec.output == "audio"
              else ResultBounds.expected(longest, (clip.width, clip.height), clip.fps))
    return Plan(source, clip, clip.fps, [Part(None, hashes, uploads, bounds)], infos, source_path, run)


def _info(spec: ModelSpec, checked: dict[str, Any], seconds: float) -> JobInfo:
    sent = spec.resolve(checked, seconds)
    cost = spec.price(sent, seconds)
    return JobInfo(spec.provider, spec.model_id, cost_usd_estimate=None if cost is None else round(cost, 6),
                   video_seconds=round(seconds, 6), params=sent)


def _window_part(spec: ModelSpec, clip_hash: str, span: windows.Span, path: Path) -> Part:
    """A window's job: its media is the clip's content and the window's frames (a stable fingerprint, so a
    re-run resumes or reuses each window), its upload the window's proxy file."""
    hashes = {"video": journal.digest_of("window", clip_hash, span.start, span.end)}
    key = journal.digest_of("upload", hashes["video"], repr(spec.proxy))

    def send(client: Provider, run: RunContext) -> Sent:
        return Sent(key, client.upload(path, run.waiter), path.stat().st_size, proxy=True)

    return Part(span, hashes, {"video": UploadChoice((key,), frozenset({key}), send)}, _window_bounds(spec))


def _window_bounds(spec: ModelSpec) -> ResultBounds:
    """A window's job asks for no more than the model's longest (MMAudio: its duration's range). Its sound is
    checked when it arrives, not kept: it is decoded again when its turn to be joined comes."""
    return dataclasses.replace(ResultBounds.expected(spec.window.longest), keep_sound=False)


def _job_meta(spec: ModelSpec, endpoint: str, info: JobInfo, hashes: dict[str, str],
              source_path: str | None) -> journal.JobMeta:
    sent = info.params or {}
    body = spec.request_body(sent)
    return journal.JobMeta(
        provider=spec.provider, model=spec.model_id,
        fingerprint=journal.fingerprint(spec.provider, endpoint, spec.model_id, spec.proxy, body, hashes),
        cacheable=spec.cacheable(sent),
        params=body, cost_usd=info.cost_usd_estimate,
        source_path=source_path,
    )


def file_fingerprint(spec: ModelSpec, params: dict[str, Any], path: Path, settings: Settings) -> str:
    """The journal's fingerprint of a run of `spec` on the file `path` under `settings`, as `prepare` makes it,
    without a key or a request: a Temporal batch names each clip's workflow after it (temporal_batch.py)."""
    checked = spec.validate(params)
    seconds = float(media.probe(path).duration)
    spec.check_duration(seconds)
    info = JobInfo(spec.provider, spec.model_id, params=spec.resolve(checked, seconds))
    source_path = str(Path(path).resolve())
    return _job_meta(spec, providers.endpoint(spec.provider, settings), info, {"video": journal.hash_file(path)}, source_path).fingerprint


def _video_upload(spec: ModelSpec, video: media.VideoSource, source: Path | None, content_hash: str,
                  cost: float | None, clip: media.VideoInfo) -> UploadChoice:
    """Frames: their proxy, made straight from them only if no earlier upload of it can be reused. A file:
    the picture as it is or its proxy, whichever is up sooner (uplink.py); nothing is made or sent when an
    earlier upload of either can be reused. `clip`: the source's probe."""
    if source is not None:
        return uplink.video_choice(source, spec.proxy, content_hash, cost, clip)
    key = journal.digest_of("upload", content_hash, repr(spec.proxy))

    def send(client: Provider, run: RunContext) -> Sent:
        with run.timer("encode"):
            path = Path(media.frames_to_proxy(video.frames, video.fps, spec.proxy, run.work))
        return Sent(key, client.upload(path, run.waiter), path.stat().st_size, proxy=True)

    return UploadChoice((key,), frozenset({key}), send)


def _write_voice(spec: ModelSpec, audio: AudioInput, work: Path) -> Path:
    """The voice as the model takes it (models.Voice): a lossless WAV, or AAC where the file's size is capped."""
    path = work / f"audio{spec.voice.suffix}"
    if spec.voice.suffix == ".wav":
        media.write_wav(audio.samples, audio.sample_rate, path)
    else:
        media.write_audio(audio.samples, audio.sample_rate, path)
    most = spec.voice.max_bytes
    if most is not None and path.stat().st_size > most:
        raise ValidationError("audio", f"{spec.title} takes a voice file of at most {most / 1e6:g} MB; this voice as "
                                       f"{spec.voice.suffix} is {path.stat().st_size / 1e6:.1f} MB: shorten it")
    return path
