"""The model catalog: one declarative ModelSpec per hosted model.

Everything that knows a model's parameters, ranges, limits or price reads them from here:
validation, the ComfyUI node inputs, the command line and the emulator. A range is written once.
Facts come from docs/providers.md (each with its source); a ModelSpec's parameter names are its provider's own, except
where a Param names the field it is sent as (`sent_as`: fal's Hunyuan `text_prompt`, shown as `prompt`).

A model that runs on both providers is one ModelSpec (its "home" provider's, whose names the node and the command
line show) with `offers`: the same model on the other provider, each an Offer that maps the shown names to that
provider's (offers.py turns shown parameters into an offer's; failover.py picks the provider and moves on).
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .settings import MAX_CLIP_ENV

INT32_MAX = 2147483647


MAX_TEXT = 2000  # characters, for text no provider documents a limit for: longer is surely a pasted mistake


PROVIDERS = ("wavespeed", "fal")


PROVIDER_TITLES = {"wavespeed": "WaveSpeed", "fal": "fal"}


# Ranges of inputs that belong to no one model, kept here so that each is written once and the node
# layer reads them without importing numpy or PyAV: a frames source's rate, the Mux node's gains.
# The slowest picture Sonify sends: one frame a second. The models sample the picture at 8 and 25 fps
# (PROTOCOLS.md), so a slower one reaches them only as held frames, with no motion between them to put sound
# to; and a clip is planned in windows of whole frames no shorter than a second (sonify/windows.py).
MIN_FPS = 1


MAX_FPS = 240


GAIN_DB = (-60.0, 24.0)


VARIATIONS = (1, 8)  # takes of one video-to-audio run (sonify/takes.py)


# Where a model on both providers runs (offers.py, failover.py): "auto" picks among the providers that have a key (the
# order SONIFY_PROVIDER_ORDER sets, else the cheaper for the clip) and moves to the next while no task exists yet;
# a provider by name runs only there; "X, then Y" runs on X and moves to Y as auto does.
PROVIDER_CHOICES = ("auto", "wavespeed", "fal", "wavespeed, then fal", "fal, then wavespeed")


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
    # A value left out of the request, the provider's own default then applying (a seed of -1 where the provider takes
    # no -1 and draws one itself; fal LatentSync's loop_mode "default", which has no documented default).
    unsent: Any = None
    source_note: str = ""  # a sentence for the source inputs' tooltips: what this parameter makes the clip decide
    # The provider's field where it differs from the name shown (HunyuanVideo-Foley's `text_prompt` on fal, shown as
    # `prompt` like every other model's prompt and WaveSpeed's own name for it).
    sent_as: str | None = None

    @property
    def field(self) -> str:
        """The name this parameter goes under in the provider's request."""
        return self.sent_as or self.name

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
    # "job"; "second": per second of requested audio, the `seconds_param` value; "clip": `usd` per `unit` seconds of
    # the clip (lipsync: the video sent), billed in whole `step`s of seconds (rounded up), never less than `minimum`;
    # "compute_second": per second the provider's machine ran the model, known only after the run (fal's
    # metrics.inference_time)
    per: str = "job"
    seconds_param: str | None = None  # per second: the parameter with the seconds (already resolved when sent)
    note: str = "not published by the provider; no estimate"  # the words when there is no estimate
    step: float = 1.0
    minimum: float = 0.0
    unit: float = 1.0

    def __call__(self, params: dict[str, Any], seconds: float) -> float | None:
        """The estimate in USD for the parameters as sent and the clip's seconds, or None (no price, or one known
        only after the run)."""
        if self.usd is None or self.per == "compute_second":
            return None
        if self.per == "second":
            return self.usd * params[self.seconds_param]
        if self.per == "clip":
            billed = math.ceil(round(seconds / self.step, 6)) * self.step
            return max(self.minimum, self.usd * billed / self.unit)
        return self.usd

    def measure(self, sound_seconds: float, clip_seconds: float | None,
                inference_seconds: float | None) -> tuple[float, dict[str, Any]] | None:
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
        elif self.per == "clip":  # billed by the clip sent, in whole steps
            if clip_seconds is None:
                return None
            billed = math.ceil(round(clip_seconds / self.step, 6)) * self.step
            used = {"quantity": billed, "unit": "second of the clip", "from": "the clip sent"}
            return round(max(self.minimum, self.usd * billed / self.unit), 6), used
        else:
            used = {"quantity": 1, "unit": "job", "from": "the result delivered"}
        return round(self.usd * used["quantity"], 6), used

    @property
    def text(self) -> str:
        if self.usd is None:
            return self.note
        if self.per == "clip":
            unit = {1: "second", 60: "minute"}.get(self.unit, f"{_num(self.unit)} s")
            steps = f", in steps of {_num(self.step)} s" if self.step != 1 else ""
            least = f", at least ${_num(self.minimum)}" if self.minimum else ""
            return f"${_num(self.usd)} per {unit} of the clip{steps}{least}"
        unit = {"second": "second of audio", "compute_second": "compute second"}.get(self.per, "job")
        known = " (measured after the run; no estimate before it)" if self.per == "compute_second" else ""
        return f"${_num(self.usd)} per {unit}{known}"

    def as_json(self, spec: ModelSpec) -> dict[str, Any]:
        """The rule for the badge: per second of `seconds_param`, whose 0 means the clip's length in whole
        seconds within the parameter's range (what `resolve` sends); per second of the clip, in steps."""
        rule: dict[str, Any] = {"usd": self.usd, "per": self.per, "text": self.text}
        if self.per == "second" and self.seconds_param:
            p = spec.param(self.seconds_param)
            rule.update(param=p.name, zero_is_clip=p.min == 0, max=p.max)
        if self.per == "clip":
            rule.update(step=self.step, minimum=self.minimum, unit=self.unit)
        return rule


