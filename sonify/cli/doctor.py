"""`python -m sonify doctor`: is this machine ready to run Sonify?

Checks the keys (where each was found — never its value), whether each provider accepts its key
(one cheap authenticated request that costs nothing; WaveSpeed's tells the balance), PyAV and the encoders Sonify
uses, the state folder, what the ledger shows spent against the caps, and the ComfyUI install around the current
folder.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .. import budget as budgets
from .. import journal as jobs
from .. import settings
from ..errors import ConfigurationError, ProviderError, SonifyError
from ..pipeline import spend
from ..redact import register_secret
from ..waiter import Waiter

TIMEOUT = (5.0, 10.0)  # connect, read: a doctor answers quickly or says the provider did not


NAMES = {"wavespeed": "WaveSpeed", "fal": "fal"}


CHECKED_AT = {"wavespeed": "wavespeed", "fal": "fal_rest"}  # the API base each provider's key check goes to


PACK_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool | None  # None: information, not a problem (e.g. no fal key while WaveSpeed's works)
    detail: str

    def line(self) -> str:
        mark = {True: "ok", False: "!!", None: "--"}[self.ok]
        return f"  {mark}  {self.what}: {self.detail}"


def checks(cwd: Path) -> list[Check]:
    try:
        settings.current()
    except ConfigurationError as exc:  # every other check reads the settings: this one is mended first
        return [Check("settings", False, str(exc))]
    results: list[Check] = []
    for provider in NAMES:
        results += provider_checks(provider)
    if all(c.ok is None for c in results):  # no key anywhere (a missing key alone is only information)
        results.append(Check("keys", False, "no provider key found: every model needs one (see above)"))
    results += media_checks()
    results.append(state_check())
    results.append(spend_check())
    results.append(comfyui_check(cwd))
    return results


# --- keys and providers ---


def provider_checks(provider: str) -> list[Check]:
    name = NAMES[provider]
    try:
        found = settings.find_key(provider)
    except (ConfigurationError, OSError) as exc:  # an unreadable key file, an unusable state folder
        return [Check(f"{name} key", False, str(exc))]
    if found is None:
        return [Check(f"{name} key", None, f"none found — {settings.key_hint(provider)}")]
    key, where = found
    register_secret(key)
    try:
        urls = settings.current().real_bases(provider)  # the real key goes to the real provider's URLs only
    except ConfigurationError as exc:
        return [Check(f"{name} key", True, f"found in {where}"), Check(f"{name} URL", False, str(exc))]
    return [Check(f"{name} key", True, f"found in {where}"), _key_works(provider, key, where, urls)]


def _key_works(provider: str, key: str, where: str, urls: tuple[str, ...]) -> Check:
    """The provider's own key check (WaveSpeed: its balance; fal: a CDN upload token)."""
    from .. import providers

    what = f"{NAMES[provider]} answers"
    client = providers.make(provider, key, urls)
    at = urls[settings.API_BASES[provider].index(CHECKED_AT[provider])]
    try:
        checked = client.check_key(Waiter(), TIMEOUT)
    except ProviderError as exc:
        if exc.status in (401, 403):
            return Check(what, False, f"{at} refused the key from {where} (HTTP {exc.status}): check it")
        return Check(what, False, f"could not check the key at {at}: {exc}")
    except SonifyError as exc:
        return Check(what, False, str(exc))
    money = f" (balance ${checked.balance_usd:.2f})" if checked.balance_usd is not None else ""
    emulator = " — the Sonify emulator, not the real provider" if checked.emulator else ""
    try:
        floor = spend.budget(settings.current())[budgets.FLOOR]
    except ConfigurationError:  # said by the spend check
        floor = None
    if floor is not None and checked.balance_usd is not None and checked.balance_usd < floor:
        return Check(what, False, f"{checked.url} accepts the key{money}{emulator}, but the balance is under "
                                  f"{budgets.FLOOR} (${floor:.2f}): every {NAMES[provider]} job is refused until you "
                                  "top up")
    return Check(what, True, f"{checked.url} accepts the key{money}{emulator}")


# --- media ---


