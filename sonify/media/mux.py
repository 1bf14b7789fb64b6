"""Sound onto a picture without re-encoding the picture: mux, copy_mux (packets as they are), rewrap."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import ValidationError
from .audio import _LOSSLESS_FORMATS, _add_audio, _as_channels, _audio_packets, _for_aac, aac_rate
from .video import PathLike, _open_input

LOSSLESS_CONTAINERS = {"pcm_f32le": (".mov", ".mkv"), "flac": (".mkv",)}
log = logging.getLogger("sonify")


# ---------------------------------------------------------------- mux


def mux(
    video_path: PathLike,
    audio: np.ndarray,
    sample_rate: int,
    out_path: PathLike,
    *,
    metadata: dict[str, str] | None = None,
    codec: str = "aac",
) -> str:
    """The picture of video_path, packets copied unchanged, with `audio` as its only sound (from t = 0): AAC at
    SONIFY_AAC_KBPS a channel, or lossless (`codec` pcm_f32le, flac: see check_lossless). Old audio and other
    streams are dropped. The format follows out_path (mp4 unless .mov/.mkv)."""
    audio = _as_channels(audio)
    if codec == "aac":
        audio, sample_rate = _for_aac(audio, sample_rate)
    return mux_blocks(video_path, [audio], audio.shape[0], sample_rate, out_path, metadata=metadata, codec=codec)


def mux_blocks(video_path: PathLike, blocks: Iterable[np.ndarray], channels: int, sample_rate: int,
               out_path: PathLike, *, metadata: dict[str, str] | None = None, codec: str = "aac") -> str:
    """mux() of a sound given as float32 blocks [C, n] in order (for AAC at a rate it takes: aac_rate): each
    block is encoded as it comes, so the sound is never held whole (a long clip's, read back from its file)."""
    if codec == "aac":
        if sample_rate != aac_rate(sample_rate):
            raise ValueError(f"AAC does not take {sample_rate} Hz: resample to {aac_rate(sample_rate)} Hz first")
    else:
        check_lossless(codec, Path(out_path).suffix.lower())
    _remux(video_path, out_path, (blocks, channels, sample_rate), metadata, codec)
    return os.fspath(out_path)


def check_lossless(codec: str, suffix: str, name: str = "audio codec") -> None:
    """A lossless sound the file named by `suffix` can carry, or ValidationError(name)."""
    if codec not in _LOSSLESS_FORMATS:
        raise ValidationError(name, f"must be one of {', '.join(_LOSSLESS_FORMATS)}, got {codec!r}")
    if suffix not in LOSSLESS_CONTAINERS[codec]:
        raise ValidationError(name, f"{codec} goes in a {' or '.join(LOSSLESS_CONTAINERS[codec])} file, not {suffix or 'this'} "
                                    "(FFmpeg's QuickTime writer takes no FLAC)")


def _remux(
    video_path: PathLike,
    out_path: PathLike,
    sound: tuple[Iterable[np.ndarray], int, int] | None,
    metadata: dict[str, str] | None = None,
    codec: str = "aac",
) -> None:
    """Copy the first picture stream into out_path, with `sound` (its blocks, channels, rate) encoded (`codec`)
    if given."""
    suffix = Path(out_path).suffix.lower()
    # use_metadata_tags: keys of any name are kept (ComfyUI's SaveVideo stores the workflow as "prompt" and
    # "workflow"), not only the ones the MP4 format names
    flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
    options = {"movflags": flags} if suffix in ("", ".mp4", ".mov", ".m4v") else {}
    with _open_input(video_path, "video") as src:
        if not src.streams.video:
            raise ValidationError("video", f"{Path(video_path).name} has no video stream")
        vin = src.streams.video[0]
        with av.open(os.fspath(out_path), "w", format=None if suffix else "mp4", options=options) as dst:
            dst.metadata.update(metadata or {})
            vout = dst.add_stream_from_template(vin)
            packets: Iterator[av.Packet] = iter(())
            if sound is not None:
                blocks, channels, rate = sound
                stream = _add_audio(dst, codec, rate, channels, lossless=codec != "aac")
                packets = _audio_packets(stream, blocks, rate)
            _interleave(dst, src.demux(vin), vout, packets)


def _interleave(
    dst: av.container.OutputContainer, video: Iterator[av.Packet], vout: av.VideoStream, audio: Iterator[av.Packet]
) -> None:
    """Write copied picture packets and new audio packets in time order (good interleaving for players
    that stream the file)."""
    pending = next(audio, None)
    for packet in video:
        if packet.dts is None or packet.size == 0:
            continue
        t = packet.dts * packet.time_base
        while pending is not None and pending.pts is not None and pending.pts * pending.time_base <= t:
            dst.mux(pending)
            pending = next(audio, None)
        packet.stream = vout
        dst.mux(packet)
    while pending is not None:
        dst.mux(pending)
        pending = next(audio, None)


def copy_mux(video_path: PathLike, audio_path: PathLike, out_path: PathLike, seconds: Fraction,
             metadata: dict[str, str] | None = None) -> bool:
    """The picture of video_path with the AAC sound of audio_path, both copied packet for packet (no
    re-encode), the sound cut at `seconds`: packets from t = 0 on (priming kept), the last one's duration
    shortened so that the mp4 edit list (in samples) ends the sound with the picture. Sample 0 is t = 0 of
    audio_path's timeline, as decode_audio places it. Returns False and writes nothing when the sound is
    not AAC or ends before `seconds`: padding needs an encoder (use mux with fitted samples). metadata:
    container tags, as mux writes them."""
    with _open_input(audio_path, "audio") as asrc:
        if not asrc.streams.audio or asrc.streams.audio[0].codec_context.name != "aac":
            return False
        ain = asrc.streams.audio[0]
        shift = round(Fraction(max(0, asrc.start_time or 0), av.time_base) / ain.time_base)
        end = round(Fraction(seconds) / ain.time_base)
        packets = [p for p in asrc.demux(ain) if p.size and p.pts is not None and p.pts - shift < end]
        if not packets or max(p.pts + (p.duration or 0) for p in packets) - shift < end:
            return False
        suffix = Path(out_path).suffix.lower()
        options = {}
        if suffix in ("", ".mp4", ".mov", ".m4v"):  # edit lists counted in samples: the cut is exact
            flags = "+faststart+use_metadata_tags" if metadata else "+faststart"  # as _remux writes them
            options = {"movflags": flags, "movie_timescale": str(ain.codec_context.sample_rate)}
        with _open_input(video_path, "video") as vsrc, av.open(
            os.fspath(out_path), "w", format=None if suffix else "mp4", options=options
        ) as dst:
            dst.metadata.update(metadata or {})
            vin = vsrc.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            aout = dst.add_stream_from_template(ain)
            _interleave(dst, vsrc.demux(vin), vout, _cut_packets(packets, aout, shift, end))
    return True


def rewrap(path: PathLike, out_path: PathLike, metadata: dict[str, str] | None = None) -> str:
    """The same picture and sound (the first stream of each) in the container out_path's suffix names,
    packets copied unchanged; metadata: container tags, as mux writes them."""
    suffix = Path(out_path).suffix.lower()
    flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
    options = {"movflags": flags} if suffix in (".mp4", ".mov") else {}
    with _open_input(path, "video") as src, av.open(os.fspath(out_path), "w", options=options) as dst:
        dst.metadata.update(metadata or {})
        streams = [s[0] for s in (src.streams.video, src.streams.audio) if s]
        outs = {stream.index: dst.add_stream_from_template(stream) for stream in streams}
        for packet in src.demux(streams):
            if packet.dts is None or packet.size == 0:
                continue
            packet.stream = outs[packet.stream.index]
            dst.mux(packet)
    return os.fspath(out_path)


def copy_tagged(path: PathLike, out_path: PathLike, metadata: dict[str, str]) -> str:
    """A video made elsewhere (a provider's) as out_path with these container tags: its packets copied into a new
    container (rewrap). One that container cannot take is copied byte for byte, untagged, rather than lost."""
    try:
        return rewrap(path, out_path, metadata)
    except (av.error.FFmpegError, ValidationError) as exc:
        log.warning("%s could not be rewrapped to carry its tags (%s); copied as it is", Path(path).name, exc)
        shutil.copyfile(path, out_path)
        return os.fspath(out_path)


def _cut_packets(packets: list[av.Packet], stream: av.AudioStream, shift: int, end: int) -> Iterator[av.Packet]:
    """The packets moved `shift` ticks earlier, onto `stream`, the last one ending at `end`."""
    for packet in packets:
        packet.pts -= shift
        packet.dts = packet.pts if packet.dts is None else packet.dts - shift
        if packet.pts + packet.duration > end:
            packet.duration = end - packet.pts
        packet.stream = stream
        yield packet
