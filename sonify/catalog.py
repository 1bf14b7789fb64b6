"""The model catalog: one declarative ModelSpec per hosted model.

Everything that knows a model's parameters, ranges, limits or price reads them from here:
validation, the ComfyUI node inputs, the command line and the emulator. A range is written once.
Facts come from shared/PROTOCOLS.md; the parameter names are the provider's own.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .settings import MAX_CLIP_ENV, max_clip_seconds

INT32_MAX = 2147483647


MAX_TEXT = 2000  # characters, for text no provider documents a limit for: longer is surely a pasted mistake


PROVIDERS = ("wavespeed", "fal")


# Ranges of inputs that belong to no one model, kept here so that each is written once and the node
# layer reads them without importing numpy or PyAV: a frames source's rate, the Mux node's gains.
# The slowest picture Sonify sends: one frame a second. The models sample the picture at 8 and 25 fps
# (PROTOCOLS.md), so a slower one reaches them only as held frames, with no motion between them to put sound
# to; and a clip is planned in windows of whole frames no shorter than a second (sonify/windows.py).
MIN_FPS = 1


MAX_FPS = 240


GAIN_DB = (-60.0, 24.0)


VARIATIONS = (1, 8)  # takes of one video-to-audio run (sonify/takes.py)


@dataclass(frozen=True)
class Param:
    """One model parameter, named as the provider names it."""

    name: str
    kind: str  # "int" | "float" | "bool" | "str" | "choice"
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    required: bool = False  # for "str": must not be empty
    multiline: bool = False
    send_if_empty: bool = True  # False: an empty string is left out of the request
    # The model's random seed: -1 asks for a new result every run, 0 or more for the same one again.
    seed: bool = False
    source_note: str = ""  # a sentence for the source inputs' tooltips: what this parameter makes the clip decide

    def range_text(self) -> str:
        if self.kind in ("int", "float"):
            return f"{_num(self.min)} to {_num(self.max)}"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "str" and self.max_length:
            return f"at most {self.max_length} characters"
        return ""

    def check(self, value: Any) -> Any:
        """Return the value in its canonical type, or raise ValidationError naming the input."""
        name = self.name
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValidationError(name, f"must be true or false, got {value!r}")
            return value
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValidationError(name, f"must be a number from {self.range_text()}, got {value!r}")
            if self.kind == "int":
                if not float(value).is_integer():
                    raise ValidationError(name, f"must be a whole number from {self.range_text()}, got {value!r}")
                value = int(value)
            else:
                value = float(value)
                if not math.isfinite(value):
                    raise ValidationError(name, f"must be a finite number from {self.range_text()}, got {value!r}")
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise ValidationError(name, f"must be from {self.range_text()}, got {_num(value)}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValidationError(name, f"must be {self.range_text()}, got {value!r}")
            return value
        if not isinstance(value, str):
            raise ValidationError(name, f"must be text, got {type(value).__name__}")
        value = value.strip()
        if self.required and not value:
            raise ValidationError(name, "is required and must not be empty")
        if len(value) > self.text_limit:
            raise ValidationError(name, f"must be at most {self.text_limit} characters (never cut), got {len(value)}")
        lone = next((c for c in value if unicodedata.category(c) == "Cs"), None)
        if lone is not None:  # half of a pair of UTF-16 units: no JSON body can carry it
            raise ValidationError(name, f"must be valid text: it has an unpaired surrogate (U+{ord(lone):04X})")
        bad = next((c for c in value if unicodedata.category(c) == "Cc" and c not in "\n\t"), None)
        if bad is not None:
            raise ValidationError(name, f"must not contain control characters (found U+{ord(bad):04X})")
        return value

    @property
    def text_limit(self) -> int:
        return self.max_length if self.max_length is not None else MAX_TEXT

    def describe(self) -> str:
        """The help with its range and default: a node's tooltip, a command-line option's help."""
        facts = [self.help.rstrip(".") + "."]
        if self.kind in ("int", "float"):
            facts.append(f"Range: {self.range_text()}.")
        elif self.kind == "choice":
            facts.append(f"One of: {', '.join(self.choices)}.")
        elif self.max_length:
            facts.append(f"At most {self.max_length} characters (longer text is refused, never cut).")
        facts.append("Required." if self.required else f"Default: {_default_text(self.default)}.")
        return " ".join(facts)


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "empty" if value == "" else _num(value) if isinstance(value, (int, float)) else str(value)


def _num(x: float | None) -> str:
    return "" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


@dataclass(frozen=True)
class ProxyRule:
    """How the source is reduced before upload. The models see only small frames (PROTOCOLS.md),
    so sending more pixels costs upload time for nothing."""

    short_side: int = 480
    max_fps: int = 30


@dataclass(frozen=True)
class Window:
    """The longest and shortest clip one job of a video-to-audio model takes, in seconds, and the length it
    does best with where that is shorter (ThinkSound: its training windows). A longer clip is done in
    overlapping windows of about `preferred` (else `longest`) seconds, joined (sonify/windows.py)."""

    longest: float
    shortest: float
    preferred: float | None = None


@dataclass(frozen=True)
class Price:
    """A model's published price as data, so that every estimate — the engine's, the command line's and the
    node's badge in the browser (served as JSON by the pack's route) — comes from this one rule."""

    usd: float | None = None  # None: not published, no estimate
    # "job"; "second": per second of requested audio, the `seconds_param` value; "compute_second": per second the
    # provider's machine ran the model, known only after the run (fal's metrics.inference_time)
    per: str = "job"
    seconds_param: str | None = None  # per second: the parameter with the seconds (already resolved when sent)
    note: str = "not published by the provider; no estimate"  # the words when there is no estimate

    def __call__(self, params: dict[str, Any]) -> float | None:
        """The estimate in USD for the parameters as sent, or None (no price, or one known only after the run)."""
        if self.usd is None or self.per == "compute_second":
            return None
        return self.usd * params[self.seconds_param] if self.per == "second" else self.usd

    def measure(self, sound_seconds: float, inference_seconds: float | None) -> tuple[float, dict[str, Any]] | None:
        """The cost by what the job delivered or the provider reported it used — (USD, {quantity, unit, from}) — or
        None when there is no price, or the provider did not report what a compute price needs."""
        if self.usd is None:
            return None
        if self.per == "compute_second":
            if inference_seconds is None:
                return None
            used = {"quantity": round(inference_seconds, 3), "unit": "compute second", "from": "metrics.inference_time"}
        elif self.per == "second":  # in whole seconds, as the price's parameter asks for them (a codec pads the end)
            used = {"quantity": max(1, round(sound_seconds)), "unit": "second of sound", "from": "the sound delivered"}
        else:
            used = {"quantity": 1, "unit": "job", "from": "the result delivered"}
        return round(self.usd * used["quantity"], 6), used

    @property
    def text(self) -> str:
        if self.usd is None:
            return self.note
        unit = {"second": "second of audio", "compute_second": "compute second"}.get(self.per, "job")
        known = " (measured after the run; no estimate before it)" if self.per == "compute_second" else ""
        return f"${_num(self.usd)} per {unit}{known}"

    def as_json(self, spec: ModelSpec) -> dict[str, Any]:
        """The rule for the badge: per second of `seconds_param`, whose 0 means the clip's length in whole
        seconds within the parameter's range (what `resolve` sends)."""
        rule: dict[str, Any] = {"usd": self.usd, "per": self.per, "text": self.text}
        if self.per == "second" and self.seconds_param:
            p = spec.param(self.seconds_param)
            rule.update(param=p.name, zero_is_clip=p.min == 0, max=p.max)
        return rule


