"""Spend you can see and cap, against the emulator: the ledger in the journal (estimate before the submit, the
measured figure after), the caps checked before anything is uploaded — across processes — the balance floor, a
batch stopping at a cap, `sonify spend`, and the receipt every written file carries."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import pytest
from clips import write_clip
from conftest import EMULATOR_KEY, FAL_KEY
from pack import ROOT

from sonify import budget, cli, media, pipeline, settings
from sonify import journal as jobs
from sonify.catalog import KLING_V2A, MMAUDIO_V2, THINKSOUND_FAL
from sonify.errors import BudgetExceeded, ConfigurationError
from sonify.pipeline import receipts, spend

MMAUDIO = MMAUDIO_V2.model_id
RAIN = {"prompt": "rain"}


def run(clip: media.VideoSource, tmp_path: Path, params: dict | None = None, **options) -> pipeline.Result:
    return pipeline.run(MMAUDIO_V2, params or RAIN, clip, out_dir=tmp_path / "out", **options)


def clip_of(tmp_path: Path, name: str, seconds: float = 1.0, fps: int = 24, flash: int = 8) -> Path:
    return write_clip(tmp_path / name, round(seconds * fps), Fraction(fps), 64, 48, flash_at=(flash,))


def journal() -> jobs.Journal:
    return jobs.Journal(Path(os.environ["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)


# ---------------------------------------------------------------- the ledger


def test_every_job_enters_the_ledger_at_its_estimate_before_the_submit_and_its_measured_figure_after(
        emulator, wavespeed_env, clip, tmp_path):
    result = run(clip, tmp_path)
    row = journal().find_task("wavespeed", result.info["task_id"])
    assert row.cost_usd == pytest.approx(0.001) and row.spent_at is not None and row.spent_at <= row.updated_at
    assert row.run_id  # the run it counts for
    # MMAudio is priced per second of sound: its measured figure is the sound delivered, at $0.001 a second
    with av.open(result.info["result_file"]) as made:
        stream = made.streams.audio[0]
        delivered = sum(frame.samples for frame in made.decode(stream)) / stream.rate
    # (in whole seconds, as MMAudio's duration asks for them: AAC pads the last frame)
    assert row.measured == {"quantity": round(delivered), "unit": "second of sound", "from": "the sound delivered"}
    assert row.measured_usd == pytest.approx(0.001 * round(delivered))
    assert result.info["cost_usd_measured"] == row.measured_usd
    assert spend.spent().day == pytest.approx(row.measured_usd)


def test_a_compute_priced_fal_job_is_measured_by_the_inference_time_fal_reports(emulator, fal_env, clip, tmp_path):
    result = pipeline.run(THINKSOUND_FAL, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert result.info["cost_usd_estimate"] is None  # billed per compute second: nothing is known before the run
    task_id = result.info["task_id"]
    # what fal's queue says the request used (docs.fal.ai …/inference/queue: metrics.inference_time, seconds)
    asked = urllib.request.Request(f"{emulator.url}/fal-ai/thinksound/requests/{task_id}/status",
                                   headers={"Authorization": f"Key {FAL_KEY}"})
    with urllib.request.urlopen(asked, timeout=10) as answer:
        seconds = json.load(answer)["metrics"]["inference_time"]
    assert seconds > 0
    expected = round(0.001 * round(seconds, 3), 6)  # $0.001 per compute second (fal.ai/models/fal-ai/thinksound)
    row = journal().find_task("fal", task_id)
    assert row.measured_usd == pytest.approx(expected) and result.info["cost_usd_measured"] == pytest.approx(expected)
    assert row.measured == {"quantity": round(seconds, 3), "unit": "compute second", "from": "metrics.inference_time"}
    (entry,) = journal().spend_entries(0.0)
    assert entry.basis == "measured" and entry.usd == pytest.approx(expected)


V5_JOBS = """
CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT, provider TEXT NOT NULL, model TEXT NOT NULL,
    task_id TEXT, status TEXT NOT NULL, cacheable INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}', cost_usd REAL, source_path TEXT, outputs TEXT NOT NULL DEFAULT '[]',
    extra TEXT NOT NULL DEFAULT '{}', result_path TEXT, error TEXT, owner TEXT, heartbeat REAL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, request TEXT);
