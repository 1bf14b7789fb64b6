"""The benchmark's tables and its verdict on each target (docs: README "Performance")."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from sonify.providers.schedule import COLD_SECONDS, FREE_SECONDS

from .jobs import STAGES
from .measure import MB
from .uplinks import UPLOAD_SIDE, label, pairs
from .waits import ATTEMPTS, median

PROXY_MAX_SHARE = 0.15
FAL_MEDIAN_MAX = 0.1
WAVESPEED_MEDIAN_MAX = 1.0
WAVESPEED_POLLS_MAX = 15
WAVESPEED_FIRST_MAX = 0.2  # a model's first job of a few seconds (the 3 s one), its time never seen: found within
WEBHOOK_MAX = 0.2  # with webhooks: every job's end noticed within this, a model's first job included
DECODE_MEMORY_MAX = 1.25
STARTUP_MAX = 0.1
FAST_TOTAL_MAX = 1.05  # at loopback and 100 Mbit/s and above: Sonify's total / the naive upload's
SLOW_UPLOAD_MAX = 0.7  # at 20 Mbit/s and below: Sonify's upload side / the naive upload's


def grid(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: numbers right-aligned, text left-aligned."""
    right = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) for i in range(len(headers))]
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def clip_table(cases: list[dict[str, Any]]) -> str:
    headers = ["clip", "source MB", *STAGES, "upload MB", "detect s", "total s", "peak RSS MB", "pic copy", "AAC copy"]
    rows = [[c["name"], c["source_bytes"] / MB, *(c["seconds"][s] for s in STAGES), c["uploaded_bytes"] / MB,
             c["detection_seconds"], c["wall_seconds"], c["peak_rss_bytes"] / MB, c["picture_copied"],
             c["audio_packets_copied"]] for c in cases]
    return grid(headers, rows)


def proxy_table(cases: list[dict[str, Any]]) -> str:
    rows = []
    for c in cases:
        ref = c.get("reference")
        if ref:
            rows.append([c["name"], ref["proxy_bytes"] / MB, ref["full_bytes"] / MB,
                         f"{100 * ref['proxy_bytes'] / ref['full_bytes']:.1f} %", ref["proxy_seconds"],
                         ref["full_seconds"], c["frames"]["source"], ref.get("proxy_frames", c["frames"]["uploaded"])])
    return grid(["clip", "proxy MB", "full-res MB", "share", "proxy s", "full-res s", "frames", "proxy frames"], rows)


def detection_table(record: dict[str, Any]) -> str:
    rows = [["fal stream", len(record["fal"]), median(_detections(record["fal"])), _max(record["fal"]), "-"],
            ["fal polling (stream fails)", len(record["fal_fallback"]), median(_detections(record["fal_fallback"])),
             _max(record["fal_fallback"]), "-"]]
    for provider, title in (("wavespeed", "WaveSpeed"), ("fal", "fal polling (stream fails)")):
        jobs = [r for r in record["webhooks"] if r["provider"] == provider]
        rows.append([f"{title} woken by webhooks, first job", len(jobs), median(_detections(jobs)), _max(jobs), "-"])
    wavespeed = record["wavespeed"]
    for attempt in ATTEMPTS:
        jobs = [r for r in wavespeed if r["attempt"] == attempt]
        rows.append([f"WaveSpeed polling, {attempt} job", len(jobs), median(_detections(jobs)), _max(jobs),
                     max((r["max_polls_per_60s_after_10s"] for r in jobs), default=0)])
    per_time = grid(["model s", "attempt", "detect s", "polls", "max polls/60 s after 10 s"],
                    [[r["model_seconds"], r["attempt"], r["detection_seconds"], r["polls"],
                      r["max_polls_per_60s_after_10s"]] for r in wavespeed])
    return grid(["path", "jobs", "median detect s", "max detect s", "max polls/60 s after 10 s"], rows) + "\n\n" + per_time


def _detections(rows: list[dict[str, Any]]) -> list[float | None]:
    return [r["detection_seconds"] for r in rows]


def _max(rows: list[dict[str, Any]]) -> float | None:
    known = [v for v in _detections(rows) if v is not None]
    return max(known) if known else None


