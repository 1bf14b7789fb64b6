"""HunyuanVideo-Foley (issue 25) on fal and WaveSpeed, against the emulator over real HTTP. What each provider is sent is
written out here under its own names, as its docs name them (fal: llms.txt and FAL-JS `HunyuanVideoFoleyInput`;
WaveSpeed: its docs page), and read from the emulator's received task input; prices are computed here from fal's
published rule ("$0.1 per 10 seconds", by started 10 s: the rounding is Sonify's guess), not read from the catalog."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
from clips import write_clip
from pack import load_pack, module, outputs

from sonify import journal, media, providers, settings
from sonify.catalog import HUNYUAN_FOLEY
from sonify.errors import ValidationError
from sonify.pipeline import failover
from sonify.waiter import Waiter

FAL_ID, WS_ID = "fal-ai/hunyuan-video-foley", "wavespeed-ai/hunyuan-video-foley"
PROMPT = "footsteps on frozen ice"
RATE = 48000  # the model's (Tencent's DEFAULT_AUDIO_SAMPLE_RATE; WaveSpeed's page: "48 kHz")


@pytest.fixture
def both(emulator, wavespeed_env, fal_env) -> dict[str, str]:
    return {**wavespeed_env, **fal_env}


def clip_of(tmp_path: Path, seconds: float, fps: int = 8) -> media.VideoSource:
    """A 64×48 clip of `seconds` at `fps`, with a flash a second in."""
    frames = round(seconds * fps)
    return media.VideoSource(path=str(write_clip(tmp_path / f"clip-{seconds:g}s.mp4", frames, Fraction(fps), 64, 48,
                                                 flash_at=(fps,))))


def run(clip: media.VideoSource, tmp_path: Path, provider: str = "auto", **params):
    return failover.run(HUNYUAN_FOLEY, {"prompt": PROMPT, **params}, clip, provider=provider,
                        out_dir=tmp_path / "out")


def wire(task) -> dict:
    """The submit body the emulator got, its media URL (checked to be the emulator's own file) left out."""
    sent = dict(task.input)
    field = "video_url" if task.provider == "fal" else "video"
    assert sent.pop(field).startswith("http://127.0.0.1:")
    return sent


def fal_price(seconds: float) -> float:
    """$0.1 per 10 s of the clip, each started 10 s billed whole."""
    return 0.1 * math.ceil(seconds / 10)


# --- one set of names, each provider's own on the wire ---


def test_the_parameters_go_under_each_providers_names(emulator, both, clip, tmp_path):
    run(clip, tmp_path, "fal", negative_prompt="wind, music", guidance_scale=6.0, num_inference_steps=30, seed=7)
    run(clip, tmp_path, "wavespeed", seed=7)
    fal_task, ws_task = emulator.tasks.all()
    assert (fal_task.spec.model_id, ws_task.spec.model_id) == (FAL_ID, WS_ID)
    assert wire(fal_task) == {"text_prompt": PROMPT, "negative_prompt": "wind, music", "guidance_scale": 6.0,
                              "num_inference_steps": 30, "seed": 7}
    assert wire(ws_task) == {"prompt": PROMPT, "seed": 7}


def test_at_their_defaults_fal_gets_its_documented_defaults_and_a_random_seed_goes_as_each_provider_takes_it(
        emulator, both, clip, tmp_path):
    run(clip, tmp_path, "fal")
    run(clip, tmp_path, "wavespeed")
    fal_task, ws_task = emulator.tasks.all()
    # fal: no seed (it draws one); WaveSpeed: -1, its documented "random"
    assert wire(fal_task) == {"text_prompt": PROMPT, "negative_prompt": "noisy, harsh", "guidance_scale": 4.5,
                              "num_inference_steps": 50}
    assert wire(ws_task) == {"prompt": PROMPT, "seed": -1}


@pytest.mark.parametrize(("name", "value"), [("negative_prompt", ""), ("guidance_scale", 6.0),
                                             ("num_inference_steps", 80)])
def test_a_fal_only_parameter_is_refused_by_name_on_wavespeed_before_anything_is_sent(name, value, emulator, both,
                                                                                      clip, tmp_path):
    with pytest.raises(ValidationError) as caught:
        run(clip, tmp_path, "wavespeed", **{name: value})
    assert str(caught.value).startswith(f"{name}: HunyuanVideo-Foley · WaveSpeed has no such input (only fal's has)")
    assert emulator.requests == [] and emulator.submits() == 0


@pytest.mark.parametrize("provider", ["fal", "wavespeed", "auto"])
def test_an_empty_prompt_is_refused_by_name_before_anything_is_sent(provider, emulator, both, clip, tmp_path):
    """fal's type requires text_prompt; what fal makes of an empty one is not documented."""
    with pytest.raises(ValidationError, match=r"^prompt: is required and must not be empty$"):
        run(clip, tmp_path, provider, prompt="  ")
    assert emulator.requests == []


@pytest.mark.parametrize(("name", "value", "refusal"), [
    ("guidance_scale", 10.5, "guidance_scale: must be from 1 to 10, got 10.5"),  # fal's range
    ("num_inference_steps", 9, "num_inference_steps: must be from 10 to 100, got 9"),  # the model's own range
])
def test_a_value_out_of_range_is_refused_by_name(name, value, refusal, emulator, both, clip, tmp_path):
    with pytest.raises(ValidationError, match=f"^{refusal}$"):
        run(clip, tmp_path, "fal", **{name: value})
    assert emulator.requests == []


def test_the_emulator_wants_fals_required_text_prompt(emulator, fal_env, clip_path):
    """A client that leaves text_prompt out gets fal's 422, naming the field."""
    fal = providers.client("fal", settings.current())
    video = fal.upload(clip_path, Waiter())
    with pytest.raises(ValidationError, match="text_prompt"):
        fal.submit(FAL_ID, {"video_url": video}, Waiter())
    assert emulator.submits() == 0


# --- the price, and where auto runs ---


@pytest.mark.parametrize("seconds", [7, 12])
def test_the_estimate_on_fal_is_billed_by_started_ten_seconds(seconds, emulator, both, tmp_path):
    result = run(clip_of(tmp_path, seconds), tmp_path)  # auto, both keys: fal, whose price is known
    info = result.info
    assert info["provider"] == "fal"
    assert info["cost_usd_estimate"] == pytest.approx(fal_price(seconds))
    assert info["cost_usd_estimate"] >= 0.01 * seconds  # never below a bill of $0.01 a second
    assert info["cost_usd_measured"] == pytest.approx(fal_price(seconds))  # by the clip sent
    assert info["provider_choice"]["why"] == (f"its price is known for this clip (${fal_price(seconds):.3f}), "
                                              "WaveSpeed's is not")
    on_wavespeed = run(clip_of(tmp_path, seconds), tmp_path, "wavespeed")
    assert on_wavespeed.info["cost_usd_estimate"] is None  # WaveSpeed publishes no price for it


# --- failover while no task can exist yet: one paid submit in all ---


def _key_refused(emulator, monkeypatch):
    monkeypatch.setenv("FAL_KEY", "someone-else:not-this-account")


def _upload_fails(emulator, monkeypatch):
    monkeypatch.setattr(module("sonify.net.http"), "backoff", lambda attempt, retry_after=None: 0.0)
    for route in (r"^/storage/auth/token", r"^/files/upload$", r"^/storage/upload/initiate"):
        emulator.inject("POST", route, 503, times=20, body={"detail": "injected"})


@pytest.mark.parametrize(("make", "reason"), [
    (_key_refused, "refused the key or the account (FAL_KEY"),
    (_upload_fails, "failed before any task existed"),
], ids=["key refused", "upload 5xx"])
def test_a_job_moves_from_fal_to_wavespeed_while_no_task_exists_and_is_paid_once(make, reason, emulator, both, clip,
                                                                                   tmp_path, monkeypatch):
    make(emulator, monkeypatch)
    result = run(clip, tmp_path)  # auto: fal first, its price being known
    assert result.info["provider"] == "wavespeed" and result.info["status"] == "completed"
    assert emulator.submits() == emulator.submits(WS_ID) == 1  # one paid submit in all
    (passed,) = result.info["provider_choice"]["not_used"]
    assert passed["provider"] == "fal" and passed["why"].startswith(reason), passed
    rows = journal.Journal(Path(both["SONIFY_STATE_DIR"]) / journal.JOURNAL_FILE).recent()
    assert [r.status for r in rows if r.provider == "fal"] == [journal.Status.MOVED]
    assert [r.status for r in rows if r.provider == "wavespeed"] == [journal.Status.COMPLETED]


# --- long clips, results, the cache ---


def test_a_20_s_clip_is_done_in_windows_of_at_most_15_s_and_joined(emulator, both, tmp_path):
    result = run(clip_of(tmp_path, 20), tmp_path, "fal")
    windows = result.info["windows"]
    assert len(windows) == 2 == emulator.submits(FAL_ID)
    lengths = [w["end"] - w["start"] for w in windows]
    assert all(0 < length <= 15 for length in lengths) and windows[0]["start"] == 0 and windows[-1]["end"] == 20
    assert result.info["cost_usd_estimate"] == pytest.approx(sum(fal_price(length) for length in lengths))
    assert result.sample_rate == RATE and result.audio.shape[1] == 20 * RATE  # the clip's length, to the sample


def test_the_emulators_model_reads_at_most_15_s_of_a_clip(emulator, fal_env, tmp_path):
    """As Tencent's code drops the frames after 15 s: a client that sends more gets 15 s of sound back."""
    fal = providers.client("fal", settings.current())
    video = fal.upload(Path(clip_of(tmp_path, 16).path), Waiter())
    task_id = fal.submit(FAL_ID, {"video_url": video, "text_prompt": PROMPT}, Waiter())
    state = fal.wait(task_id, Waiter(), lambda *_: None, module("sonify.pipeline").wait_limits(settings.current()),
                      model_id=FAL_ID)
    (url,) = state.outputs
    path = fal.http.download(url, tmp_path / "result.mp4", max_bytes=10_000_000, waiter=Waiter(), task_id=task_id)
    samples, rate = media.decode_audio(path)
    assert rate == RATE and samples.shape[0] == 2 and abs(samples.shape[1] / rate - 15.0) < 0.05
    assert state.extra == {}  # fal's answer is {video: File} alone (FAL-JS HunyuanVideoFoleyOutput)


@pytest.mark.parametrize("kind", ["mp4", "wav"])
def test_wavespeeds_result_is_used_whether_a_video_with_sound_or_the_sound_alone(kind, emulator, both, clip, tmp_path):
    """WaveSpeed's page says only "Array of URLs to the generated content"."""
    emulator.formats[WS_ID] = kind
    result = run(clip, tmp_path, "wavespeed")
    assert result.info["status"] == "completed" and result.sample_rate == RATE
    assert result.audio.shape == (2, RATE)  # 1 s, stereo


def test_a_stored_result_is_per_provider(emulator, both, clip, tmp_path):
    first = {p: run(clip, tmp_path, p, seed=5) for p in ("fal", "wavespeed")}
    assert emulator.submits() == 2 and first["fal"].info["task_id"] != first["wavespeed"].info["task_id"]
    for provider in ("fal", "wavespeed"):
        again = run(clip, tmp_path, provider, seed=5)
        assert again.info["cached"] and again.info["task_id"] == first[provider].info["task_id"]
        assert again.info["provider"] == provider
    assert emulator.submits() == 2  # no new submit


# --- the node and the command line ---


def test_the_node_runs_end_to_end_through_the_loaded_pack(emulator, both, clip):
    cls = load_pack().NODE_CLASS_MAPPINGS["SonifyHunyuanFoley"]
    assert load_pack().NODE_DISPLAY_NAME_MAPPINGS["SonifyHunyuanFoley"] == "HunyuanVideo-Foley · fal or WaveSpeed"
    assert list(cls.INPUT_TYPES()["optional"])[-1] == "provider"
    audio, video, job = outputs(getattr(cls(), cls.FUNCTION))(
        video=module("nodes.comfy").FileVideo(clip.path), **{**HUNYUAN_FOLEY.defaults(), "prompt": PROMPT})
    info = json.loads(job)
    assert info["model"] == FAL_ID and info["status"] == "completed"  # auto with both keys: fal's price is known
    assert audio["sample_rate"] == RATE and tuple(audio["waveform"].shape) == (1, 2, RATE)
    assert video.get_stream_source()
    (task,) = emulator.tasks.all()
    assert wire(task)["text_prompt"] == PROMPT


@pytest.mark.parametrize("provider", ["fal", "wavespeed"])
def test_the_command_line_runs_it_on_either_provider(provider, emulator, both, clip_path, tmp_path, capsys):
    from sonify import cli

    assert cli.main(["run", "hunyuan-foley", "--video", str(clip_path), "--prompt", PROMPT, "--provider", provider,
                     "-o", str(tmp_path / "out"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["provider"] == provider and record["job"]["provider_choice"]["ran"] == provider
    assert emulator.submits() == 1 and Path(record["path"]).is_file()