PRAGMA user_version = 5;
"""


def test_a_journal_from_before_the_ledger_is_read_and_its_submitted_jobs_counted(state):
    path = state / jobs.JOURNAL_FILE
    state.mkdir(parents=True)
    now = __import__("time").time()
    with sqlite3.connect(path) as old:  # as version 5 made it: no ledger columns, no budget table
        old.executescript(V5_JOBS)
        rows = [("f1", "abc123", "completed", 0.008), ("f2", None, "intent", 0.008), (None, "def456", "completed", None)]
        old.executemany("INSERT INTO jobs (fingerprint, provider, model, task_id, status, params, cost_usd, created_at,"
                        " updated_at) VALUES (?, 'wavespeed', 'wavespeed-ai/mmaudio-v2', ?, ?, '{\"seed\": 3}', ?, ?, ?)",
                        [(*row, now, now) for row in rows])
    opened = jobs.Journal(path)
    row = opened.find_task("wavespeed", "abc123")
    assert row.params == {"seed": 3} and row.spent_at == row.created_at and row.measured_usd is None
    assert opened.find_task("wavespeed", "def456").spent_at is None  # only fetched: not this journal's spend
    assert opened.spent().day == pytest.approx(0.008)  # the submitted job, at its estimate; the intent never sent
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == jobs.SCHEMA_VERSION


# ---------------------------------------------------------------- caps


def test_a_daily_cap_refuses_the_job_that_would_pass_it_before_any_request(emulator, wavespeed_env, clip, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "0.0015")
    run(clip, tmp_path)
    seen = len(emulator.requests)
    with pytest.raises(BudgetExceeded) as refused:
        run(clip, tmp_path)  # seed -1: a new job of $0.001, and $0.001 is spent today
    assert len(emulator.requests) == seen and emulator.submits(MMAUDIO) == 1  # not one request
    message = str(refused.value)
    assert message.startswith("SONIFY_MAX_USD_PER_DAY: this job (est. $0.001) would pass the daily cap of $0.002")
    assert "$0.001 spent today so far" in message and "nothing was sent" in message
    assert refused.value.input_name == "SONIFY_MAX_USD_PER_DAY"


def test_stored_results_cost_nothing_and_pass_any_cap(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    first = run(clip, tmp_path, {"prompt": "rain", "seed": 7}, variations=2)  # seeds 7 and 8
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "0")
    again = run(clip, tmp_path, {"prompt": "rain", "seed": 7}, variations=2)
    assert again.info["cached"] and again.info["task_id"] == first.info["task_id"]
    assert run(clip, tmp_path, {"prompt": "rain", "seed": 8}).info["cached"]
    with pytest.raises(BudgetExceeded):
        run(clip, tmp_path, {"prompt": "rain", "seed": 7}, variations=3)  # seed 9 is a new job
    assert emulator.submits(MMAUDIO) == 2


@pytest.mark.parametrize("text", ["abc", "-1", "nan", "inf", "1e999"])
def test_a_cap_that_is_not_a_dollar_amount_is_named_with_its_form(emulator, wavespeed_env, clip, tmp_path,
                                                                   monkeypatch, text):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_MONTH", text)
    with pytest.raises(ConfigurationError, match=r"^SONIFY_MAX_USD_PER_MONTH must be a number of US dollars, 0 or more"):
        run(clip, tmp_path)
    assert emulator.requests == []


def test_takes_count_as_their_sum(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "0.0035")  # a take of 1 s: $0.001; four: $0.004
    with pytest.raises(BudgetExceeded, match=r"^SONIFY_MAX_USD_PER_DAY: this run's 4 takes \(est\. \$0\.004\) would "
                                             r"pass the daily cap of \$0\.004: \$0\.000 spent today so far"):
        run(clip, tmp_path, variations=4)
    assert emulator.requests == []  # refused whole: no take was uploaded or sent
    result = run(clip, tmp_path, variations=3)
    assert emulator.submits(MMAUDIO) == 3
    run_id = journal().find_task("wavespeed", result.info["task_id"]).run_id
    assert spend.spent(run_id).run == pytest.approx(0.003, abs=1e-5) == pytest.approx(spend.spent().day, abs=1e-9)


def test_a_windowed_clip_counts_as_the_sum_of_its_windows(emulator, wavespeed_env, tmp_path, monkeypatch):
    long = media.VideoSource(path=str(clip_of(tmp_path, "long.mp4", seconds=21, fps=8)))  # Kling: 2 windows
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "0.05")  # one window ($0.035) fits, two ($0.070) do not
    with pytest.raises(BudgetExceeded, match=r"this run's 2 windows \(est\. \$0\.070\) would pass the daily cap"):
        pipeline.run(KLING_V2A, {}, long, out_dir=tmp_path / "out")
    assert emulator.requests == []
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "0.07")
    result = pipeline.run(KLING_V2A, {}, long, out_dir=tmp_path / "out")
    assert emulator.submits(KLING_V2A.model_id) == 2
    assert result.info["cost_usd_measured"] == pytest.approx(0.07)  # a job each, measured when delivered
    assert spend.spent().day == pytest.approx(0.07)
    tags = json.loads(media.tags(result.video_path)["sonify"])  # the joined file names every window's task
    assert tags["task_ids"] == [w["task_id"] for w in result.info["windows"]] and tags["cost_usd"] == pytest.approx(0.07)


def test_a_run_cap_holds_for_one_run_only(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_RUN", "0.0025")
    with pytest.raises(BudgetExceeded, match=r"^SONIFY_MAX_USD_PER_RUN: this run's 3 takes \(est\. \$0\.003\) would "
                                             r"pass the per-run cap"):
        run(clip, tmp_path, variations=3)
    run(clip, tmp_path, variations=2)
    run(clip, tmp_path, variations=2)  # a run of its own: what the last one spent is not its
    assert emulator.submits(MMAUDIO) == 4


def test_the_balance_floor_refuses_the_submit(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    emulator.balance = 0.5
    monkeypatch.setenv("SONIFY_MIN_BALANCE_USD", "0.5")  # $0.500 less the job's $0.001 is under it
    with pytest.raises(BudgetExceeded, match=r"^SONIFY_MIN_BALANCE_USD: your wavespeed balance is \$0\.500 less this "
                                             r"job's estimate of \$0\.001, under the floor of \$0\.500"):
        run(clip, tmp_path)
    assert [(r.method, r.path) for r in emulator.requests] == [("GET", "/api/v3/balance")]  # nothing else
    emulator.balance = 0.502
    run(clip, tmp_path)
    assert emulator.submits(MMAUDIO) == 1


def test_settings_saved_from_comfyui_are_obeyed_and_the_environment_wins(emulator, wavespeed_env, clip, tmp_path,
                                                                         monkeypatch):
    saved = spend.save({"SONIFY_MAX_USD_PER_DAY": "0", "SONIFY_MAX_USD_PER_RUN": None})
    assert saved["SONIFY_MAX_USD_PER_DAY"] == 0 and saved.sources["SONIFY_MAX_USD_PER_DAY"] == "settings"
    with pytest.raises(BudgetExceeded, match="^SONIFY_MAX_USD_PER_DAY"):
        run(clip, tmp_path)
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "1")
    assert spend.budget(settings.current()).sources["SONIFY_MAX_USD_PER_DAY"] == "environment"
    run(clip, tmp_path)
    with pytest.raises(ConfigurationError, match="^SONIFY_MAX_USD_PER_JOB must be a number of US dollars"):
        spend.save({"SONIFY_MAX_USD_PER_JOB": "lots"})
    with pytest.raises(ConfigurationError, match="is not a spend setting"):
        spend.save({"SONIFY_MAX_USD_PER_WEEK": "1"})
    assert emulator.submits(MMAUDIO) == 1


RACE = """
import sys
from pathlib import Path
from sonify import media, pipeline
from sonify.errors import BudgetExceeded
from sonify.catalog import MMAUDIO_V2
sys.stdin.readline()  # both processes start their jobs at once
try:
    pipeline.run(MMAUDIO_V2, {"prompt": sys.argv[1]}, media.VideoSource(path=sys.argv[2]), out_dir=Path(sys.argv[3]))