@dataclass(frozen=True)
class ModelSpec:
    key: str  # short name for the command line
    provider: str  # "wavespeed" | "fal"
    model_id: str  # the provider's id, used in the submit URL
    title: str  # display name: "MMAudio v2 · WaveSpeed"
    description: str
    params: tuple[Param, ...]
    video_field: str = "video"
    audio_field: str | None = None  # lipsync only
    output: str = "audio"  # "audio": sound for the source video; "video": a new video (lipsync)
    native_audio: tuple[int, int] | None = None  # (sample rate, channels) it makes; None: lipsync (its sound is the voice)
    extra_outputs: tuple[str, ...] = ()  # result fields besides the media (fal's prompt), each a STRING node output
    proxy: ProxyRule | None = field(default_factory=ProxyRule)  # None: upload the original
    min_seconds: float | None = None
    max_seconds: float | None = None
    window: Window | None = None  # video-to-audio: a longer clip is done in windows (max_seconds then bounds a job)
    # The longest clip (and voice) Sonify takes for the model in one run, in seconds; SONIFY_MAX_CLIP_SECONDS
    # (config.max_clip_seconds) lowers it. For a model done in windows it bounds how many paid jobs a run makes.
    longest_clip: float = 600.0
    price: Price = field(default_factory=Price)
    licence_note: str = ""
    # Turns the checked parameters into what is sent, knowing the source's length in seconds.
    resolve: Callable[[dict[str, Any], float], dict[str, Any]] = lambda params, seconds: params
    # The longest sound a job asks for, from the sent parameters and the source's seconds (a result may
    # not run much longer: see remote_job.ResultBounds).
    result_seconds: Callable[[dict[str, Any], float], float] = lambda params, seconds: seconds

    @property
    def price_text(self) -> str:
        return self.price.text

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check every parameter; unknown names are an error. Returns canonical values."""
        unknown = sorted(set(values) - {p.name for p in self.params})
        if unknown:
            raise ValidationError(unknown[0], f"is not a parameter of {self.title}")
        return {p.name: p.check(values.get(p.name, p.default)) for p in self.params}

    def request_body(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters as the provider expects them (media URLs are added by the pipeline)."""
        return {
            p.name: params[p.name]
            for p in self.params
            if p.send_if_empty or params[p.name] != ""
        }

    def fixed_seed(self, params: dict[str, Any]) -> int | None:
        """The seed that asks for the same result again, or None: -1 (random) or no seed parameter."""
        seed = next((p for p in self.params if p.seed), None)
        value = params.get(seed.name) if seed is not None else None
        return value if isinstance(value, int) and value >= 0 else None

    def cacheable(self, params: dict[str, Any]) -> bool:
        """Whether the journal may reuse a stored result for these (sent) parameters: only a fixed seed
        asks for the same result again; -1, or a model without a seed, asks for a new one each run."""
        return self.fixed_seed(params) is not None

    def check_duration(self, seconds: float) -> None:
        """The whole clip's length: within the model's limits (no longest when it is done in windows)."""
        lo, hi = self.min_seconds, self.max_seconds
        if self.window is not None and lo is not None and seconds < lo:
            raise ValidationError("video", f"{self.title} takes clips of at least {_num(lo)} seconds (one job takes "
                                           f"{_num(lo)} to {_num(hi)} seconds, got {seconds:.3f} s)")
        if self.window is None and ((lo is not None and seconds < lo) or (hi is not None and seconds > hi)):
            raise ValidationError(
                "video", f"{self.title} takes clips from {_num(lo or 0)} to {_num(hi)} seconds, got {seconds:.3f} s"
            )


    def check_length(self, seconds: float, name: str = "video") -> None:
        """A run's clip (or voice: `name` "audio") within longest_clip and the SONIFY_MAX_CLIP_SECONDS setting,
        before anything is sent or encoded."""
        setting = max_clip_seconds()
        if seconds <= min(setting, self.longest_clip):
            return
        if setting < self.longest_clip:
            raise ValidationError(name, f"is {seconds:.3f} s long; a run takes at most {_num(setting)} s "
                                        f"({MAX_CLIP_ENV}; {self.title} can do up to {_num(self.longest_clip)} s: "
                                        f"raise {MAX_CLIP_ENV} to allow a longer clip)")
        raise ValidationError(name, f"is {seconds:.3f} s long; {self.title} takes at most {_num(self.longest_clip)} s "
                                    "in one run: cut the clip into parts")