@dataclass(frozen=True)
class Voice:
    """What a lipsync model takes of the voice, where its docs set limits: its length in seconds, its file's size in
    bytes, and the file it is sent as (a suffix media.write_audio writes: lossless WAV unless the size limit needs AAC)."""

    seconds: tuple[float, float] | None = None
    max_bytes: int | None = None
    suffix: str = ".wav"


@dataclass(frozen=True)
class Offer:
    """The same model on another provider: its ModelSpec (that provider's names, ranges and price) and the names
    the home spec shows for them where they differ (shown name -> this provider's). A shown parameter the offer
    lacks is refused by name when set off its default; one only the offer has is sent at its default."""

    spec: ModelSpec
    renamed: tuple[tuple[str, str], ...] = ()  # (shown name, this provider's name) pairs: a spec stays hashable

    def name(self, shown: str) -> str:
        """This provider's name for the shown parameter `shown`."""
        return dict(self.renamed).get(shown, shown)

    def shown(self, own: str) -> str:
        """The node's name for this provider's parameter `own`."""
        return next((shown for shown, name in self.renamed if name == own), own)


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
    # (Settings.max_clip_seconds) lowers it. For a model done in windows it bounds how many paid jobs a run makes.
    longest_clip: float = 600.0
    price: Price = field(default_factory=Price)
    licence_note: str = ""
    offers: tuple[Offer, ...] = ()  # the same model on other providers (see the module docstring)
    sides: tuple[int, int] | None = None  # lipsync: the least and most pixels the picture's width and height may have
    voice: Voice = field(default_factory=Voice)  # lipsync: what the voice may be, and the file it goes as
    video_suffixes: tuple[str, ...] = ()  # lipsync: the file types the provider takes (a file of another is refused)
    fixed: tuple[tuple[str, Any], ...] = ()  # (field, value) always sent as they are (fal's `model` choice)
    # Turns the checked parameters into what is sent, knowing the source's length in seconds.
    resolve: Callable[[dict[str, Any], float], dict[str, Any]] = lambda params, seconds: params
    # The longest sound a job asks for, from the sent parameters and the source's seconds (a result may
    # not run much longer: see remote_job.ResultBounds).
    result_seconds: Callable[[dict[str, Any], float], float] = lambda params, seconds: seconds

    @property
    def price_text(self) -> str:
        return self.price.text

    @property
    def name(self) -> str:
        """The model without its provider ("MMAudio v2")."""
        return self.title.split(" · ")[0]

    @property
    def node_title(self) -> str:
        """Its node's display name: the title, or for a model on several providers the model and where it runs."""
        if not self.offers:
            return self.title
        return f"{self.name} · " + " or ".join(PROVIDER_TITLES[s.provider] for s in (self, *(o.spec for o in self.offers)))

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
            **dict(self.fixed),
            **{p.field: params[p.name] for p in self.params
               if (p.send_if_empty or params[p.name] != "") and not (p.unsent is not None and params[p.name] == p.unsent)},
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

    def check_sides(self, width: int, height: int) -> None:
        """The picture's size, where the model's docs set one (Kling LipSync: 720 to 1920 px each way)."""
        if self.sides is not None and not all(self.sides[0] <= side <= self.sides[1] for side in (width, height)):
            raise ValidationError("video", f"{self.title} takes pictures {self.sides[0]} to {self.sides[1]} px wide and "
                                           f"high, got {width}×{height}: scale it first (e.g. to 720 px high)")

    def check_voice(self, seconds: float) -> None:
        lo_hi = self.voice.seconds
        if lo_hi is not None and not lo_hi[0] <= seconds <= lo_hi[1]:
            raise ValidationError("audio", f"{self.title} takes a voice of {_num(lo_hi[0])} to {_num(lo_hi[1])} seconds, "
                                           f"got {seconds:.3f} s")

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


    def check_length(self, seconds: float, setting: float, name: str = "video") -> None:
        """A run's clip (or voice: `name` "audio") within longest_clip and `setting` (SONIFY_MAX_CLIP_SECONDS:
        Settings.max_clip_seconds), before anything is sent or encoded."""
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