def other_table(record: dict[str, Any]) -> str:
    rows = []
    b = record["batch"]
    rows.append([f"batch: {b['jobs']} jobs × {b['model_seconds']:g} s at concurrency {b['concurrency']} (batch engine, emulator limited to as many)",
                 f"{b['wall_seconds']:.2f} s", f"≤ {b['bound_seconds']:.2f} s (ideal {b['ideal_seconds']:g} s)"])
    cli = record.get("batch_command")
    if cli:
        rows.append([f"batch: the same through `python -m sonify batch` (exit {cli['exit_code']})",
                     f"{cli['wall_seconds']:.2f} s", "(includes the interpreter's start)"])
    for case in record["lipsync"]:
        rows.append([f"lipsync {case['name']}: decode {case['frames_shape']} float32 ({case['tensor_mb']} MB)",
                     f"RSS +{case['decode_rss_ratio']:.3f}×, numpy peak {case['decode_traced_ratio']:.3f}×",
                     f"torch.from_numpy shares memory: {_cell(case['torch_shares_memory'])}"])
    s = record["startup"]
    rows.append(["start-up: import the pack as ComfyUI does", f"{1000 * s['median_seconds']:.1f} ms (median)",
                 f"PyAV imported: {_cell(s['imports_pyav'])}, emulator imported: {_cell(s['imports_emulator'])}"])
    return grid(["measure", "result", "note"], rows)


def uplink_table(rows: list[dict[str, Any]]) -> str:
    headers = ["uplink", "way", "job", "sent", "decided by", "upload MB", *UPLOAD_SIDE, "upload side s", "total s"]
    return grid(headers, [[label(r["uplink_mbps"]), r["way"], r["attempt"],
                           "proxy" if r["proxy"] else "as is", (r["upload_choice"] or {}).get("by", "-"),
                           r["uploaded_bytes"] / MB, *(r["seconds"].get(s, 0.0) for s in UPLOAD_SIDE),
                           r["upload_side_seconds"], r["wall_seconds"]] for r in rows])


def uplink_summary(rows: list[dict[str, Any]]) -> str:
    return grid(["uplink", "job", "total: Sonify / naive", "upload side: Sonify / naive"],
                [[label(s["uplink_mbps"]), s["attempt"], f"{_ratio(s, n, 'wall_seconds'):.3f}",
                  f"{_ratio(s, n, 'upload_side_seconds'):.3f}"] for n, s in pairs(rows)])


def _ratio(sonify: dict[str, Any], naive: dict[str, Any], key: str) -> float:
    return sonify[key] / naive[key] if naive[key] else float("inf")


def _uplink_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Fast links (loopback, >= 100 Mbit/s): the whole job no slower than the naive upload's by more than 5 %;
    slow ones (<= 20 Mbit/s): the stages before the submit at most 0.7 of the naive upload's."""
    found = pairs(record.get("uplinks", []))
    fast = [(n, s) for n, s in found if n["uplink_mbps"] is None or n["uplink_mbps"] >= 100]
    slow = [(n, s) for n, s in found if n["uplink_mbps"] is not None and n["uplink_mbps"] <= 20]
    clip = record.get("uplink_clip")
    return [t for t in (_ratio_target(clip, fast, "wall_seconds", "total", FAST_TOTAL_MAX),
                        _ratio_target(clip, slow, "upload_side_seconds", "upload side (prepare + encode + upload)",
                                      SLOW_UPLOAD_MAX)) if t is not None]


def _ratio_target(clip: str | None, found: list[tuple[dict[str, Any], dict[str, Any]]], key: str, what: str,
                  bound: float) -> dict[str, Any] | None:
    """Sonify's `key` over the naive upload's, for each (naive, Sonify) pair, against `bound`."""
    if not found:
        return None
    ratios = [(n, _ratio(s, n, key)) for n, s in found]
    where = ", ".join(dict.fromkeys(label(n["uplink_mbps"]) for n, _ in found))
    return _target(f"{clip} at {where}: {what} ≤ {bound}× the naive upload's",
                   "; ".join(f"{label(n['uplink_mbps'])} {n['attempt']} {r:.3f}×" for n, r in ratios),
                   all(r <= bound for _, r in ratios))


FRAMES_OUTSIDE_MAX = {"10s-1080p30": 4.0, "5s-wan16+1f": 1.0}  # seconds outside the provider's wait
FRAMES_MEMORY_MAX = 0.1  # peak memory over the frame tensor, as a share of it
TWO_NODES_OVERLAP_MIN, TWO_NODES_MAX = 0.9, 1.2  # task overlap; the pair's time over one job's
FIRST_WINDOW_SLACK = 2.0  # seconds: a long clip's total over its slowest window's job and its first window's preparation
LOCAL_OVER_DECODE_MAX = 1.3  # a long clip's local work over one decoding pass of its source
LONG_CLIP_MAX = 1.3  # a long clip's total over its slowest window's job (plus the local work)
MEMORY_FLAT = 0.1  # a long clip's peak memory: the longest clip's over the shortest's, at most this much more