def _mmaudio_resolve(params: dict[str, Any], seconds: float) -> dict[str, Any]:
    """duration 0 means "match the video": ask for whole seconds covering it (1..30); the
    pipeline trims the audio to the video afterwards."""
    if params["duration"] == 0:
        return {**params, "duration": min(30, max(1, math.ceil(seconds - 1e-9)))}
    return params


SEED = Param(
    "seed", "int", -1,
    "Random seed; -1 picks a new one each run. A fixed seed (0 or more) asks for the same result again: "
    "running the same job again then reuses Sonify's stored result, with no request and no cost.",
    min=-1, max=INT32_MAX, seed=True,
)


MMAUDIO_V2 = ModelSpec(
    key="mmaudio-v2",
    provider="wavespeed",
    model_id="wavespeed-ai/mmaudio-v2",
    title="MMAudio v2 · WaveSpeed",
    description="Foley and ambience for a silent clip (MMAudio v2 on WaveSpeed). 44.1 kHz mono.",
    params=(
        Param("prompt", "str", "", "What the sound should be, e.g. 'rain on a tin roof, distant thunder'.", required=True, multiline=True),
        Param("negative_prompt", "str", "", "Sounds to avoid (e.g. music).", multiline=True, send_if_empty=False),
        Param("duration", "int", 0, "Seconds of audio; 0 matches the video (rounded up, then trimmed). Cost grows with it.", min=0, max=30,
              source_note="With duration 0 the price follows the clip's length."),
        Param("num_inference_steps", "int", 25, "Denoising steps: more is slower, not dearer.", min=4, max=50),
        Param("guidance_scale", "float", 4.5, "How strongly the prompt steers the sound.", min=0, max=20, step=0.1),
        Param("mask_away_clip", "bool", False, "Ignore the picture's content; keep only its timing."),
        SEED,
    ),
    native_audio=(44100, 1),
    window=Window(longest=30.0, shortest=1.0),  # the duration parameter's range
    longest_clip=3600.0,  # an hour: 124 windows, about $3.7 (the price check sees it)
    price=Price(0.001, "second", "duration"),
    resolve=_mmaudio_resolve,
    result_seconds=lambda params, seconds: max(seconds, params["duration"]),
)


