"""Make what the example workflows run on the first time, and their template thumbnails, from real runs:

    example_workflows/media/   sonify_example_clip.mp4 (the demo's bouncing ball, 4 s), sonify_example_talking_head.mp4
                               (a drawn face, 3 s), sonify_example_voice.wav (a synthetic voice, 3 s),
                               sonify_example_sound.wav (the emulator's MMAudio sound for the clip),
                               sonify_example_long_clip.mp4 (36 s in three shots: longer than one MMAudio job)
    example_workflows/<name>.jpg  each workflow's model run on that media through the local emulator, drawn by
                               scripts/readme_figure.py (stills, waveform, spectrogram), labelled as the emulator's

    .venv/bin/python scripts/example_media.py

Generated, never filmed or recorded: nothing in them belongs to anyone. Run again after changing the drawing.
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from readme_figure import figure  # after the path is set

from sonify import media, models, pipeline
from sonify_devtools.demo import DEMO_FAL_KEY, DEMO_KEY, _environment, demo_frames
from sonify_devtools.emulator import Emulator

WORKFLOWS = ROOT / "example_workflows"
MEDIA = WORKFLOWS / "media"
VOICE_RATE = 16000
THUMB_WIDTH = 480

# workflow -> (the model its sound comes from, or None for the local Mux node; the clip it runs on)
RUNS = {
    "mmaudio_v2_foley_for_a_clip": (models.MMAUDIO_V2, "sonify_example_clip.mp4"),
    "mmaudio_v2_foley_from_image_frames": (models.MMAUDIO_V2, "sonify_example_clip.mp4"),
    "fetch_result_by_task_id": (models.MMAUDIO_V2, "sonify_example_clip.mp4"),
    "thinksound_wavespeed_sound_from_video": (models.THINKSOUND_WAVESPEED, "sonify_example_clip.mp4"),
    "thinksound_fal_sound_from_video": (models.THINKSOUND_FAL, "sonify_example_clip.mp4"),
    "kling_video_to_audio_sfx_and_music": (models.KLING_V2A, "sonify_example_clip.mp4"),
    "sync_lipsync_video_to_voice": (models.SYNC_LIPSYNC, "sonify_example_talking_head.mp4"),
    "mux_audio_replace_or_mix": (None, "sonify_example_clip.mp4"),
    "mmaudio_v2_long_clip_in_windows": (models.MMAUDIO_V2, "sonify_example_long_clip.mp4"),
    "mmaudio_v2_takes_pick_mux": (models.MMAUDIO_V2, "sonify_example_clip.mp4"),
}
PROMPTS = {"prompt": "a ball bouncing on a wooden floor", "sound_effect_prompt": "a ball bouncing on a wooden floor"}


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
    height = round(image.shape[0] * THUMB_WIDTH / image.shape[1]) // 2 * 2
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(THUMB_WIDTH, height)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = THUMB_WIDTH, height, "yuvj420p"
    codec.options = {"qscale": "4"}
    packets = codec.encode(frame.reformat(format="yuvj420p")) + codec.encode(None)
    path.write_bytes(b"".join(bytes(p) for p in packets))


def main() -> int:
    MEDIA.mkdir(parents=True, exist_ok=True)
    clip = MEDIA / "sonify_example_clip.mp4"
    media.frames_to_mp4(demo_frames(), Fraction(24), clip)
    media.frames_to_mp4(talking_head_frames(), Fraction(25), MEDIA / "sonify_example_talking_head.mp4")
    media.frames_to_mp4(long_clip_frames(), Fraction(12), MEDIA / "sonify_example_long_clip.mp4")
    voice = synthetic_voice()
    media.write_wav(voice, VOICE_RATE, MEDIA / "sonify_example_voice.wav")
    with tempfile.TemporaryDirectory(prefix="sonify-examples-") as tmp, \
            Emulator(api_keys=(DEMO_KEY,), fal_keys=(DEMO_FAL_KEY,), model_seconds=0.3).start() as emu, \
            _environment(WAVESPEED_API_KEY=DEMO_KEY, FAL_KEY=DEMO_FAL_KEY, SONIFY_WAVESPEED_URL=emu.url,
                         SONIFY_FAL_QUEUE_URL=emu.url, SONIFY_FAL_REST_URL=emu.url, SONIFY_FAL_API_URL=emu.url,
                         SONIFY_FAL_CDN_URL=emu.files_url,
                         SONIFY_STATE_DIR=str(Path(tmp) / "state")):
        results: dict[str, Path] = {}
        for name, (spec, source) in RUNS.items():
            if spec is None:  # the Mux node's sound: the MMAudio run's, put on the clip
                sound, rate = media.decode_audio(results["mmaudio_v2_foley_for_a_clip"])
                media.write_wav(media.fit_length(sound, rate, media.probe(clip).duration)[:1, ::2], rate // 2,
                                MEDIA / "sonify_example_sound.wav")
                results[name] = results["mmaudio_v2_foley_for_a_clip"]
                label = "MUX AUDIO: THE EMULATOR'S SOUND PUT ON THE CLIP - SYNTHETIC, NOT A REAL MODEL"
            else:
                params = {k: v for k, v in PROMPTS.items() if any(p.name == k for p in spec.params)}
                voice_in = pipeline.AudioInput(voice, VOICE_RATE) if spec.audio_field else None
                result = pipeline.run(spec, params, media.VideoSource(path=str(MEDIA / source)),
                                      out_dir=Path(tmp) / name, audio=voice_in)
                results[name] = result.video_path
                label = f"{spec.title.split(' · ')[0].upper()} THROUGH THE LOCAL EMULATOR: SYNTHETIC SOUND - NOT A REAL MODEL"
            write_jpg(figure(results[name], label), WORKFLOWS / f"{name}.jpg")
            print(f"{name}.jpg ({(WORKFLOWS / f'{name}.jpg').stat().st_size // 1024} KB)")
    for path in sorted(MEDIA.iterdir()):
        print(f"media/{path.name} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