def frames_table(rows: list[dict[str, Any]]) -> str:
    headers = ["clip", "uplink", "way", "outside wait s", "total s", "upload MB", "memory over frames"]
    return grid(headers, [[r["clip"], label(r["uplink_mbps"]), r["way"], r["outside_wait_seconds"], r["total_seconds"],
                           r["uploaded_bytes"] / MB, f"{r['memory_over_frames']:.3f}×"] for r in rows])


def two_nodes_table(case: dict[str, Any]) -> str:
    return grid(["one job s", "two together s", "two one after the other s", "task overlap"],
                [[case["one_job_seconds"], case["together_seconds"], case["one_after_another_seconds"],
                  f"{100 * case['task_overlap']:.1f} %"]])


def long_clip_table(case: dict[str, Any]) -> str:
    ways = [w for w in case if isinstance(case[w], dict) and "wall_seconds" in case[w]]
    floor = case.get("decode_pass_seconds")
    return grid(["way", "windows", "total s", "first submit s", "slowest window's job s", "local work s",
                 "one decode pass s", "picture copied", "exact to the sample"],
                [[w, case[w]["windows"], case[w]["wall_seconds"], case[w].get("first_submit_seconds"),
                  case[w]["slowest_job_seconds"], case[w]["local_seconds"], floor, case[w]["picture_copied"],
                  case[w]["samples_exact"]] for w in ways])


def memory_table(rows: list[dict[str, Any]]) -> str:
    return grid(["clip", "minutes", "windows", "total s", "peak RSS MB", "rise over the start MB", "peak RSS MB a minute"],
                [[r["clip"], r["minutes"], r["windows"], r["wall_seconds"], r["peak_rss_bytes"] / MB,
                  r["growth_bytes"] / MB, r["peak_rss_bytes"] / MB / r["minutes"]] for r in rows])


def _memory_flat_target(record: dict[str, Any]) -> dict[str, Any] | None:
    rows = record.get("long_clip_memory") or []
    if len(rows) < 2:
        return None
    short, long = min(rows, key=lambda r: r["minutes"]), max(rows, key=lambda r: r["minutes"])
    ratio = long["peak_rss_bytes"] / short["peak_rss_bytes"]
    return _target(f"long clip memory flat in its length: peak RSS at {long['minutes']} min ≤ {1 + MEMORY_FLAT:g}× "
                   f"that at {short['minutes']} min",
                   f"{long['peak_rss_bytes'] / MB:.0f} MB vs {short['peak_rss_bytes'] / MB:.0f} MB ({ratio:.3f}×)",
                   ratio <= 1 + MEMORY_FLAT)


def _long_clip_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    case = record.get("long_clip")
    if case is None:
        return []
    at_once, one_by_one = case["parallel"], case["one after another"]
    bound = LONG_CLIP_MAX * at_once["slowest_job_seconds"] + at_once["local_seconds"]
    found = [_target(f"long clip {case['clip']}: total ≤ {LONG_CLIP_MAX:g}× the slowest window's job + the local work",
                     f"{at_once['wall_seconds']:.2f} s vs {bound:.2f} s (one after another "
                     f"{one_by_one['wall_seconds']:.2f} s)", at_once["wall_seconds"] <= bound)]
    first = at_once.get("first_submit_seconds")
    if first is not None:
        bound = at_once["slowest_job_seconds"] + first + FIRST_WINDOW_SLACK
        found.append(_target(f"long clip {case['clip']}: total ≤ the slowest window's job + the first window's "
                             f"preparation (until its submit) + {FIRST_WINDOW_SLACK:g} s",
                             f"{at_once['wall_seconds']:.2f} s vs {bound:.2f} s", at_once["wall_seconds"] <= bound))
    floor = case.get("decode_pass_seconds")
    if floor:
        local = at_once["local_seconds"]
        found.append(_target(f"long clip {case['clip']}: local work ≤ {LOCAL_OVER_DECODE_MAX:g}× one decode pass of it",
                             f"{local:.2f} s vs {floor:.2f} s ({local / floor:.2f}×)",
                             local <= LOCAL_OVER_DECODE_MAX * floor))
    return found