# fal's MMAudio v2 (fal.ai/models/fal-ai/mmaudio-v2/llms.txt; FAL-JS `BaseInput`): its own names for the steps and
# the guidance, a float duration and a seed of 0 to 65535 (random when left out).
MMAUDIO_V2_FAL = ModelSpec(
    key="mmaudio-v2-fal",
    provider="fal",
    model_id="fal-ai/mmaudio-v2",
    title="MMAudio v2 · fal",
    description="Foley and ambience for a silent clip (MMAudio v2 on fal). 44.1 kHz mono.",
    params=(
        Param("prompt", "str", "", "What the sound should be, e.g. 'rain on a tin roof, distant thunder'.", required=True, multiline=True),
        Param("negative_prompt", "str", "", "Sounds to avoid (e.g. music).", multiline=True, send_if_empty=False),
        Param("duration", "float", 0, "Seconds of audio; 0 matches the video (rounded up, then trimmed). Cost grows with it.", min=0, max=30),
        Param("num_steps", "int", 25, "Denoising steps: more is slower, not dearer.", min=4, max=50),
        Param("cfg_strength", "float", 4.5, "How strongly the prompt steers the sound.", min=0, max=20, step=0.1),
        Param("mask_away_clip", "bool", False, "Ignore the picture's content; keep only its timing."),
        Param("seed", "int", -1, "Random seed; -1 lets fal pick one (fal takes 0 to 65535). A fixed seed asks for the "
              "same result again: the same job again reuses Sonify's stored result.", min=-1, max=65535, seed=True,
              unsent=-1),
    ),
    video_field="video_url",
    native_audio=(44100, 1),
    window=Window(longest=30.0, shortest=1.0),  # the duration parameter's range
    price=Price(0.001, "second", "duration"),
    resolve=lambda params, seconds: (sent := _mmaudio_resolve(params, seconds)) | {"duration": float(sent["duration"])},
    result_seconds=lambda params, seconds: max(seconds, params["duration"]),
)


