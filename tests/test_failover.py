"""The provider as a choice, and failover that never pays twice, against the emulator over real HTTP.

A model on both providers shows one set of names; each provider gets its own (written out here as its docs name
them, never read from the catalog). `auto` runs where a key is (with both: SONIFY_PROVIDER_ORDER, else the cheaper for
the clip; a tie keeps the node's own provider first). A job moves to the other provider only while no task can exist
yet — counted at the emulator: one accepted submit in all — and never once a task id is known."""

from __future__ import annotations

import json
import socket
from fractions import Fraction
from pathlib import Path

import pytest
from clips import write_clip

from sonify import journal, media
from sonify.catalog import KLING_V2A, MMAUDIO_V2, THINKSOUND
from sonify.errors import JobTimedOut, ProviderError, SonifyError, ValidationError
from sonify.net import http
from sonify.pipeline import failover

WS_MMAUDIO, FAL_MMAUDIO = "wavespeed-ai/mmaudio-v2", "fal-ai/mmaudio-v2"
WS_SUBMIT = rf"^/api/v3/{WS_MMAUDIO}$"
WS_RESULT = r"^/api/v3/predictions/[^/]+/result$"


@pytest.fixture
def both(emulator, wavespeed_env, fal_env) -> dict[str, str]:
    """Both providers' keys, both pointed at the emulator."""
    return {**wavespeed_env, **fal_env}


def run(clip: media.VideoSource, tmp_path: Path, provider: str = "auto", spec=MMAUDIO_V2, **params):
    lines: list[str] = []
    result = failover.run(spec, {"prompt": "rain", **params} if spec is MMAUDIO_V2 else params, clip,
                          provider=provider, out_dir=tmp_path / "out", on_progress=lambda text, _: lines.append(text))
    result.info["lines"] = lines
    return result


def wire(task, media_field: str) -> dict:
    """The submit body the emulator got, without its media URL (checked to be the emulator's own file)."""
    sent = dict(task.input)
    assert sent.pop(media_field).startswith("http://127.0.0.1:")
    return sent


def rows(env: dict[str, str]) -> list[journal.JobRow]:
    return journal.Journal(Path(env["SONIFY_STATE_DIR"]) / journal.JOURNAL_FILE).recent()