# ThinkSound was trained on ~9 s windows (PROTOCOLS.md); neither provider documents a longest clip, so
# a clip longer than 30 s [guess] is done in windows of about 9 s.
THINKSOUND_WINDOW = Window(longest=30.0, shortest=1.0, preferred=9.0)


THINKSOUND_LONGEST = 600.0  # 75 windows of 9 s; no price is published to bound it, so the length does


THINKSOUND_WAVESPEED = ModelSpec(
    key="thinksound-wavespeed",
    provider="wavespeed",
    model_id="wavespeed-ai/think-sound",
    title="ThinkSound · WaveSpeed",
    description="Sound for a silent clip (ThinkSound on WaveSpeed). 44.1 kHz stereo.",
    params=(
        Param("prompt", "str", "", "What the sound should be (optional).", multiline=True, send_if_empty=False),
        SEED,
    ),
    native_audio=(44100, 2),
    window=THINKSOUND_WINDOW,
    longest_clip=THINKSOUND_LONGEST,
    licence_note="ThinkSound's model licence forbids commercial use.",
)


THINKSOUND_FAL = ModelSpec(
    key="thinksound-fal",
    provider="fal",
    model_id="fal-ai/thinksound",
    title="ThinkSound · fal",
    description="Sound for a silent clip (ThinkSound on fal). Empty prompt: fal writes one from the video.",
    params=(
        Param("prompt", "str", "", "What the sound should be; empty lets fal write one from the video.", multiline=True),
        SEED,
        Param("num_inference_steps", "int", 24, "Denoising steps: more is slower and dearer (billed per compute second).", min=2, max=100),
        Param("cfg_scale", "float", 5.0, "How strongly the prompt steers the sound.", min=1, max=20, step=0.1),
    ),
    video_field="video_url",
    native_audio=(44100, 2),
    window=THINKSOUND_WINDOW,
    longest_clip=THINKSOUND_LONGEST,
    extra_outputs=("prompt",),
    price=Price(0.001, "compute_second"),  # fal.ai/models/fal-ai/thinksound/llms.txt
    licence_note="ThinkSound's model licence forbids commercial use.",
)


KLING_V2A = ModelSpec(
    key="kling-video-to-audio",
    provider="wavespeed",
    model_id="kwaivgi/kling-video-to-audio",
    title="Kling Video-to-Audio · WaveSpeed",
    description="Sound effects and background music for a 3–20 s clip (Kling on WaveSpeed).",
    params=(
        Param("sound_effect_prompt", "str", "", "Sound effects to generate.", max_length=200, multiline=True, send_if_empty=False),
        Param("bgm_prompt", "str", "", "Background music to generate.", max_length=200, multiline=True, send_if_empty=False),
        Param("asmr_mode", "bool", False, "Detailed, close-up sound effects. The price is per job either way."),
    ),
    # Kling's own inputs go down to 720 px [guess]: keep that much rather than risk a rejection.
    proxy=ProxyRule(short_side=720, max_fps=30),
    native_audio=(48000, 2),  # [guess]: no rate is documented; 48 kHz stereo is what the emulator makes
    min_seconds=3.0,
    max_seconds=20.0,
    window=Window(longest=20.0, shortest=3.0),  # min_seconds and max_seconds: one job's limits
    longest_clip=3600.0,  # an hour: 190 windows, about $6.7 (above the default price limit)
    price=Price(0.035),
)


SYNC_LIPSYNC = ModelSpec(
    key="sync-lipsync",
    provider="wavespeed",
    model_id="sync/lipsync-1.9.0-beta",
    title="Sync Lipsync 1.9 · WaveSpeed",
    description="Lip-syncs a face in a video to a voice (sync lipsync-1.9.0-beta on WaveSpeed).",
    params=(
        Param("sync_mode", "choice", "cut_off", "When video and audio lengths differ: cut_off trims to the shorter, loop repeats the video, bounce plays it back and forth, silence pads the audio, remap stretches the video.", choices=("cut_off", "bounce", "loop", "silence", "remap")),
    ),
    audio_field="audio",
    output="video",
    proxy=None,
    longest_clip=600.0,  # [guess] no limit is documented; its result comes back whole, as frames
)


MODELS: dict[str, ModelSpec] = {m.key: m for m in (MMAUDIO_V2, THINKSOUND_WAVESPEED, THINKSOUND_FAL, KLING_V2A, SYNC_LIPSYNC)}


BY_MODEL_ID: dict[tuple[str, str], ModelSpec] = {(m.provider, m.model_id): m for m in MODELS.values()}