def _frames_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for clip, limit in FRAMES_OUTSIDE_MAX.items():
        ours = [r for r in record.get("frames", []) if r["clip"] == clip and r["way"] == "sonify"]
        if not ours:
            continue
        worst = max(r["outside_wait_seconds"] for r in ours)
        memory = max(r["memory_over_frames"] for r in ours)
        found.append(_target(f"frames {clip}: ≤ {limit:g} s outside the provider's wait (every uplink)",
                             f"at most {worst:.2f} s", worst <= limit))
        if clip == "10s-1080p30":
            found.append(_target(f"frames {clip}: peak memory over the frame tensor ≤ {FRAMES_MEMORY_MAX:g}× of it",
                                 f"at most {memory:.3f}×", memory <= FRAMES_MEMORY_MAX))
    return found


def _two_nodes_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    case = record.get("two_nodes")
    if case is None:
        return []
    ratio = case["together_seconds"] / case["one_job_seconds"]
    return [_target(f"two remote nodes on one clip: task times overlap ≥ {TWO_NODES_OVERLAP_MIN:.0%}",
                    f"{100 * case['task_overlap']:.1f} %", case["task_overlap"] >= TWO_NODES_OVERLAP_MIN),
            _target(f"two remote nodes on one clip: ≤ {TWO_NODES_MAX:g}× one job",
                    f"{ratio:.3f}× ({case['together_seconds']:.2f} s vs {case['one_job_seconds']:.2f} s; one after the "
                    f"other {case['one_after_another_seconds']:.2f} s)", ratio <= TWO_NODES_MAX)]


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with what was measured and whether it is met."""
    return [t for t in (_proxy_target(record), _passthrough_target(record), _copy_target(record),
                        _fal_target(record), *_wavespeed_targets(record), _webhook_target(record), _memory_target(record),
                        _batch_target(record), _startup_target(record), *_uplink_targets(record),
                        *_frames_targets(record), *_two_nodes_targets(record), *_long_clip_targets(record),
                        _memory_flat_target(record))
            if t is not None]


def _target(name: str, measured: str, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": measured, "met": bool(met)}


def _proxy_target(record: dict[str, Any]) -> dict[str, Any] | None:
    with_ref = [c for c in record["clips"] if c.get("reference")]
    if not with_ref:
        return None
    case = next((c for c in with_ref if c["name"] == "10s-1080p30"), with_ref[-1])
    ref = case["reference"]
    share = ref["proxy_bytes"] / ref["full_bytes"]
    return _target(f"proxy ≤ {PROXY_MAX_SHARE:.0%} of a full-resolution encode, and faster ({case['name']})",
                   f"{share:.1%} of the bytes; {ref['proxy_seconds']:.2f} s vs {ref['full_seconds']:.2f} s",
                   share <= PROXY_MAX_SHARE and ref["proxy_seconds"] < ref["full_seconds"])


def _passthrough_target(record: dict[str, Any]) -> dict[str, Any] | None:
    fitting = [c for c in record["clips"] if not c["proxy"] and not c.get("upload_choice")]  # not a choice: it fits
    if not fitting:
        return None
    ok = all(c["uploaded_unchanged"] and c["uploaded_bytes"] == c["source_bytes"] for c in fitting)
    encode = max(c["seconds"]["encode"] for c in fitting)
    return _target("a file that fits the proxy rule is uploaded byte for byte, no encode",
                   f"{len(fitting)} clips identical at the provider; 'encode' stage ≤ {encode * 1000:.0f} ms (a probe)", ok)


def _copy_target(record: dict[str, Any]) -> dict[str, Any]:
    cases = record["clips"]
    pictures = sum(c["picture_copied"] for c in cases)
    sounds = sum(bool(c["audio_packets_copied"]) for c in cases)
    return _target("picture packets copied (0 re-encodes); provider AAC copied, not transcoded",
                   f"picture identical in {pictures}/{len(cases)}; AAC packets copied in {sounds}/{len(cases)}",
                   pictures == sounds == len(cases))


def _fal_target(record: dict[str, Any]) -> dict[str, Any]:
    value = median(_detections(record["fal"]))
    return _target(f"fal detection median ≤ {FAL_MEDIAN_MAX} s (status stream)", f"{value} s over {len(record['fal'])} jobs",
                   value is not None and value <= FAL_MEDIAN_MAX)


def _webhook_target(record: dict[str, Any]) -> dict[str, Any]:
    rows = record["webhooks"]
    worst, woken = _max(rows), sum(1 for r in rows if r["deliveries"] == [200])
    return _target(f"with webhooks: every job's end noticed ≤ {WEBHOOK_MAX} s, a model's first job included",
                   f"at most {worst} s over {len(rows)} first jobs on both providers; {woken} woken by their delivery",
                   worst is not None and worst <= WEBHOOK_MAX and woken == len(rows))


def _wavespeed_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Two verdicts: jobs whose model time the schedule has learned (in this process, or from the journal
    in a new one), and a model's first job of up to COLD_SECONDS, a time it has not seen (polled every COLD_STEP);
    the longer first jobs are reported beside it (up to FREE_SECONDS the polls widen, after it the budget decides)."""
    rows = [r for r in record["wavespeed"] if 2 <= r["model_seconds"] <= 60] or record["wavespeed"]
    polls = max(r["max_polls_per_60s_after_10s"] for r in rows)
    name = f"WaveSpeed detection median ≤ {WAVESPEED_MEDIAN_MAX:g} s, ≤ {WAVESPEED_POLLS_MAX} polls/min after 10 s"
    learned = median(_detections([r for r in rows if r["attempt"] in ("repeat", "new process")]))
    first = [r for r in rows if r["attempt"] == "first"]
    quick = [r for r in first if r["model_seconds"] <= COLD_SECONDS]  # polled every COLD_STEP
    worst_quick = max(_detections(quick), default=None)
    lengths = ", ".join(f"{r['model_seconds']:g}" for r in quick)
    middle = median(_detections([r for r in first if COLD_SECONDS < r["model_seconds"] <= FREE_SECONDS]))
    long = median(_detections([r for r in first if r["model_seconds"] > FREE_SECONDS]))
    within = polls <= WAVESPEED_POLLS_MAX
    return [
        _target(f"{name}: run time learned", f"median {learned} s over repeat and new-process jobs; "
                f"at most {polls} polls in a minute after 10 s", learned is not None and learned <= WAVESPEED_MEDIAN_MAX and within),
        _target(f"WaveSpeed: a model's first job of ≤ {COLD_SECONDS:g} s found within {WAVESPEED_FIRST_MAX:g} s",
                f"at most {worst_quick} s over {len(quick)} jobs ({lengths} s); "
                f"first jobs of up to {FREE_SECONDS:g} s: median {middle} s, longer ones {long} s (within "
                f"{WAVESPEED_POLLS_MAX} polls a minute an end not known in advance is found "
                f"{60 / WAVESPEED_POLLS_MAX / 2:g} s late on average at best)",
                worst_quick is not None and worst_quick <= WAVESPEED_FIRST_MAX and within),
    ]