MMAUDIO_V2 = ModelSpec(
    key="mmaudio-v2",
    provider="wavespeed",
    model_id="wavespeed-ai/mmaudio-v2",
    title="MMAudio v2 · WaveSpeed",
    description="Foley and ambience for a silent clip (MMAudio v2 on WaveSpeed, or on fal). 44.1 kHz mono.",
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
    offers=(Offer(MMAUDIO_V2_FAL, (("num_inference_steps", "num_steps"), ("guidance_scale", "cfg_strength"))),),
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


# One ThinkSound node for both providers: fal's names (a superset of WaveSpeed's), WaveSpeed as the offer. It replaces
# the two per-provider nodes, which stay loadable (deprecated).
THINKSOUND = dataclasses.replace(
    THINKSOUND_FAL,
    key="thinksound",
    description="Sound for a silent clip (ThinkSound on fal or WaveSpeed). Empty prompt on fal: fal writes one from "
                "the video. num_inference_steps and cfg_scale are fal's only.",
    offers=(Offer(THINKSOUND_WAVESPEED),),
)


# fal's Kling video-to-audio (fal.ai/models/fal-ai/kling-video/video-to-audio/llms.txt; FAL-JS `VideoToAudioInput`):
# an omitted prompt becomes the page's example text, so both are always sent, empty or not ("" accepted: [guess]).
KLING_V2A_FAL = ModelSpec(
    key="kling-video-to-audio-fal",
    provider="fal",
    model_id="fal-ai/kling-video/video-to-audio",
    title="Kling Video-to-Audio · fal",
    description="Sound effects and background music for a 3–20 s clip (Kling on fal).",
    params=(
        Param("sound_effect_prompt", "str", "", "Sound effects to generate.", max_length=200, multiline=True),
        Param("background_music_prompt", "str", "", "Background music to generate.", max_length=200, multiline=True),
        Param("asmr_mode", "bool", False, "Detailed, close-up sound effects. The price is per job either way."),
    ),
    video_field="video_url",
    proxy=ProxyRule(short_side=720, max_fps=30),
    native_audio=(48000, 2),  # [guess], as on WaveSpeed: fal's page says MP3, not its rate
    min_seconds=3.0,
    max_seconds=20.0,
    window=Window(longest=20.0, shortest=3.0),
    price=Price(0.035),
)


KLING_V2A = ModelSpec(
    key="kling-video-to-audio",
    provider="wavespeed",
    model_id="kwaivgi/kling-video-to-audio",
    title="Kling Video-to-Audio · WaveSpeed",
    description="Sound effects and background music for a 3–20 s clip (Kling on WaveSpeed, or on fal).",
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
    offers=(Offer(KLING_V2A_FAL, (("bgm_prompt", "background_music_prompt"),)),),
)


# Tencent's HunyuanVideo-Foley (Tencent-Hunyuan/HunyuanVideo-Foley at df7b005, hunyuanvideo_foley/constants.py): it
# reads at most 15 s of a clip, dropping the frames after it silently (MAX_VIDEO_DURATION_SECONDS; from 1 s,
# MIN_VIDEO_DURATION_SECONDS), so a longer clip is done in windows of up to 15 s; 48 kHz stereo
# (DEFAULT_AUDIO_SAMPLE_RATE, DEFAULT_AUDIO_CHANNELS); guidance 1-10 and 10-100 steps; text cut to 77 tokens.
HUNYUAN_READS = 15.0  # seconds of a clip the model reads


HUNYUAN_WINDOW = Window(longest=HUNYUAN_READS, shortest=1.0)


# WaveSpeed's (wavespeed.ai/docs/docs-api/wavespeed-ai/hunyuan-video-foley, its table read in a copy of the page):
# video, prompt (optional) and seed (-1 random) only; no price on the page; its output's file type is not stated (the
# result is decoded as audio whatever it is: a video with sound or the sound alone).
HUNYUAN_FOLEY_WAVESPEED = ModelSpec(
    key="hunyuan-foley-wavespeed",
    provider="wavespeed",
    model_id="wavespeed-ai/hunyuan-video-foley",
    title="HunyuanVideo-Foley · WaveSpeed",
    description="Foley for a silent clip from a prompt (Tencent's HunyuanVideo-Foley on WaveSpeed). 48 kHz.",
    params=(
        Param("prompt", "str", "", "What the sound should be (optional).", multiline=True, send_if_empty=False),
        SEED,
    ),
    native_audio=(48000, 2),
    window=HUNYUAN_WINDOW,
    price=Price(note="not published on WaveSpeed's page for it; no estimate"),
)


# fal's (fal.ai/models/fal-ai/hunyuan-video-foley/llms.txt; FAL-JS `HunyuanVideoFoleyInput`, `HunyuanVideoFoleyOutput`
# = {video: File}): text_prompt is required by its type, so an empty prompt is refused here before anything is sent
# (what fal does with "" is not documented, and a refusal there may be billed); "$0.1 per 10 seconds", billed here by
# started 10 s [guess: fal does not say how a part is rounded], which is never less than a per-second bill.
HUNYUAN_FOLEY = ModelSpec(
    key="hunyuan-foley",
    provider="fal",
    model_id="fal-ai/hunyuan-video-foley",
    title="HunyuanVideo-Foley · fal",
    description="Foley for a silent clip from a prompt (Tencent's HunyuanVideo-Foley on fal or WaveSpeed). 48 kHz. "
                "negative_prompt, guidance_scale and num_inference_steps are fal's only.",
    params=(
        Param("prompt", "str", "", "What the sound should be, e.g. 'footsteps on frozen ice, a distant crow'. The "
              "model reads about its first 77 tokens.", required=True, multiline=True, sent_as="text_prompt"),
        Param("negative_prompt", "str", "noisy, harsh", "Sounds to avoid; empty asks for none.", multiline=True),
        Param("guidance_scale", "float", 4.5, "How strongly the prompt steers the sound.", min=1, max=10, step=0.1),
        # fal gives no range: the model's own (MIN_INFERENCE_STEPS, MAX_INFERENCE_STEPS)
        Param("num_inference_steps", "int", 50, "Denoising steps: more is slower, not dearer.", min=10, max=100),
        Param("seed", "int", -1, "Random seed; -1 lets the provider pick one. A fixed seed asks for the same result "
              "again: the same job again reuses Sonify's stored result.", min=-1, max=INT32_MAX, seed=True, unsent=-1),
    ),
    video_field="video_url",
    native_audio=(48000, 2),
    window=HUNYUAN_WINDOW,
    price=Price(0.1, "clip", step=10.0, unit=10.0),
    offers=(Offer(HUNYUAN_FOLEY_WAVESPEED),),
)


SYNC_MODE = Param(
    "sync_mode", "choice", "cut_off",
    "When video and audio lengths differ: cut_off trims to the shorter, loop repeats the video, bounce plays it back "
    "and forth, silence pads the audio, remap stretches the video.",
    choices=("cut_off", "bounce", "loop", "silence", "remap"),
)


# sync's lipsync on fal (FAL-JS `LipSyncInput`, `LipSyncV2Input`; fal.ai/models/fal-ai/sync-lipsync/api): the model
# version is a field of the request, sent fixed.
LIPSYNC = {"audio_field": "audio_url", "video_field": "video_url", "output": "video", "proxy": None}


SYNC_LIPSYNC_FAL = ModelSpec(
    key="sync-lipsync-fal",
    provider="fal",
    model_id="fal-ai/sync-lipsync",
    title="Sync Lipsync 1.9 · fal",
    description="Lip-syncs a face in a video to a voice (sync lipsync-1.9.0-beta on fal).",
    params=(SYNC_MODE,),
    fixed=(("model", "lipsync-1.9.0-beta"),),
    **LIPSYNC,
)


SYNC_LIPSYNC = ModelSpec(
    key="sync-lipsync",
    provider="wavespeed",
    model_id="sync/lipsync-1.9.0-beta",
    title="Sync Lipsync 1.9 · WaveSpeed",
    description="Lip-syncs a face in a video to a voice (sync lipsync-1.9.0-beta on WaveSpeed, or on fal).",
    params=(SYNC_MODE,),
    audio_field="audio",
    output="video",
    proxy=None,
    offers=(Offer(SYNC_LIPSYNC_FAL),),
)


SYNC_LIPSYNC_2 = ModelSpec(
    key="sync-lipsync-2",
    provider="fal",
    model_id="fal-ai/sync-lipsync/v2",
    title="Sync Lipsync 2 · fal",
    description="Lip-syncs a face in a video to a voice (sync lipsync-2 on fal; no WaveSpeed page was found for it).",
    params=(SYNC_MODE,),
    fixed=(("model", "lipsync-2"),),
    price=Price(3.0, "clip", unit=60.0),  # fal.ai/models/fal-ai/sync-lipsync/v2/llms.txt: $3 per minute of video
    **LIPSYNC,
)


SYNC_LIPSYNC_2_PRO = ModelSpec(
    key="sync-lipsync-2-pro",
    provider="fal",
    model_id="fal-ai/sync-lipsync/v2/pro",
    title="Sync Lipsync 2 Pro · fal",
    description="Lip-syncs a face in a video to a voice, sharper on teeth and detail (sync lipsync-2-pro on fal).",
    params=(SYNC_MODE,),
    # fal's lipsync-2 page says pro costs "roughly 1.67 times" it; no page of its own was read
    price=Price(note="about 1.67 × lipsync-2's $3 per minute (fal's lipsync-2 page); no estimate"),
    **LIPSYNC,
)


SYNC_3_WAVESPEED = ModelSpec(
    key="sync-3-wavespeed",
    provider="wavespeed",
    model_id="sync/lipsync-3",
    title="Sync-3 · WaveSpeed",
    description="Lip-syncs a face in a video to a voice (sync-3 on WaveSpeed).",
    params=(SYNC_MODE,),
    audio_field="audio",
    output="video",
    proxy=None,
    longest_clip=600.0,  # [guess] no limit is documented; its result comes back whole, as frames
)


SYNC_3 = ModelSpec(
    key="sync-3",
    provider="fal",
    model_id="fal-ai/sync-lipsync/v3",
    title="Sync-3 · fal",
    description="Lip-syncs a face in a video to a voice (sync-3, sync's newest, on fal or WaveSpeed).",
    params=(SYNC_MODE,),
    price=Price(8.0, "clip", unit=60.0),  # fal.ai/models/fal-ai/sync-lipsync/v3/llms.txt: $8 per minute
    offers=(Offer(SYNC_3_WAVESPEED),),
    **LIPSYNC,
)


# fal.ai/models/fal-ai/kling-video/lipsync/audio-to-video/llms.txt: video .mp4/.mov up to 100 MB, 2-10 s, 720p or
# 1080p, each side 720-1920 px; audio 2-60 s, up to 5 MB; $0.014 per second of the input video, in steps of 5 s.
KLING_LIPSYNC = ModelSpec(
    key="kling-lipsync",
    provider="fal",
    model_id="fal-ai/kling-video/lipsync/audio-to-video",
    title="Kling LipSync · fal",
    description="Lip-syncs a face in a 2–10 s, 720p or 1080p video to a voice of 2–60 s (Kling LipSync on fal).",
    params=(),
    min_seconds=2.0,
    max_seconds=10.0,
    sides=(720, 1920),
    voice=Voice(seconds=(2.0, 60.0), max_bytes=5_000_000, suffix=".m4a"),  # AAC: 60 s of WAV would be 10 MB
    video_suffixes=(".mp4", ".mov"),
    price=Price(0.014, "clip", step=5.0),
    **LIPSYNC,
)


# WaveSpeed's LatentSync (wavespeed.ai/docs/docs-api/bytedance/bytedance-latentsync): video and audio only, an MP4;
# $0.15 per 5 s of video ([guess]: per started 5 s). fal's (fal.ai/models/fal-ai/latentsync/llms.txt; FAL-JS
# `latentsyncInput`): guidance_scale 1-2, a seed (random when absent), loop_mode when the voice is longer (no default
# shown: left out unless chosen); $0.20 up to 40 s, then $0.005 per second of output video.
LATENTSYNC_WAVESPEED = ModelSpec(
    key="latentsync-wavespeed",
    provider="wavespeed",
    model_id="bytedance/latentsync",
    title="LatentSync · WaveSpeed",
    description="Lip-syncs a face in a video to a voice (ByteDance LatentSync on WaveSpeed).",
    params=(),
    audio_field="audio",
    output="video",
    proxy=None,
    video_suffixes=(".mp4",),
    price=Price(0.15, "clip", step=5.0, unit=5.0),
)


LATENTSYNC = ModelSpec(
    key="latentsync",
    provider="fal",
    model_id="fal-ai/latentsync",
    title="LatentSync · fal",
    description="Lip-syncs a face in a video to a voice, at a low price (ByteDance LatentSync on fal or WaveSpeed). "
                "guidance_scale, seed and loop_mode are fal's only.",
    params=(
        Param("guidance_scale", "float", 1.0, "How strongly the voice steers the lips.", min=1, max=2, step=0.1),
        Param("seed", "int", -1, "Random seed; -1 lets fal pick one. A fixed seed asks for the same result again: the "
              "same job again reuses Sonify's stored result.", min=-1, max=INT32_MAX, seed=True, unsent=-1),
        Param("loop_mode", "choice", "default", "When the voice is longer than the video: pingpong plays the video "
              "back and forth, loop repeats it; default leaves it to fal.", choices=("default", "pingpong", "loop"),
              unsent="default"),
    ),
    price=Price(0.005, "clip", minimum=0.20),
    offers=(Offer(LATENTSYNC_WAVESPEED),),
    **LIPSYNC,
)


# The command line's models (and the Fetch Result node's list), by key: each model once, under its home spec.
MODELS: dict[str, ModelSpec] = {m.key: m for m in (MMAUDIO_V2, THINKSOUND, THINKSOUND_WAVESPEED, THINKSOUND_FAL, KLING_V2A,
                                                   HUNYUAN_FOLEY, SYNC_LIPSYNC, SYNC_LIPSYNC_2, SYNC_LIPSYNC_2_PRO, SYNC_3,
                                                   KLING_LIPSYNC, LATENTSYNC)}


# Every provider's model Sonify can run, the offers too. Where two specs share one (ThinkSound on fal: its own node's and
# the unified node's home), BY_MODEL_ID holds the plain one (the emulator validates with it; their requests are equal).
ALL_SPECS: tuple[ModelSpec, ...] = tuple(dict.fromkeys(
    [*MODELS.values(), *(o.spec for m in MODELS.values() for o in m.offers)]))


BY_MODEL_ID: dict[tuple[str, str], ModelSpec] = {}


for _spec in sorted(ALL_SPECS, key=lambda spec: bool(spec.offers)):  # a model's plain spec before a home of offers
    BY_MODEL_ID.setdefault((_spec.provider, _spec.model_id), _spec)


def on_provider(spec: ModelSpec, provider: str) -> ModelSpec | None:
    """`spec` (a model shown by its home spec) as `provider` runs it: itself or one of its offers; None if not there."""
    return next((s for s in (spec, *(o.spec for o in spec.offers)) if s.provider == provider), None)


def find(provider: str, name: str) -> ModelSpec | None:
    """The `provider` model named `name`: a catalog key (of the model or of its offer there) or the provider's own id."""
    shown = MODELS.get(name) or next((s for s in ALL_SPECS if s.key == name), None)
    if shown is not None:
        return on_provider(shown, provider)
    return BY_MODEL_ID.get((provider, name))
