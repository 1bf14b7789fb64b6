"""Make what the example workflows run on the first time, and their template card pictures, from real runs:

    example_workflows/media/   sonify_example_clip.mp4 (the demo's bouncing ball, 4 s), sonify_example_talking_head.mp4
                               (a drawn face, 3 s; and _720.mp4, the same at 720×720 for Kling LipSync),
                               sonify_example_voice.wav (a synthetic voice, 3 s),
                               sonify_example_sound.wav (the emulator's MMAudio sound for the clip),
                               sonify_example_long_clip.mp4 (36 s in three shots: longer than one MMAudio job)
    example_workflows/<title>.jpg  each workflow's card picture (template_thumbnails.py): its own input and what
                               its run through the local emulator gave back, labelled as the emulator's

    .venv/bin/python scripts/example_media.py [TITLE ...]     # the named workflows' cards only (default: all)

Generated, never filmed or recorded: nothing in them belongs to anyone. Run again after changing the drawing.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import template_thumbnails as cards  # after the path is set

from sonify import catalog, media, pipeline
from sonify.loudness_target import Target
from sonify.media import loudness, sound_check, soundtrack
from sonify.pipeline import failover
from sonify_devtools.demo import DEMO_FAL_KEY, DEMO_KEY, _environment, demo_frames
from sonify_devtools.emulator import Emulator

WORKFLOWS = ROOT / "example_workflows"
MEDIA = WORKFLOWS / "media"
VOICE_RATE = 16000
CLIP, LONG_CLIP, HEAD = "sonify_example_clip.mp4", "sonify_example_long_clip.mp4", "sonify_example_talking_head.mp4"
HEAD_720 = "sonify_example_talking_head_720.mp4"


@dataclass(frozen=True)
class Template:
    """How a workflow's card picture is made: the model its sound comes from (None: the local Mux node), the
    media it runs on (as a file, or as IMAGE frames), how many takes, and what the card draws."""

    spec: catalog.ModelSpec | None
    source: str
    card: cards.Card
    frames: bool = False
    variations: int = 1
    params_from: str | None = None  # the workflow whose model node holds the parameters, if not this one
    loudness: float | None = None  # the best take set to this many LUFS (Pick Take's best, then Mux Audio's loudness)


WS = "WAVESPEED"
SOUND = cards.wave(cards.WAVE)
# Each workflow by its file name (its card's title in ComfyUI's template browser). The Mux card needs the
# sound of the first one's run, so that one comes first.
TEMPLATES = {
    "MMAudio - Foley for a Clip": Template(
        catalog.MMAUDIO_V2, CLIP, cards.Card("FOLEY", f"MMAUDIO V2 - {WS}", cards.motion, SOUND)),
    "MMAudio - Sound for Frames": Template(
        catalog.MMAUDIO_V2, CLIP, cards.Card("IMAGE FRAMES IN", f"MMAUDIO V2 - {WS}", cards.frame_grid, SOUND),
        frames=True),
    "MMAudio - A 36 s Clip": Template(
        catalog.MMAUDIO_V2, LONG_CLIP, cards.Card("36 S IN WINDOWS", f"MMAUDIO V2 - {WS}", cards.shots, cards.windows)),
    "MMAudio - Four Takes": Template(
        catalog.MMAUDIO_V2, CLIP, cards.Card("FOUR TAKES", "PICK TAKE 3 - MUX AUDIO", cards.take_stills, cards.takes),
        variations=4),
    "MMAudio - Best Take -14 LUFS": Template(
        catalog.MMAUDIO_V2, CLIP, cards.Card("BEST TAKE", "PICK BEST - MUX AUDIO AT -14 LUFS", cards.graded_takes,
                                            cards.loudness_set, cards.LOCAL), variations=4, loudness=-14.0),
    "ThinkSound on WaveSpeed": Template(
        catalog.THINKSOUND, CLIP,
        cards.Card("THINKSOUND", WS, cards.captioned("PROMPT=prompt"), cards.spectrum)),
    "ThinkSound on fal": Template(
        catalog.THINKSOUND, CLIP,
        cards.Card("THINKSOUND", "FAL", cards.motion, cards.prompt_and_spectrum, cards.FAL)),
    "Kling - Effects and Music": Template(
        catalog.KLING_V2A, CLIP,
        cards.Card("EFFECTS + MUSIC", f"KLING - {WS}", cards.captioned("SFX=sound_effect_prompt", "MUSIC=bgm_prompt"),
                   cards.spectrum)),
    "HunyuanVideo-Foley on Auto": Template(
        catalog.HUNYUAN_FOLEY, CLIP,
        cards.Card("HUNYUAN FOLEY", "FAL OR WAVESPEED - AUTO", cards.captioned("PROMPT=prompt"), cards.spectrum,
                   cards.FAL)),
    "Lipsync a Video to a Voice": Template(
        catalog.SYNC_LIPSYNC, HEAD, cards.Card("LIPSYNC", f"SYNC LIPSYNC 1.9 - {WS}", cards.face, SOUND)),
    "Lipsync 2 on fal": Template(
        catalog.SYNC_LIPSYNC_2, HEAD, cards.Card("LIPSYNC-2", "SYNC LIPSYNC-2 - FAL", cards.captioned("MODE=sync_mode"),
                                                cards.spectrum, cards.FAL)),
    "Lipsync 2 Pro on fal": Template(
        catalog.SYNC_LIPSYNC_2_PRO, HEAD, cards.Card("LIPSYNC-2-PRO", "SYNC LIPSYNC-2-PRO - FAL", cards.frame_grid,
                                                    SOUND, cards.FAL)),
    "Sync-3 on Either Provider": Template(
        catalog.SYNC_3, HEAD, cards.Card("SYNC-3", "FAL OR WAVESPEED - AUTO", cards.provider_choice, cards.spectrum)),
    "Kling LipSync - 720p Face": Template(
        catalog.KLING_LIPSYNC, HEAD_720, cards.Card("KLING LIPSYNC", "720P FACE - FAL", cards.frame_grid, cards.spectrum,
                                                   cards.FAL)),
    "LatentSync on Auto": Template(
        catalog.LATENTSYNC, HEAD, cards.Card("LATENTSYNC", "THE CHEAPER PROVIDER - AUTO", cards.provider_choice, SOUND)),
    "Mux Audio - Replace or Mix": Template(
        None, CLIP, cards.Card("MUX AUDIO", "LOCAL - FREE", cards.motion, cards.mix, cards.LOCAL)),
    "Fetch a Result by Task ID": Template(
        catalog.MMAUDIO_V2, CLIP, cards.Card("FETCH BY ID", "A PAID RESULT AGAIN - NO NEW COST", cards.task_id, SOUND),
        params_from="MMAudio - Foley for a Clip"),
}


LOCAL_NODES = ("SonifyPickAudio", "SonifyMuxAudio", "SonifyFetchResult")


def workflow_params(name: str, spec: catalog.ModelSpec) -> tuple[dict[str, Any], str]:
    """The model parameters the workflow's Sonify node holds (its widget values, in the order of the model's
    parameters; the frontend keeps a "control after generate" value after the seed), and its `provider` (the last
    widget of a model on both providers; auto when the workflow was saved without one)."""
    workflow = json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
    node = next(n for n in workflow["nodes"] if n["type"].startswith("Sonify") and n["type"] not in LOCAL_NODES)
    values, params = list(node["widgets_values"]), {}
    for param in spec.params:
        params[param.name] = values.pop(0)
        if param.seed:
            values.pop(0)
    provider = values[-1] if spec.offers and values and values[-1] in catalog.PROVIDER_CHOICES else "auto"
    return params, provider


def long_clip_frames(seconds: int = 36, fps: int = 12, w: int = 160, h: int = 120) -> np.ndarray:
    """The ball bouncing once a second through three shots of 12 s, each on its own background: a clip longer
    than one MMAudio job (30 s), so the workflow runs it in windows whose boundary sits at a shot cut."""
    n = seconds * fps
    backgrounds = ((0.1, 0.1, 0.1), (0.05, 0.1, 0.3), (0.35, 0.2, 0.1))
    frames = np.empty((n, h, w, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        frames[i] = backgrounds[min(i * len(backgrounds) // n, len(backgrounds) - 1)]
        phase = (i % fps) / fps
        y = 20 + 80 * (1 - (2 * phase - 1) ** 2)
        x = 20 + (w - 40) * (i % (4 * fps)) / (4 * fps)
        frames[i][(yy - (h - y)) ** 2 + (xx - x) ** 2 < 9**2] = 1.0
    return frames


def talking_head_frames(seconds: int = 3, fps: int = 25, size: int = 256) -> np.ndarray:
    """A drawn face whose mouth opens and closes about four times a second."""
    n = seconds * fps
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.full((n, size, size, 3), 0.15, dtype=np.float32)
    face = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.38) ** 2
    eyes = ((yy - size * 0.4) ** 2 + (np.abs(xx - size / 2) - size * 0.13) ** 2) < (size * 0.04) ** 2
    for i in range(n):
        opening = 0.01 + 0.06 * abs(np.sin(np.pi * 4 * i / fps))
        mouth = ((yy - size * 0.66) / (size * opening)) ** 2 + ((xx - size / 2) / (size * 0.12)) ** 2 < 1
        frames[i][face] = (0.85, 0.7, 0.55)
        frames[i][eyes | mouth] = (0.1, 0.05, 0.05)
    return frames


def face_720p() -> np.ndarray:
    """The talking head at 720×720 (Kling LipSync takes 720 to 1920 px a side): drawn at 240 px, each pixel made a
    3×3 block, as uint8 (the float frames would take half a gigabyte)."""
    small = (talking_head_frames(size=240) * 255).round().astype(np.uint8)
    return small.repeat(3, axis=1).repeat(3, axis=2)


def synthetic_voice(seconds: float = 3.0) -> np.ndarray:
    """[1, T] float32: a buzzy 130 Hz voice through moving vowel formants, in syllables of a quarter second."""
    t = np.arange(int(seconds * VOICE_RATE)) / VOICE_RATE
    pitch = 130 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / VOICE_RATE
    formant = 600 + 500 * np.sin(2 * np.pi * 1.3 * t) ** 2
    harmonics = sum(np.sin(k * phase) * np.exp(-((k * pitch - formant) / 300) ** 2) for k in range(1, 30))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    voice = harmonics * syllables
    return (0.6 * voice / np.abs(voice).max()).astype(np.float32)[None]


def write_jpg(image: np.ndarray, path: Path) -> None:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = image.shape[1], image.shape[0], "yuvj420p"
    codec.options = {"qscale": "3"}
    packets = codec.encode(frame.reformat(format="yuvj420p")) + codec.encode(None)
    path.write_bytes(b"".join(bytes(p) for p in packets))


def card_run(name: str, template: Template, voice: np.ndarray, work: Path, first: cards.Run | None) -> cards.Run:
    """The run a card is drawn from: the template's model through the emulator (or the Mux node's mix)."""
    frames, fps = media.decode_frames(MEDIA / template.source)
    if template.spec is None:  # Mux Audio: the shipped sound (the first card's, at half its rate) mixed at -6 dB
        clip = MEDIA / template.source
        sound = media.fit_length(first.sound, first.rate, media.probe(clip).duration)[:1, ::2]
        media.write_wav(sound, first.rate // 2, MEDIA / "sonify_example_sound.wav")
        out = work / "mux.mp4"
        soundtrack.put_on_video(clip, sound, first.rate // 2, out, mode="mix", audio_gain_db=-6.0)
        mixed, rate = media.decode_audio(out)
        return cards.Run(frames, float(fps), mixed, rate, audio_in=sound)
    spec = template.spec
    params, provider = workflow_params(template.params_from or name, spec)
    source = (media.VideoSource(frames=frames, fps=fps) if template.frames
              else media.VideoSource(path=str(MEDIA / template.source)))
    result = failover.run(spec, params, source, provider=provider, out_dir=work / name, variations=template.variations,
                          audio=pipeline.AudioInput(voice, VOICE_RATE) if spec.audio_field else None)
    if result.video_path is not None and spec.audio_field:  # lipsync: the provider's picture is the result
        frames, fps = media.decode_frames(result.video_path)
    if template.loudness is not None:  # Pick Take's best, set to the target as Mux Audio sets it
        best = result.takes[sound_check.best([take.audio for take in result.takes], result.sample_rate)]
        sound, applied = loudness.normalise(best.audio, result.sample_rate, Target(template.loudness))
        return cards.Run(frames, float(fps), sound, result.sample_rate, info={**result.info, "sound": best.info["sound"]},
                         extra={"lufs": applied.lufs}, takes=[take.audio for take in result.takes],
                         audio_in=best.audio, params=params)
    return cards.Run(frames, float(fps), result.audio, result.sample_rate, info=result.info, extra=result.extra,
                     takes=[take.audio for take in result.takes], params=params)


def main(only: list[str]) -> int:
    unknown = sorted(set(only) - set(TEMPLATES))
    if unknown:
        print(f"no such workflow: {', '.join(unknown)}", file=sys.stderr)
        return 2
    MEDIA.mkdir(parents=True, exist_ok=True)
    media.frames_to_mp4(demo_frames(), Fraction(24), MEDIA / CLIP)
    media.frames_to_mp4(talking_head_frames(), Fraction(25), MEDIA / HEAD)
    media.frames_to_mp4(face_720p(), Fraction(25), MEDIA / HEAD_720)
    media.frames_to_mp4(long_clip_frames(), Fraction(12), MEDIA / LONG_CLIP)
    voice = synthetic_voice()
    media.write_wav(voice, VOICE_RATE, MEDIA / "sonify_example_voice.wav")
    with tempfile.TemporaryDirectory(prefix="sonify-examples-") as tmp, \
            Emulator(api_keys=(DEMO_KEY,), fal_keys=(DEMO_FAL_KEY,), model_seconds=0.3).start() as emu, \
            _environment(WAVESPEED_API_KEY=DEMO_KEY, FAL_KEY=DEMO_FAL_KEY, SONIFY_WAVESPEED_URL=emu.url,
                         SONIFY_FAL_QUEUE_URL=emu.url, SONIFY_FAL_REST_URL=emu.url, SONIFY_FAL_API_URL=emu.url,
                         SONIFY_FAL_CDN_URL=emu.files_url,
                         SONIFY_STATE_DIR=str(Path(tmp) / "state")):
        first = None
        for name, template in TEMPLATES.items():
            if only and name not in only and not (first is None and template.spec is catalog.MMAUDIO_V2):
                continue  # (the first MMAudio card's sound is what the Mux card mixes)
            run = card_run(name, template, voice, Path(tmp), first)
            first = first or run
            if only and name not in only:
                continue
            path = WORKFLOWS / f"{name}.jpg"
            write_jpg(cards.thumbnail(template.card, run), path)
            print(f"{path.name} ({path.stat().st_size // 1024} KB)")
    for path in sorted(MEDIA.iterdir()):
        print(f"media/{path.name} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
