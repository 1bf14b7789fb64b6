"""Receipts: which paid task made a file — provider, model, task id, seed, cost figure and time.

Every file Sonify writes carries its receipt in its container metadata, as the tag `sonify` (WAV keeps only its
INFO names: there, `comment`), beside ComfyUI's own workflow tags: ComfyUI's Save Video copies a file's tags into
the file it saves. The same receipt is in `--json`, in a batch's sidecar and in the job info. `sonify fetch
--receipt FILE` and the Fetch Result node take one back to the task. A receipt is made of the job info's fields
and masked like it: never a key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import ValidationError
from ..redact import redact_all
from ..version import VERSION

TAG = "sonify"  # the container tag; WAV's INFO chunk has no such name, so there it is the comment


WAV_TAG = "comment"


MAKER = "Sonify"  # a receipt's "made_by" starts with it: a comment that is not a receipt is not taken for one


def of(info: Mapping[str, Any]) -> dict[str, Any]:
    """A job's receipt, from its job info (JobInfo.as_dict(), a take's or a long clip's). The cost figure is the
    measured one where there is one, else the estimate; a long clip's take names every window's task."""
    windows = info.get("windows") or []
    measured = info.get("cost_usd_measured")
    receipt = {
        "made_by": f"{MAKER} {VERSION}",
        "provider": info.get("provider"),
        "model": info.get("model"),
        "task_id": info.get("task_id"),
        "seed": (info.get("params") or {}).get("seed"),
        "cost_usd": measured if measured is not None else info.get("cost_usd_estimate"),
        "cost": "measured" if measured is not None else "estimate" if info.get("cost_usd_estimate") is not None else None,
        "reused": bool(info.get("cached")),  # made from a stored result: no new cost
        "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if windows:
        receipt["task_ids"] = [window.get("task_id") for window in windows]
    if info.get("emulator"):
        receipt["emulator"] = True
    return redact_all(receipt)


def tags(info: Mapping[str, Any], path: str | Path = "") -> dict[str, str]:
    """The container tags of a file made from `info`: the receipt, and the emulator's title when it made the sound."""
    text = json.dumps(of(info), separators=(",", ":"))
    found = {WAV_TAG if Path(path).suffix.lower() == ".wav" else TAG: text}
    if info.get("emulator"):
        found["title"] = settings.EMULATOR_TITLE
    return found


def read(path: str | Path) -> dict[str, Any]:
    """The receipt in a file Sonify wrote (its media, or a batch's `.sonify.json` sidecar); ValidationError naming
    the file when it has none."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            found = json.loads(path.read_text(encoding="utf-8")).get("receipt")
        except (OSError, ValueError, AttributeError):
            found = None
    else:
        from .. import media  # PyAV only when a file is read

        tags_found = media.tags(path)
        found = _parsed(tags_found.get(TAG)) or _parsed(tags_found.get(WAV_TAG))
    if not _is_receipt(found):
        raise ValidationError("--receipt", f"{path.name} carries no Sonify receipt (a file Sonify wrote has one in "
                                           "its metadata; a batch's .sonify.json sidecar too)")
    return found


def _parsed(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _is_receipt(found: Any) -> bool:
    return (isinstance(found, dict) and str(found.get("made_by", "")).startswith(MAKER)
            and isinstance(found.get("provider"), str) and isinstance(found.get("task_id"), str))


def parse(text: str) -> dict[str, Any] | None:
    """A receipt pasted as text (the tag's JSON, or the job info's `receipt`), or None when `text` is not one."""
    found = _parsed(text.strip()) if text.strip().startswith("{") else None
    if isinstance(found, dict) and isinstance(found.get("receipt"), dict):
        found = found["receipt"]
    return found if _is_receipt(found) else None