def _memory_target(record: dict[str, Any]) -> dict[str, Any] | None:
    if not record["lipsync"]:
        return None
    worst = max(max(c["decode_rss_ratio"], c["decode_traced_ratio"]) for c in record["lipsync"])
    return _target(f"lipsync IMAGE decode peak ≤ {DECODE_MEMORY_MAX}× the final tensor",
                   f"{worst:.3f}× (worst of RSS growth and numpy's peak)", worst <= DECODE_MEMORY_MAX)


def _batch_target(record: dict[str, Any]) -> dict[str, Any]:
    b = record["batch"]
    return _target(f"batch of {b['jobs']} at concurrency {b['concurrency']} within 1.3× ideal + one job's overhead",
                   f"{b['wall_seconds']:.2f} s ≤ {b['bound_seconds']:.2f} s", b["met"])


def _startup_target(record: dict[str, Any]) -> dict[str, Any]:
    s = record["startup"]
    return _target(f"pack import < {STARTUP_MAX * 1000:.0f} ms, no PyAV, no emulator",
                   f"{1000 * s['median_seconds']:.1f} ms; PyAV {'imported' if s['imports_pyav'] else 'not imported'}, "
                   f"emulator {'imported' if s['imports_emulator'] else 'not imported'}",
                   s["median_seconds"] < STARTUP_MAX and not s["imports_pyav"] and not s["imports_emulator"])


def targets_table(rows: list[dict[str, Any]]) -> str:
    return grid(["target", "measured", "met"], [[t["target"], t["measured"], t["met"]] for t in rows])


def summarize_startup(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"runs": runs, "median_seconds": statistics.median(r["seconds"] for r in runs),
            "imports_pyav": any(r["imports_pyav"] for r in runs),
            "imports_emulator": any(r["imports_emulator"] for r in runs), "heavy_modules": runs[0]["heavy_modules"]}
