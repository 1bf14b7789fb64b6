"""A clip longer than one job takes: its windows' media before the jobs, and the take's info after.

The model's proxy of the whole clip is made once (a frames source: the frames themselves), its shot cuts
found on it (a luma-histogram jump: windows.find_cuts), the windows planned (windows.plan) and each cut
out of it as its own small file, in one decoding pass. The pipeline runs one remote job per window and
joins their sounds (windows.join).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from . import media, windows
from .models import ModelSpec
from .remote_job import JobInfo, RunContext


def cut(spec: ModelSpec, video: media.VideoSource, source: Path | None,
        ctx: RunContext) -> tuple[Fraction, list[tuple[windows.Span, Path]]]:
    """The rate the windows are counted in, and each window with its file to upload."""
    with ctx.timer("encode"):
        if source is None:  # frames: the cuts on the frames, each window's proxy straight from them
            fps = video.fps
            spans = windows.plan(video.frames.shape[0], fps, spec.window,
                                 windows.find_cuts(media.frames_luma_histograms(video.frames)))
            files = [media.frames_to_proxy(video.frames[s.start:s.end], fps, spec.proxy, ctx.work) for s in spans]
        else:
            proxy, _ = media.prepare_upload(source, spec.proxy, ctx.work, check=ctx.waiter.check)
            histograms, fps = media.luma_histograms(proxy)
            spans = windows.plan(len(histograms), fps, spec.window, windows.find_cuts(histograms))
            files = media.cut_windows(proxy, [(s.start, s.end) for s in spans], ctx.work, check=ctx.waiter.check)
    ctx.report(f"{len(spans)} windows of the clip ready", 0.04)
    return fps, [(span, Path(path)) for span, path in zip(spans, files)]


def take_info(infos: list[JobInfo], spans: list[windows.Span], fps: Fraction, seconds: Fraction) -> dict[str, Any]:
    """A long clip's take: the first window's info, for the whole clip (its length, the windows' summed
    cost) with each window's span, cuts, task id, status, cost and seconds."""
    listed = []
    for number, (info, span) in enumerate(zip(infos, spans), 1):
        start, end = span.seconds(fps)
        listed.append({"window": number, "start": round(float(start), 6), "end": round(float(end), 6),
                       "cut_before": span.cut_before, "cut_after": span.cut_after, "task_id": info.task_id,
                       "status": info.status, "cost_usd_estimate": info.cost_usd_estimate, "cached": info.cached,
                       "seconds": info.seconds})
    costs = [info.cost_usd_estimate for info in infos]
    first = infos[0].as_dict()
    return {**first, "video_seconds": round(float(seconds), 6), "audio_copied": False,
            "cost_usd_estimate": None if None in costs else round(sum(costs), 6),
            "cached": all(info.cached for info in infos), "windows": listed}