except BudgetExceeded as exc:
    print(f"refused: {exc}")
else:
    print("submitted")
"""


def test_two_processes_racing_past_a_cap_one_submits_and_one_is_refused(emulator, wavespeed_env, clip_path, tmp_path):
    emulator.model_seconds = 1.0  # the first is still at the provider when the other claims
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SONIFY_MAX_USD_PER_DAY": "0.0015"}
    racers = [subprocess.Popen([sys.executable, "-c", RACE, prompt, str(clip_path), str(tmp_path / prompt)], cwd=ROOT,
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for prompt in ("rain", "hail")]  # two different jobs: neither waits for the other as its twin
    for racer in racers:
        racer.stdin.write("go\n")
        racer.stdin.flush()
    answers = [racer.communicate(timeout=120) for racer in racers]
    said = sorted(out.strip() for out, _ in answers)
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in answers]
    assert said[1] == "submitted" and said[0].startswith("refused: SONIFY_MAX_USD_PER_DAY: this job (est. $0.001)")
    assert emulator.submits(MMAUDIO) == 1
    # the refused one sent nothing: one upload ticket and one submit, both the other's
    assert [r.path for r in emulator.requests if r.method == "POST"] == ["/api/v3/media/uploads", f"/api/v3/{MMAUDIO}"]


def test_a_batch_stops_starting_clips_at_the_cap_and_says_how_many_it_left(emulator, wavespeed_env, tmp_path,
                                                                           monkeypatch, capsys):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_RUN", "0.0025")  # two clips of 1 s fit, a third does not
    (tmp_path / "in").mkdir()
    sources = [clip_of(tmp_path / "in", f"clip{i}.mp4", flash=4 + i) for i in range(5)]
    code = cli.main(["batch", "mmaudio-v2", *map(str, sources), "--prompt", "rain", "-o", str(tmp_path / "out"),
                     "--concurrency", "1", "--json"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_SOME_FAILED
    assert emulator.submits(MMAUDIO) == 2
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["outcome"] for r in records].count("done") == 2 and [r["outcome"] for r in records].count("left") == 3
    assert "stopped at a spend cap, 3 clip(s) left (nothing sent for them): SONIFY_MAX_USD_PER_RUN" in captured.err
    for record in records:
        if record["outcome"] == "done":
            sidecar = json.loads((tmp_path / "out" / Path(record["path"]).with_suffix(".sonify.json").name).read_text())
            assert sidecar["receipt"]["task_id"] == record["task_id"] == record["receipt"]["task_id"]


# ---------------------------------------------------------------- what a user sees


def test_sonify_spend_json_gives_the_ledger_by_day_provider_and_model(emulator, wavespeed_env, clip, tmp_path,
                                                                       monkeypatch, capsys):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "5")
    run(clip, tmp_path, variations=2)
    pipeline.run(KLING_V2A, {}, media.VideoSource(path=str(clip_of(tmp_path, "k.mp4", seconds=4))),
                 out_dir=tmp_path / "out")
    assert cli.main(["spend", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["model"]: row for row in report["rows"]}
    assert rows["wavespeed-ai/mmaudio-v2"]["jobs"] == 2 and rows["wavespeed-ai/mmaudio-v2"]["measured"] == 2
    assert rows["kwaivgi/kling-video-to-audio"] == {
        "day": rows["kwaivgi/kling-video-to-audio"]["day"], "provider": "wavespeed",
        "model": "kwaivgi/kling-video-to-audio", "jobs": 1, "usd": 0.035, "measured": 1, "estimated": 0, "unpriced": 0}
    assert report["total_usd"] == pytest.approx(0.037, abs=1e-4) == pytest.approx(report["today_usd"], abs=1e-9)
    assert report["settings"]["SONIFY_MAX_USD_PER_DAY"] == {"usd": 5.0, "from": "environment"}
    assert cli.main(["spend", "--since", "2999-01-01", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == []
    assert cli.main(["spend"]) == 0
    assert "spent today $0.037 of the $5.000 daily cap" in capsys.readouterr().out


# ---------------------------------------------------------------- receipts


def test_the_receipt_is_read_back_from_the_saved_mp4_and_holds_no_key(emulator, wavespeed_env, clip, tmp_path,
                                                                       capsys):
    result = run(clip, tmp_path, {"prompt": "rain", "seed": 11})
    with av.open(str(result.video_path)) as saved:  # PyAV: what any player or ComfyUI reads
        receipt = json.loads(saved.metadata["sonify"])
    assert receipt["provider"] == "wavespeed" and receipt["model"] == MMAUDIO and receipt["seed"] == 11
    assert receipt["task_id"] == result.info["task_id"] and receipt["cost"] == "measured"
    assert receipt["cost_usd"] == result.info["cost_usd_measured"] and receipt["made_at"].endswith("Z")
    assert EMULATOR_KEY.encode() not in result.video_path.read_bytes()
    # it goes back to its task: fetch by the receipt (the stored result, no request)
    seen = len(emulator.requests)
    assert cli.main(["fetch", "--receipt", str(result.video_path), "-o", str(tmp_path / "again.wav")]) == 0
    assert len(emulator.requests) == seen
    assert receipts.read(tmp_path / "again.wav")["task_id"] == result.info["task_id"]  # a WAV's: its comment
    assert receipts.parse(json.dumps(receipt))["task_id"] == result.info["task_id"]


def test_a_file_without_a_receipt_is_named(clip_path):
    with pytest.raises(Exception, match=r"--receipt: clip\.mp4 carries no Sonify receipt"):
        receipts.read(clip_path)


def test_budget_checks_alone():
    spent = budget.Spent(day=0.9, month=4.0, run=0.0)
    caps = budget.Budget({budget.DAY: 1.0, budget.MONTH: 5.0})
    budget.check(caps, spent, 0.1)  # lands on the cap: not past it
    with pytest.raises(BudgetExceeded, match=r"^SONIFY_MAX_USD_PER_DAY"):
        budget.check(caps, spent, 0.11)
    with pytest.raises(BudgetExceeded, match=r"the monthly cap of \$5\.000 is reached: \$5\.000 spent this month"):
        budget.check(caps, budget.Spent(day=0.0, month=5.0), None)


def test_doctor_shows_the_spend_and_a_balance_under_the_floor(emulator, wavespeed_env, monkeypatch):
    from sonify.cli import doctor

    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "3")
    monkeypatch.setenv("SONIFY_MIN_BALANCE_USD", "200")  # the emulator's account holds $100
    found, answers = doctor.provider_checks("wavespeed")
    assert found.ok and answers.ok is False and "balance $100.00" in answers.detail
    assert "under SONIFY_MIN_BALANCE_USD ($200.00)" in answers.detail
    check = doctor.spend_check()
    assert check.ok is None and check.detail.startswith("spent today $0.000 of the $3.000 daily cap, this month $0.000")
    assert "SONIFY_MAX_USD_PER_DAY=$3 (environment)" in check.detail
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "three")
    assert doctor.spend_check().ok is False