def media_checks() -> list[Check]:
    """Encode a tiny clip and mux a tiny sound with Sonify's own functions: the encoders must open."""
    try:
        import av
        import numpy as np

        from .. import media
    except ImportError as exc:
        return [Check("PyAV", False, f"cannot import {exc.name}: pip install av numpy (ComfyUI ships both)")]
    version = av.__version__ + (f" (FFmpeg {av.ffmpeg_version_info})" if hasattr(av, "ffmpeg_version_info") else "")
    results = [Check("PyAV", True, version)]
    with tempfile.TemporaryDirectory(prefix="sonify-doctor-") as tmp:
        clip, muxed = Path(tmp) / "clip.mp4", Path(tmp) / "muxed.mp4"
        results.append(_encodes("H.264 encoder (libx264)",
                                lambda: media.frames_to_mp4(np.zeros((2, 64, 64, 3), np.uint8), Fraction(24), clip)))
        if results[-1].ok:
            results.append(_encodes("AAC encoder (aac)",
                                    lambda: media.mux(clip, np.zeros((1, 4800), np.float32), 48000, muxed)))
    return results


def _encodes(what: str, encode: Callable[[], object]) -> Check:
    try:
        encode()
    except Exception as exc:  # noqa: BLE001 - whatever PyAV raises, this encoder is not usable
        return Check(what, False, f"{type(exc).__name__}: {exc}")
    return Check(what, True, "encodes")


# --- state folder ---


def state_check() -> Check:
    try:
        folder = settings.state_dir()
        probe = folder / f".doctor-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except (settings.UnsafeState, ConfigurationError) as exc:
        return Check("state folder", False, str(exc))
    except OSError as exc:
        return Check("state folder", False, f"not writable ({exc}): set SONIFY_STATE_DIR to a folder you can write")
    source = settings.STATE_DIR_ENV if settings.current().state_folder_set else "default"
    journal = "journal usable" if jobs.open_journal() is not None else "journal NOT usable (see the warning above)"
    return Check("state folder", True, f"{folder} ({source}; writable; {journal})")


# --- spend ---


def spend_check() -> Check:
    """Today and this month from the ledger, against the caps (a setting that is not a number is a problem)."""
    try:
        summary = spend.summary()
    except ConfigurationError as exc:
        return Check("spend", False, str(exc))
    caps = [f"{name}=${summary.budget[name]:g} ({summary.budget.sources.get(name, 'the default')})"
            for name in budgets.SETTINGS
            if summary.budget[name] is not None]
    month = f"this month {budgets.usd(summary.spent.month)}"
    return Check("spend", None, f"{summary.today_text()}, {month}; " + (", ".join(caps) if caps else "no caps set"))


# --- ComfyUI ---


def find_comfyui(cwd: Path) -> Path | None:
    """A ComfyUI folder (main.py + comfy/) at or above `cwd` or this pack, or folder_paths' base."""
    for start in (cwd.resolve(), PACK_ROOT):
        for folder in (start, *start.parents):
            if (folder / "main.py").is_file() and (folder / "comfy").is_dir():
                return folder
    try:
        import folder_paths  # only importable inside ComfyUI's own process or path
    except ImportError:
        return None
    return Path(folder_paths.base_path)


def comfyui_check(cwd: Path) -> Check:
    root = find_comfyui(cwd)
    if root is None:
        return Check("ComfyUI", None, "not found around this folder (run doctor from your ComfyUI folder to check it)")
    custom = root / "custom_nodes"
    installed = custom in PACK_ROOT.parents
    where = f"Sonify is installed as {PACK_ROOT.relative_to(root)}" if installed else \
        f"this Sonify ({PACK_ROOT}) is not in its custom_nodes folder"
    comfy_state = root / "user" / "sonify"
    shared = ""
    try:
        ours = settings.state_dir().resolve()
    except (OSError, ConfigurationError):  # the state folder's own check says why
        ours = None
    if comfy_state.resolve() != ours:
        shared = (f"; inside ComfyUI, Sonify keeps keys.json and its journal in {comfy_state} — set "
                  f"SONIFY_STATE_DIR={comfy_state} to use the same from the command line")
    return Check("ComfyUI", True if installed else None, f"{root} ({where}){shared}")