def no_retry_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idempotent requests are still retried as ever, without the pauses between tries (retries are not what these
    tests are about; a connection refused five times would otherwise take some 15 s)."""
    monkeypatch.setattr(http, "backoff", lambda attempt, retry_after=None: 0.0)


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --- one set of names, each provider's own on the wire ---


def test_mmaudio_parameters_go_under_each_providers_names(emulator, both, clip, tmp_path):
    shown = {"num_inference_steps": 30, "guidance_scale": 6.0, "seed": 11, "duration": 2, "mask_away_clip": True}
    on_wavespeed = run(clip, tmp_path, "wavespeed", **shown)
    on_fal = run(clip, tmp_path, "fal", **shown)
    ws_task, fal_task = emulator.tasks.all()
    assert ws_task.spec.model_id == WS_MMAUDIO and fal_task.spec.model_id == FAL_MMAUDIO
    assert wire(ws_task, "video") == {"prompt": "rain", "duration": 2, "num_inference_steps": 30, "guidance_scale": 6.0,
                                      "mask_away_clip": True, "seed": 11}
    sent = dict(fal_task.input)
    assert sent.pop("video_url").startswith(emulator.files_url)
    assert sent == {"prompt": "rain", "duration": 2.0, "num_steps": 30, "cfg_strength": 6.0, "mask_away_clip": True,
                    "seed": 11}
    assert (on_wavespeed.info["provider"], on_fal.info["provider"]) == ("wavespeed", "fal")
    assert on_fal.info["provider_choice"] == {"asked": "fal", "ran": "fal", "why": "chosen", "not_used": []}


def test_a_random_seed_is_left_out_on_fal_and_sent_as_minus_one_on_wavespeed(emulator, both, clip, tmp_path):
    run(clip, tmp_path, "wavespeed")
    run(clip, tmp_path, "fal")
    ws_task, fal_task = emulator.tasks.all()
    assert ws_task.input["seed"] == -1 and "seed" not in fal_task.input  # fal draws one (0 to 65535)


def test_klings_music_prompt_is_fals_background_music_prompt(emulator, both, tmp_path):
    clip = media.VideoSource(path=str(write_clip(tmp_path / "three.mp4", 72, Fraction(24), 64, 48, flash_at=(30,))))
    shown = {"sound_effect_prompt": "tyres screech", "bgm_prompt": "", "asmr_mode": False}
    run(clip, tmp_path, "wavespeed", spec=KLING_V2A, **shown)
    run(clip, tmp_path, "fal", spec=KLING_V2A, **shown)
    ws_task, fal_task = emulator.tasks.all()
    assert wire(ws_task, "video") == {"sound_effect_prompt": "tyres screech", "asmr_mode": False}  # empty: left out
    # both prompts always on fal: an omitted one becomes fal's example text
    assert wire(fal_task, "video_url") == {"sound_effect_prompt": "tyres screech", "background_music_prompt": "",
                                           "asmr_mode": False}


def test_a_parameter_only_fal_has_is_refused_by_name_on_wavespeed_before_anything_is_sent(emulator, both, clip,
                                                                                       tmp_path):
    with pytest.raises(ValidationError) as caught:
        run(clip, tmp_path, "wavespeed", spec=THINKSOUND, prompt="rain", cfg_scale=7.0)
    assert str(caught.value).startswith("cfg_scale: ThinkSound · WaveSpeed has no such input (only fal's has)")
    assert emulator.requests == [] and emulator.submits() == 0
    # at its default it is simply not sent
    run(clip, tmp_path, "wavespeed", spec=THINKSOUND, prompt="rain", seed=3)
    (task,) = emulator.tasks.all()
    assert task.spec.model_id == "wavespeed-ai/think-sound" and wire(task, "video") == {"prompt": "rain", "seed": 3}


def test_auto_passes_a_provider_that_cannot_take_the_inputs_and_says_why(emulator, both, clip, tmp_path):
    result = run(clip, tmp_path, "auto", spec=THINKSOUND, prompt="rain", cfg_scale=7.0, seed=1)
    assert result.info["provider"] == "fal"  # the ThinkSound node's own provider: first anyway, and the only one
    choice = result.info["provider_choice"]
    assert choice["why"] == "the only provider with a key that takes these inputs"
    assert choice["not_used"][0]["provider"] == "wavespeed" and choice["not_used"][0]["why"].startswith("cfg_scale:")
    # fal's MMAudio seed stops at 65535: auto runs it on WaveSpeed, a choice of fal is refused by name
    high = run(clip, tmp_path, "auto", seed=100000)
    assert high.info["provider"] == "wavespeed"
    assert high.info["provider_choice"]["not_used"] == [
        {"provider": "fal", "why": "seed: must be from -1 to 65535, got 100000 (on fal)"}]
    with pytest.raises(ValidationError, match=r"^seed: must be from -1 to 65535, got 100000 \(on fal\)$"):
        run(clip, tmp_path, "fal", seed=100000)


def test_auto_runs_where_the_key_is(emulator, fal_env, clip, tmp_path, monkeypatch):
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    result = run(clip, tmp_path)
    assert result.info["provider"] == "fal" and emulator.submits(FAL_MMAUDIO) == 1
    assert result.info["provider_choice"]["not_used"] == [{"provider": "wavespeed", "why": "no key"}]
    assert "on fal (the only provider with a key that takes these inputs) · WaveSpeed not used: no key" in \
        result.info["lines"]


def test_auto_follows_the_order_set_and_else_the_cheaper_for_the_clip(emulator, both, clip, tmp_path, monkeypatch):
    tie = run(clip, tmp_path)  # 1 s of clip: $0.001 on either; a tie keeps the node's own provider
    assert tie.info["provider"] == "wavespeed"
    assert tie.info["provider_choice"]["why"] == "as cheap as fal for this clip ($0.001); the catalog's order"
    monkeypatch.setenv("SONIFY_PROVIDER_ORDER", "fal,wavespeed")
    ordered = run(clip, tmp_path, prompt="wind")
    assert ordered.info["provider"] == "fal" and ordered.info["provider_choice"]["why"] == "first in SONIFY_PROVIDER_ORDER"
    monkeypatch.setenv("SONIFY_PROVIDER_ORDER", "fal,fal")
    with pytest.raises(Exception, match="SONIFY_PROVIDER_ORDER must name providers"):
        run(clip, tmp_path)


# --- failover while no task can exist yet: one accepted submit in all ---


def _unreachable(emulator, monkeypatch):
    no_retry_pauses(monkeypatch)
    monkeypatch.setenv("SONIFY_WAVESPEED_URL", closed_port())


def _key_refused(emulator, monkeypatch):
    monkeypatch.setenv("WAVESPEED_API_KEY", "ws-not-this-accounts-key-5c2e")


def _upload_fails(emulator, monkeypatch):
    emulator.inject("POST", r"^/api/v3/media/uploads$", 503, times=6, retry_after=0)  # each try of the ticket


def _submit_5xx(emulator, monkeypatch):
    emulator.inject("POST", WS_SUBMIT, 502)  # WaveSpeed's listing, asked at once, shows no task from it


def _submit_unanswered(emulator, monkeypatch):
    emulator.drop("POST", WS_SUBMIT)  # no answer at all; its listing shows no task from it


FAILURES = {
    "unreachable": (_unreachable, "unreachable (wavespeed: no connection to http://127.0.0.1:"),
    "key refused": (_key_refused, "refused the key or the account (WAVESPEED_API_KEY is not valid"),
    "upload 5xx": (_upload_fails, "failed before any task existed (WaveSpeed answered HTTP 503"),
    "submit 5xx": (_submit_5xx, "failed before any task existed (WaveSpeed answered HTTP 502"),
    "submit unanswered": (_submit_unanswered, "failed before any task existed (wavespeed: no answer from"),
}


@pytest.mark.parametrize("failure", FAILURES, ids=str)
def test_a_job_moves_to_fal_while_no_task_exists_at_wavespeed_and_is_paid_once(failure, emulator, both, clip, tmp_path,
                                                                                monkeypatch):
    make, reason = FAILURES[failure]
    make(emulator, monkeypatch)
    result = run(clip, tmp_path)
    assert result.info["provider"] == "fal" and result.info["status"] == "completed"
    assert emulator.submits() == emulator.submits(FAL_MMAUDIO) == 1  # one paid submit in all
    choice = result.info["provider_choice"]
    assert choice["ran"] == "fal" and choice["not_used"][0]["provider"] == "wavespeed"
    assert choice["not_used"][0]["why"].startswith(reason), choice
    assert any(line.startswith("WaveSpeed: ") and "nothing was created there, so the job moves to fal" in line
               for line in result.info["lines"])
    moved, ran = [r for r in rows(both) if r.provider == "wavespeed"], [r for r in rows(both) if r.provider == "fal"]
    assert [r.status for r in moved] == [journal.Status.MOVED] and moved[0].task_id is None  # both attempts kept
    assert moved[0].error.startswith(reason) and moved[0].error.endswith("; moved to fal")
    assert [(r.status, r.delivered, r.task_id) for r in ran] == [(journal.Status.COMPLETED, True, result.info["task_id"])]


def test_a_long_clip_stays_where_one_of_its_windows_may_have_a_task(emulator, both, tmp_path):
    """A run of several jobs moves only if none of them can have a task: here one window's submit failed before its
    task existed and the other window ran (and was paid) at WaveSpeed, so the run stays there and fal is never asked."""
    long_clip = media.VideoSource(path=str(write_clip(tmp_path / "two-windows.mp4", 40, Fraction(1), 16, 16)))
    emulator.inject("POST", WS_SUBMIT, 502)  # the first window's submit; WaveSpeed's listing shows no task from it
    with pytest.raises(SonifyError, match="HTTP 502"):
        run(long_clip, tmp_path)
    assert emulator.submits(FAL_MMAUDIO) == 0 and emulator.submits(WS_MMAUDIO) == 1
    assert not [r for r in rows(both) if r.status == journal.Status.MOVED]


def test_a_wait_for_a_submit_slot_past_the_queue_bound_moves_the_job(emulator, both, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", "2,1/60")  # one start a minute on this WaveSpeed account
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "5")
    run(clip, tmp_path, "wavespeed", prompt="the minute's one start")
    result = run(clip, tmp_path)  # WaveSpeed's next start is some 60 s off, past the 5 s bound: fal at once
    assert result.info["provider"] == "fal"
    assert result.info["provider_choice"]["not_used"] == [
        {"provider": "wavespeed", "why": "no submit slot within the queue bound (SONIFY_QUEUE_TIMEOUT)"}]
    assert emulator.submits(WS_MMAUDIO) == 1 and emulator.submits(FAL_MMAUDIO) == 1


def test_fal_first_moves_to_wavespeed_when_fal_refuses_the_key(emulator, both, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_PROVIDER_ORDER", "fal,wavespeed")
    monkeypatch.setenv("FAL_KEY", "someone-else:not-this-account")
    result = run(clip, tmp_path)
    assert result.info["provider"] == "wavespeed" and emulator.submits() == 1
    (passed,) = result.info["provider_choice"]["not_used"]
    assert passed["provider"] == "fal" and passed["why"].startswith("refused the key or the account (FAL_KEY")


def test_a_fal_submit_without_an_answer_never_moves_the_job(emulator, both, clip, tmp_path, monkeypatch):
    """fal lists finished requests only: a 5xx submit's request may still be queued, so the job stays and nothing is
    sent to WaveSpeed (the journal keeps it open for the next run to look for)."""
    monkeypatch.setenv("SONIFY_PROVIDER_ORDER", "fal,wavespeed")
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "0.5")
    monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "0.5")
    emulator.inject("POST", rf"^/{FAL_MMAUDIO}$", 500, body={"detail": "ingress"})
    with pytest.raises(JobTimedOut, match="Nothing was submitted again"):
        run(clip, tmp_path)
    assert emulator.submits() == 0 and not [r for r in emulator.requests if r.path.startswith("/api/v3/wavespeed")]
    (row,) = rows(both)
    assert row.provider == "fal" and row.status == journal.Status.UNKNOWN


def test_an_explicit_provider_never_moves(emulator, both, clip, tmp_path, monkeypatch):
    _key_refused(emulator, monkeypatch)
    with pytest.raises(ProviderError, match="WAVESPEED_API_KEY is not valid"):
        run(clip, tmp_path, "wavespeed")
    assert emulator.submits() == 0
    assert rows(both) == []  # nothing was created: the intent row went with the run
    moved = run(clip, tmp_path, "wavespeed, then fal")
    assert moved.info["provider"] == "fal" and emulator.submits() == 1


# --- once a task id is known, the job stays where it is ---


def test_no_failover_once_the_submit_was_answered(emulator, both, clip, tmp_path, monkeypatch):
    no_retry_pauses(monkeypatch)
    emulator.drop("GET", WS_RESULT, times=100)  # every poll after the submit's answer: the connection killed
    with pytest.raises(ProviderError) as caught:
        run(clip, tmp_path)
    assert caught.value.no_task is None and caught.value.task_id
    assert emulator.submits() == emulator.submits(WS_MMAUDIO) == 1  # nothing at fal
    (row,) = rows(both)
    assert row.provider == "wavespeed" and row.status == journal.Status.DETACHED and row.task_id == caught.value.task_id


def test_the_next_run_resumes_the_task_where_it_is(emulator, both, clip, tmp_path, monkeypatch):
    no_retry_pauses(monkeypatch)
    fault = emulator.drop("GET", WS_RESULT, times=6)  # one poll's every try
    with pytest.raises(ProviderError) as caught:
        run(clip, tmp_path)
    assert fault.taken
    again = run(clip, tmp_path)  # WaveSpeed is back: the same task, waited on again
    assert again.info["provider"] == "wavespeed" and again.info["resumed"]
    assert again.info["task_id"] == caught.value.task_id and emulator.submits() == 1


def test_a_lost_submit_answer_is_found_where_it_was_sent(emulator, both, clip, tmp_path):
    emulator.lose("POST", WS_SUBMIT)  # the task is made, the answer lost: WaveSpeed's listing shows it
    result = run(clip, tmp_path)
    assert result.info["provider"] == "wavespeed" and emulator.submits() == 1
    (task,) = emulator.tasks.all()
    assert result.info["task_id"] == task.id


# --- the result cache is per provider ---


def test_a_stored_result_is_per_provider(emulator, both, clip, tmp_path):
    first = {p: run(clip, tmp_path, p, seed=5) for p in ("wavespeed", "fal")}
    assert emulator.submits() == 2 and first["wavespeed"].info["task_id"] != first["fal"].info["task_id"]
    for provider in ("wavespeed", "fal"):
        again = run(clip, tmp_path, provider, seed=5)
        assert again.info["cached"] and again.info["task_id"] == first[provider].info["task_id"]
    auto = run(clip, tmp_path, "auto", seed=5)
    assert auto.info["cached"] and auto.info["provider"] == "wavespeed"
    assert auto.info["provider_choice"]["why"] == "the journal has this job there: its stored result"
    assert emulator.submits() == 2


def test_auto_goes_back_to_the_provider_that_has_the_jobs_unfinished_task(emulator, both, clip, tmp_path, monkeypatch):
    """A run moved to fal, whose task then ran past the wait: the next auto run resumes it at fal — even with
    WaveSpeed (the first by price) back — rather than paying WaveSpeed for the same job."""
    no_retry_pauses(monkeypatch)
    _key_refused(emulator, monkeypatch)
    cut = emulator.drop("GET", rf"^/{FAL_MMAUDIO}/requests/", times=1000)  # every look at fal's request after its submit
    with pytest.raises(ProviderError) as caught:
        run(clip, tmp_path)
    assert caught.value.task_id and emulator.submits() == emulator.submits(FAL_MMAUDIO) == 1
    monkeypatch.setenv("WAVESPEED_API_KEY", both["WAVESPEED_API_KEY"])
    cut.times = 0  # fal answers again
    again = run(clip, tmp_path)
    assert again.info["provider"] == "fal" and again.info["resumed"] and again.info["task_id"] == caught.value.task_id
    assert again.info["provider_choice"]["why"] == f"the journal has this job there: its unfinished task {caught.value.task_id}"
    assert emulator.submits() == 1


# --- the command line ---


@pytest.mark.parametrize(("model", "provider", "options"), [
    ("mmaudio-v2", "fal", ["--prompt", "rain"]),
    ("kling-video-to-audio", "fal", ["--bgm_prompt", "slow jazz"]),
    ("thinksound", "wavespeed", ["--prompt", "rain"]),
    ("thinksound", "fal", []),
])
def test_the_command_line_takes_the_provider(model, provider, options, emulator, both, tmp_path, capsys):
    from sonify import cli

    clip = write_clip(tmp_path / "three.mp4", 72, Fraction(24), 64, 48, flash_at=(30,))  # Kling takes 3 s and up
    assert cli.main(["run", model, "--video", str(clip), *options, "--provider", provider,
                     "-o", str(tmp_path / "out"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["provider"] == provider and record["job"]["provider_choice"]["ran"] == provider
    assert emulator.submits() == 1 and Path(record["path"]).is_file()


def test_a_model_on_one_provider_takes_no_provider_option(emulator, both, clip_path, capsys):
    from sonify import cli

    with pytest.raises(SystemExit) as usage:
        cli.main(["run", "thinksound-wavespeed", "--video", str(clip_path), "--provider", "fal"])
    assert usage.value.code == 2 and "unrecognized arguments: --provider" in capsys.readouterr().err
