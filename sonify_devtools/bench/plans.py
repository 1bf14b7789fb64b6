"""The benchmark's plans (quick / default / full) and its command-line options. Light to import: the
command line reads it to build its parser."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

SIZES = {"90p": (160, 90), "240p": (320, 240), "480p": (854, 480), "wan": (832, 480), "1080p": (1920, 1080)}


@dataclass(frozen=True)
class ClipSpec:
    seconds: int
    size: str  # a key of SIZES
    fps: int
    bitrate: str | None = None  # None: a generous source (x264 ultrafast crf 18); "6500k": a camera's file at that rate
    extra_frames: int = 0  # Wan-class video models emit 4k + 1 frames: 81 for 5 s at 16 fps

    @property
    def name(self) -> str:
        extra = f"+{self.extra_frames}f" if self.extra_frames else ""
        return f"{self.seconds}s-{self.size}{self.fps}{extra}" + (f"-{self.bitrate}" if self.bitrate else "")

    @property
    def frames(self) -> int:
        return self.seconds * self.fps + self.extra_frames


@dataclass(frozen=True)
class Plan:
    clips: tuple[ClipSpec, ...]  # each through MMAudio in its own process; 1080p ones with a reference encode
    model_seconds: float  # model time of those jobs
    lipsync: tuple[ClipSpec, ...]
    detection_clip: ClipSpec
    fal_seconds: tuple[float, ...]
    wavespeed_seconds: tuple[float, ...]
    batch_jobs: int
    batch_concurrency: int
    batch_seconds: float
    batch_command: bool
    startup_runs: int
    uplink_clip: ClipSpec  # Sonify against the naive upload (the original as it is) on this clip...
    uplinks: tuple[float | None, ...]  # ...at these emulated uplinks (Mbit/s; None: loopback)
    frames_clips: tuple[ClipSpec, ...]  # frames from a video node, Sonify against the naive way, at `uplinks`
    two_nodes_seconds: float  # model time of the two-nodes case (MMAudio and Kling on one clip)
    long_clip: ClipSpec  # through MMAudio in windows: at once within 4 slots, against one after another
    memory_minutes: tuple[int, ...]  # long clips of these many minutes (small: 160×90 at 12 fps): peak memory of each


def _clips(seconds: tuple[int, ...]) -> tuple[ClipSpec, ...]:
    return tuple(ClipSpec(s, size, fps) for s in seconds for size in ("480p", "1080p") for fps in (24, 30))


CAMERA_CLIP = ClipSpec(10, "1080p", 30, "6500k")  # 10 s of 1080p30 as a camera writes it: about 8 MB
UPLINKS = (None, 100.0, 20.0)
FRAMES_CLIPS = (ClipSpec(10, "1080p", 30), ClipSpec(5, "wan", 16, extra_frames=1))  # 7.5 GB and 0.4 GB as IMAGE
TWO_NODES_CLIP = ClipSpec(4, "240p", 24)  # Kling takes 3 to 20 s
LONG_CLIP = ClipSpec(120, "1080p", 30)  # MMAudio: five windows of about 24 s
MEMORY_SIZE, MEMORY_FPS = "90p", 12  # the memory figure's clips: cheap to make, cut and encode

PLANS = {
    "quick": Plan(clips=(ClipSpec(1, "480p", 24), ClipSpec(1, "1080p", 24)), model_seconds=0.2,
                  lipsync=(ClipSpec(1, "240p", 24),), detection_clip=ClipSpec(1, "240p", 24), fal_seconds=(0.3,),
                  wavespeed_seconds=(0.3,), batch_jobs=4, batch_concurrency=2, batch_seconds=0.3,
                  batch_command=False, startup_runs=1, uplink_clip=ClipSpec(1, "1080p", 30, "6500k"),
                  uplinks=(None, 20.0), frames_clips=(ClipSpec(1, "240p", 24),), two_nodes_seconds=0.5,
                  long_clip=ClipSpec(35, "240p", 24), memory_minutes=(1, 2)),
    "default": Plan(clips=_clips((5, 10)), model_seconds=2.0, lipsync=(ClipSpec(5, "480p", 30),),
                    detection_clip=ClipSpec(4, "240p", 24), fal_seconds=(2.0, 5.0, 10.0),
                    wavespeed_seconds=(2.0, 3.0, 5.0, 10.0, 20.0, 40.0), batch_jobs=40, batch_concurrency=8,
                    batch_seconds=2.0, batch_command=True, startup_runs=5, uplink_clip=CAMERA_CLIP, uplinks=UPLINKS,
                    frames_clips=FRAMES_CLIPS, two_nodes_seconds=6.0, long_clip=LONG_CLIP,
                    memory_minutes=(1, 2, 4, 10)),
    "full": Plan(clips=_clips((5, 10, 30)), model_seconds=2.0,
                 lipsync=(ClipSpec(5, "480p", 30), ClipSpec(5, "1080p", 24)), detection_clip=ClipSpec(4, "240p", 24),
                 fal_seconds=(2.0, 5.0, 10.0, 30.0), wavespeed_seconds=(2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0),
                 batch_jobs=40, batch_concurrency=8, batch_seconds=2.0, batch_command=True, startup_runs=5,
                 uplink_clip=CAMERA_CLIP, uplinks=UPLINKS, frames_clips=FRAMES_CLIPS, two_nodes_seconds=6.0,
                 long_clip=LONG_CLIP, memory_minutes=(1, 2, 4, 10)),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="plan", const="quick",
                      help="a small set in seconds (CI smoke test; numbers not meaningful)")
    size.add_argument("--full", action="store_const", dest="plan", const="full",
                      help="adds 30 s clips, WaveSpeed jobs up to 60 s and a 1080p lipsync (about 8 minutes on 2 CPUs)")
    parser.set_defaults(plan="default")
    parser.add_argument("--model-seconds", type=float, metavar="S",
                        help="model time of the clip jobs (default: 2; --quick: 0.2)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every number as JSON here")
    parser.add_argument("--comfy", type=Path, metavar="DIR",
                        help="a ComfyUI folder: frames → node → save runs with its own VIDEO classes and encoder "
                             "(default: the pack's stand-in)")
    parser.add_argument("--comfy-python", metavar="PATH",
                        help="the interpreter with ComfyUI's requirements that runs those cases (default: this one)")
    parser.add_argument("--work", type=Path, metavar="DIR",
                        help="keep generated clips here and reuse them next time (default: a temporary folder)")
