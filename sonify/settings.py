"""Where state lives, where keys come from, and which provider URLs are allowed.

Keys come from the environment or a key file in the state folder, never from a widget: a
widget value is saved into every shared workflow and every saved file's metadata.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .redact import register_secret

KEY_FILE = "keys.json"


DEFAULT_URLS = {
    "wavespeed": "https://api.wavespeed.ai",
    "fal_queue": "https://queue.fal.run",
    "fal_rest": "https://rest.fal.ai",
    "fal_api": "https://api.fal.ai",
    # the keys fal signs webhook deliveries with, at the URL fal's "Verifying your webhook" docs name
    "fal_jwks": "https://rest.alpha.fal.ai/.well-known/jwks.json",
    "fal_cdn": "https://v3.fal.media",  # fal's CDN: one-part uploads (fal_client 1.0.3, client.py CDN_URL)
}


# Tried when the documented key set cannot be had: the same path on fal's REST host, seen in third-party code only.
FAL_JWKS_FALLBACK = "https://rest.fal.ai/.well-known/jwks.json"


URL_ENV = {
    "wavespeed": "SONIFY_WAVESPEED_URL",
    "fal_queue": "SONIFY_FAL_QUEUE_URL",
    "fal_rest": "SONIFY_FAL_REST_URL",
    "fal_api": "SONIFY_FAL_API_URL",
    "fal_jwks": "SONIFY_FAL_JWKS_URL",
    "fal_cdn": "SONIFY_FAL_CDN_URL",
}


# Each provider's API bases, which must all be on this machine or all elsewhere (fal_jwks is no API base: its key set
# is fetched without a key, wherever it is).
API_BASES = {"wavespeed": ("wavespeed",), "fal": ("fal_queue", "fal_rest", "fal_api", "fal_cdn")}


# The CDN takes only a short-lived upload token, never the key: a CDN elsewhere than fal's API is not a mix that
# could pay on one side and refuse on the other (the fal client then uses the storage upload instead).
KEYLESS_BASES = {"fal_cdn"}


KEY_ENV = {"wavespeed": "WAVESPEED_API_KEY", "fal": "FAL_KEY"}


ALLOWED_HOSTS_ENV = "SONIFY_ALLOWED_HOSTS"


TIER_ENV = {"wavespeed": "SONIFY_WAVESPEED_TIER"}


LIMITS_ENV = {"wavespeed": "SONIFY_WAVESPEED_LIMITS", "fal": "SONIFY_FAL_LIMITS"}


LIMITS_FORM = "AT_ONCE or AT_ONCE,STARTS/SECONDS (e.g. 2,2/60: 2 jobs at once, 2 starts in any 60 s)"


UPLOAD_TTL_ENV = "SONIFY_UPLOAD_TTL_HOURS"


UPLOAD_TTL_HOURS = 24.0  # how long fal is asked to keep an upload (its default: at least 7 days, public)


MAX_CLIP_ENV = "SONIFY_MAX_CLIP_SECONDS"


MAX_CLIP_SECONDS = 600.0  # ten minutes of clip (or voice) a run takes: MMAudio's 21 windows, Kling's 32


MAX_USD_ENV = "SONIFY_MAX_USD_PER_JOB"


MAX_USD = 5.0  # the estimate above which a node run (or a batch's clip) is refused until the setting is raised


# The spend caps over the ledger and the balance floor (sonify/budget.py checks them): unset means no limit.
MAX_USD_RUN_ENV, MAX_USD_DAY_ENV = "SONIFY_MAX_USD_PER_RUN", "SONIFY_MAX_USD_PER_DAY"
MAX_USD_MONTH_ENV, MIN_BALANCE_ENV = "SONIFY_MAX_USD_PER_MONTH", "SONIFY_MIN_BALANCE_USD"
DOLLARS = "a number of US dollars, 0 or more (e.g. 5 or 0.50), or unset for no limit"


@dataclass(frozen=True)
class Limits:
    """What one account of a provider allows: `at_once` jobs at the provider at a time and, where it limits the
    rate, `starts` submits in any `seconds`. `name`: where they come from, for messages ("Bronze", the
    variable's name)."""

    at_once: int
    starts: int | None = None
    seconds: float = 60.0
    name: str = ""


# WaveSpeed's account levels for video tasks (https://wavespeed.ai/docs/account-levels): videos started a minute
# and "max concurrency" (tasks past it "wait until one finishes"). Bronze is every new account's; a one-time top-up
# moves an account up.
WAVESPEED_TIERS = {
    "bronze": Limits(2, 2, 60.0, "Bronze"),
    "silver": Limits(300, 500, 60.0, "Silver"),
    "gold": Limits(3000, 3000, 60.0, "Gold"),
    "ultra": Limits(10000, 5000, 60.0, "Ultra"),
}


# fal: "New accounts start at 2 concurrent requests" and requests past it are queued, "never rejected"
# (https://fal.ai/docs/documentation/model-apis/faq, .../model-apis/concurrency-limits); no start rate.
FAL_DEFAULT = Limits(2, name="a new fal account's")


# Set by the ComfyUI adapter to ComfyUI's user folder; the command line leaves it unset.
host_state_dir: Path | None = None


EMULATOR_TITLE = "Sonify emulator — synthetic sound"  # the title tag of every file made in emulator mode


@dataclass(frozen=True)
class LocalEmulator:
    """Sonify's emulator standing in for both providers (ComfyUI's "try it without a key"): every base URL is
    its `url` and every key one of its own `keys`, so that a real key is never sent to it."""

    url: str
    keys: dict[str, str]


# Set by the ComfyUI adapter while emulator mode is on; None: the real providers (or the URLs set in the
# environment).
emulator: LocalEmulator | None = None


# Set while emulator mode is asked for but its emulator did not start: no job may go to the real providers then
# (the user was promised a free, synthetic run).
emulator_failure: str | None = None


class UnsafeState(OSError):
    """The state folder, or a file or folder in it, cannot be used safely; the message says why and what to
    do. An OSError, so that the journal and the result store treat it like their other failures (a warning,
    and the job goes on without them)."""


def state_dir() -> Path:
    """The folder for the journal, caches and the optional key file: created, or made, private (mode 700:
    the key file and paid results live here, and nobody else may plant links in it)."""
    env = os.environ.get("SONIFY_STATE_DIR")
    path = Path(env) if env else (host_state_dir or Path.home() / ".cache" / "sonify")
    return private_folder(path, "Sonify's state folder", hint="set SONIFY_STATE_DIR to a folder of its own")


def private_folder(path: Path, what: str, *, hint: str, links: bool = True) -> Path:
    """`path` as a folder only its owner can read and write: created with mode 700, or an existing one
    tightened to it. `links=False`: a symbolic link there is refused, never followed. UnsafeState otherwise."""
    if not links and path.is_symlink():
        raise UnsafeState(f"{what} {path} is a symbolic link; Sonify does not write through links: {hint}")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileExistsError:
        raise UnsafeState(f"{what} {path} is not a folder: {hint}") from None
    except OSError as exc:
        raise UnsafeState(f"{what} {path} cannot be made ({exc.strerror or type(exc).__name__}): {hint}") from None
    if os.name == "posix" and mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            raise UnsafeState(f"{what} {path} is open to other users (mode {mode:o}) and cannot be made private "
                              f"({exc.strerror or type(exc).__name__}): {hint}") from None
    return path


def refuse_links(*paths: Path | str) -> None:
    """UnsafeState if any of `paths` is a symbolic link: Sonify's files are written where they are, never
    through a link (one planted there would send the journal or a result anywhere)."""
    for path in paths:
        if os.path.islink(path):
            raise UnsafeState(f"{path} is a symbolic link; Sonify does not write through links: remove it")


@dataclass(frozen=True)
class ClientSettings:
    """What one provider client is made of, read at one moment: its key and its API base URLs (in API_BASES
    order), both the emulator's or both the real provider's (or the environment's), never one of each."""

    key: str
    urls: tuple[str, ...]


def client_settings(provider: str) -> ClientSettings:
    """The key and API base URLs for a `provider` client (in emulator mode the emulator's own: a real key never
    goes to it). Emulator mode is read once, so that a switch meanwhile cannot pair the key of one mode with
    the URLs of the other. The real key is registered for redaction."""
    mode, failure = emulator, emulator_failure
    if mode is not None:
        return ClientSettings(mode.keys[provider], tuple(_emulator_url(mode, name) for name in API_BASES[provider]))
    if failure is not None:
        raise ConfigurationError(f"emulator mode is on, but the local emulator did not start ({failure}); "
                                 "nothing was sent to a provider: switch emulator mode off to use your key")
    found = find_key(provider)
    if found is None:
        raise ConfigurationError(missing_key_message(provider))
    key, where = found
    register_secret(key)
    if provider == "fal" and not is_fal_key(key):
        raise ConfigurationError(f"The fal key in {where} is not of the form key_id:key_secret (fal refuses any "
                                 "other); nothing was sent — copy the whole key from fal's dashboard")
    return ClientSettings(key, real_bases(provider))


def is_fal_key(key: str) -> bool:
    key_id, _, secret = key.partition(":")
    return bool(key_id.strip()) and bool(secret.strip())


def find_key(provider: str) -> tuple[str, str] | None:
    """(key, where it was found — said in words, e.g. "environment variable FAL_KEY"), or None."""
    env_name = KEY_ENV[provider]
    key = os.environ.get(env_name, "").strip()
    if key:
        return key, f"environment variable {env_name}"
    if provider == "fal":
        key_id, secret = os.environ.get("FAL_KEY_ID", "").strip(), os.environ.get("FAL_KEY_SECRET", "").strip()
        if key_id and secret:
            return f"{key_id}:{secret}", "environment variables FAL_KEY_ID + FAL_KEY_SECRET"
    key = _key_from_file(provider)
    if key:
        return key, f"key file {state_dir() / KEY_FILE}"
    return None


def missing_key_message(provider: str) -> str:
    return f"No {provider} API key found: {key_hint(provider)}"


def key_hint(provider: str) -> str:
    """Where a key can go: the environment variable(s), or the key file."""
    variable = "FAL_KEY (key_id:key_secret), or FAL_KEY_ID and FAL_KEY_SECRET," if provider == "fal" else KEY_ENV[provider]
    return f"set the environment variable {variable} or put {{\"{provider}\": \"<key>\"}} in {state_dir() / KEY_FILE}"


def _key_from_file(provider: str) -> str:
    path = state_dir() / KEY_FILE
    if not path.is_file():
        return ""
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"The key file {path} is not valid JSON ({type(exc).__name__})") from None
    value = keys.get(provider, "") if isinstance(keys, dict) else ""
    return value.strip() if isinstance(value, str) else ""


def upload_ttl_seconds() -> int:
    """How long fal is asked to keep an uploaded file (SONIFY_UPLOAD_TTL_HOURS, default a day): an upload is a
    public URL for as long as it is kept. At least a minute (fal takes 0 as "never expire")."""
    return max(60, round(_positive(UPLOAD_TTL_ENV, UPLOAD_TTL_HOURS, "a number of hours") * 3600))


def max_clip_seconds() -> float:
    """The longest clip or voice a run takes (SONIFY_MAX_CLIP_SECONDS, default ten minutes), below each model's
    own longest (models.ModelSpec.longest_clip): every window of a long clip is a paid job."""
    return _positive(MAX_CLIP_ENV, MAX_CLIP_SECONDS, "a number of seconds")


def max_usd_per_job() -> float:
    """The most a node run (every take and window of it together), or a batch's clip, may be estimated to cost
    before anything is sent (SONIFY_MAX_USD_PER_JOB, default $5): a dearer run is refused until it is raised."""
    return _positive(MAX_USD_ENV, MAX_USD, "a number of US dollars")


def dollars(env: str, value: str | float | None) -> float | None:
    """A spend setting's value in dollars (from the environment or as saved from ComfyUI's settings), None when
    unset; a ConfigurationError naming `env` and its form otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = math.nan if isinstance(value, bool) else float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not 0 <= number < math.inf:
        raise ConfigurationError(f"{env} must be {DOLLARS}; got {str(value)[:40]!r}")
    return number


def spend_limit(env: str) -> float | None:
    """SONIFY_MAX_USD_PER_RUN / _DAY / _MONTH or SONIFY_MIN_BALANCE_USD from the environment (None: unset)."""
    return dollars(env, text(env))


def base_url(name: str) -> str:
    """A provider base URL, overridable for the emulator or a proxy."""
    mode = emulator
    return _emulator_url(mode, name) if mode is not None else provider_url(name)


def _emulator_url(mode: LocalEmulator, name: str) -> str:
    """The same path on the emulator (fal's key set lives at a path of its own)."""
    return mode.url + urlsplit(DEFAULT_URLS[name]).path.rstrip("/")


def fal_jwks_urls() -> tuple[str, ...]:
    """Where fal's webhook key set is fetched from, in order: SONIFY_FAL_JWKS_URL (one URL, or several separated
    by spaces), else the documented URL and then FAL_JWKS_FALLBACK; in emulator mode the emulator's own."""
    if emulator is not None:
        return (base_url("fal_jwks"),)
    urls = os.environ.get(URL_ENV["fal_jwks"], "").split() or [DEFAULT_URLS["fal_jwks"], FAL_JWKS_FALLBACK]
    for url in urls:
        check_url(url, URL_ENV["fal_jwks"])
    return tuple(url.rstrip("/") for url in urls)


def provider_url(name: str) -> str:
    """The provider's own base URL (or the one set in the environment), emulator mode or not: where a real
    key is checked."""
    url = os.environ.get(URL_ENV[name], "").strip() or DEFAULT_URLS[name]
    check_base_url(url, URL_ENV[name])
    return url.rstrip("/")


def real_bases(provider: str) -> tuple[str, ...]:
    """The provider's own API base URLs (or those set in the environment; API_BASES order), emulator mode or
    not. ConfigurationError, before any request, when some are on this machine and others are not: a job
    would be submitted (and paid) on one side, and its result refused as a URL of the other."""
    names = API_BASES[provider]
    urls = tuple(provider_url(name) for name in names)
    here = {name: is_loopback(urlsplit(url).hostname) for name, url in zip(names, urls) if name not in KEYLESS_BASES}
    names = tuple(here)
    if len(set(here.values())) > 1:
        local = _named_urls([n for n in names if here[n]])
        remote = _named_urls([n for n in names if not here[n]])
        raise ConfigurationError(f"{local} on this machine, but {remote} elsewhere: {provider}'s API URLs must all "
                                 "be on this machine (the emulator, a local proxy) or all elsewhere; nothing was sent")
    return urls


def _named_urls(names: list[str]) -> str:
    """e.g. "SONIFY_FAL_API_URL (https://api.fal.ai, the default)"."""
    said = []
    for name in names:
        default = "" if os.environ.get(URL_ENV[name], "").strip() else ", the default"
        said.append(f"{URL_ENV[name]} ({provider_url(name)}{default})")
    return ", ".join(said)


def allowed_hosts() -> frozenset[str]:
    """The host names SONIFY_ALLOWED_HOSTS adds to this machine's own for the pack's key routes (e.g. a name
    ComfyUI is reached by on the local network), lower case, comma-separated."""
    text = os.environ.get(ALLOWED_HOSTS_ENV, "")
    return frozenset(name.strip().rstrip(".").lower() for name in text.split(",") if name.strip())


def is_loopback(host: str | None) -> bool:
    """Is `host` this machine: localhost (or a name under .localhost), a loopback address (an IPv4-mapped
    one too), or the unspecified address (0.0.0.0 and :: reach this machine's own services)."""
    if not host:
        return False
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or address.is_unspecified or bool(mapped and (mapped.is_loopback or mapped.is_unspecified))


def check_url(url: str, what: str) -> None:
    """https anywhere; plain http only to this machine (the emulator, a local proxy)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    raise ConfigurationError(f"{what}: only https URLs, or http to this machine, are allowed (got {parts.scheme}://{parts.hostname})")


def check_base_url(url: str, what: str) -> None:
    """A base URL as check_url has it, and nothing but scheme://host[:port][/path]: no user name or password, no
    ?query or #fragment (`http://127.0.0.1:8#@evil.example` is one host to one parser and another to the next,
    and the key goes wherever the one that sends lands)."""
    if any(c in "@?#\\" or c.isspace() or not c.isprintable() for c in url):
        raise ConfigurationError(f"{what} must be a plain base URL (scheme://host[:port][/path]), without a user name "
                                 "or password, ?query, #fragment, backslash or space")
    try:
        urlsplit(url).port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ConfigurationError(f"{what}: its port is not a number from 0 to 65535") from None
    check_url(url, what)


# --- limits on what a webhook delivery, or the key material deliveries are checked with, may cost ---

WEBHOOK_SECONDS_ENV = "SONIFY_WEBHOOK_SECONDS"


WEBHOOK_THREADS_ENV = "SONIFY_WEBHOOK_THREADS"


KEY_ANSWER_KB_ENV = "SONIFY_WEBHOOK_KEYS_MAX_KB"


JWKS_MAX_KEYS_ENV = "SONIFY_FAL_JWKS_MAX_KEYS"


def webhook_seconds() -> float:
    """How long the command line's webhook listener gives one delivery, headers and body, to arrive whole
    before it drops the connection (SONIFY_WEBHOOK_SECONDS, default 10)."""
    return _positive(WEBHOOK_SECONDS_ENV, 10.0, "a number of seconds")


def webhook_threads() -> int:
    """How many connections the command line's webhook listener serves at once, a thread each; one more is
    answered 503 at once (SONIFY_WEBHOOK_THREADS, default 16)."""
    return int(_positive(WEBHOOK_THREADS_ENV, 16, "a whole number of connections", whole=True))


def key_answer_max_bytes() -> int:
    """The largest answer read from WaveSpeed's webhook-secret route or fal's key set; a larger one is refused
    unread (SONIFY_WEBHOOK_KEYS_MAX_KB, default 64 KiB: a key set of a few keys is under 2 KiB)."""
    return int(_positive(KEY_ANSWER_KB_ENV, 64, "a whole number of KiB", whole=True)) * 1024


def jwks_max_keys() -> int:
    """The most keys fal's key set may hold: every forged delivery is checked against each of them, on
    ComfyUI's event loop, so a larger set is refused (SONIFY_FAL_JWKS_MAX_KEYS, default 16)."""
    return int(_positive(JWKS_MAX_KEYS_ENV, 16, "a whole number of keys", whole=True))


def text(env: str) -> str:
    """A setting's raw text ("" when unset): every SONIFY_* variable is read in this module."""
    return os.environ.get(env, "").strip()


# --- limits on one job: each read here, when it is needed, and refused by name when it is not a number ---

TRANSFER_SECONDS = 120.0  # every request, upload and download gets this long (SONIFY_TRANSFER_TIMEOUT) ...


def transfer_seconds() -> float:
    """The allowance every request gets on top of its size at net.watch.MIN_RATE (SONIFY_TRANSFER_TIMEOUT)."""
    return _positive("SONIFY_TRANSFER_TIMEOUT", TRANSFER_SECONDS, "a number of seconds")


def max_download_bytes() -> int:
    """The largest result file downloaded (SONIFY_MAX_DOWNLOAD_MB, default 500 MiB)."""
    return int(_positive("SONIFY_MAX_DOWNLOAD_MB", 500, "a number of MiB") * (1 << 20))


def max_decode_bytes() -> int:
    """The most memory a result's frames may take as IMAGE (SONIFY_MAX_DECODE_MB, default 8 GiB)."""
    return int(_positive("SONIFY_MAX_DECODE_MB", 8192, "a number of MiB") * (1 << 20))


def queue_seconds() -> float:
    """How long a job may wait in the provider's queue, its turn at the account included (SONIFY_QUEUE_TIMEOUT)."""
    return _positive("SONIFY_QUEUE_TIMEOUT", 900, "a number of seconds")


def run_seconds() -> float:
    """How long a job may run once started (SONIFY_RUN_TIMEOUT)."""
    return _positive("SONIFY_RUN_TIMEOUT", 1800, "a number of seconds")
AAC_KBPS_ENV = "SONIFY_AAC_KBPS"


AAC_KBPS = (32, 256)  # kbit/s a channel: FFmpeg's AAC encoder goes no higher than about 256 a channel at 44.1 kHz


SILENCE_ENV = "SONIFY_SILENCE_DBFS"


SILENCE_DBFS = (-120.0, -20.0)


def aac_kbps() -> int:
    """The bit rate of the AAC Sonify encodes (a returned video's sound when it is not the provider's own, Mux
    Audio's, a .m4a), in kbit/s a channel (SONIFY_AAC_KBPS, default 96: 192 for stereo)."""
    value = _positive(AAC_KBPS_ENV, 96, "a whole number of kbit/s a channel", whole=True)
    if not AAC_KBPS[0] <= value <= AAC_KBPS[1]:
        raise ConfigurationError(f"{AAC_KBPS_ENV} must be from {AAC_KBPS[0]} to {AAC_KBPS[1]} kbit/s a channel "
                                 f"(got {value:g})")
    return int(value)


def silence_dbfs() -> float:
    """The level below which a take's sound counts as silent, in dBFS (SONIFY_SILENCE_DBFS, default -60)."""
    raw = text(SILENCE_ENV)
    if not raw:
        return -60.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not SILENCE_DBFS[0] <= value <= SILENCE_DBFS[1]:
        raise ConfigurationError(f"{SILENCE_ENV} must be a number of dBFS from {SILENCE_DBFS[0]:g} to "
                                 f"{SILENCE_DBFS[1]:g} (got {raw[:40]!r})")
    return value


def _positive(env: str, default: float, what: str, *, whole: bool = False) -> float:
    """The environment variable `env` as a number above 0 (`default` when it is unset), else a ConfigurationError
    naming it."""
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = float(int(text)) if whole else float(text)
    except (ValueError, OverflowError):  # not a number, or too large for one
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ConfigurationError(f"{env} must be {what} above 0 (got {text[:40]!r})")
    return value


def limits(provider: str, api_url: str) -> Limits | None:
    """What the account behind `provider`'s key allows (see Limits): SONIFY_WAVESPEED_LIMITS / SONIFY_FAL_LIMITS
    when set, else SONIFY_WAVESPEED_TIER (WaveSpeed), else the provider's documented default for a new account.
    None (no pacing) when its API (`api_url`, where jobs are sent) is on this machine — Sonify's emulator, a local
    proxy — unless a variable says otherwise: it has no account level. ConfigurationError naming the variable and
    its form for a bad value."""
    limits_env, tier_env = LIMITS_ENV[provider], TIER_ENV.get(provider)
    given = os.environ.get(limits_env, "").strip()
    tier = os.environ.get(tier_env, "").strip().lower() if tier_env else ""
    if given and tier:
        raise ConfigurationError(f"set {tier_env} or {limits_env}, not both (got {tier!r} and {given!r})")
    if given:
        return _parsed_limits(limits_env, given)
    if tier:
        if tier not in WAVESPEED_TIERS:
            raise ConfigurationError(f"{tier_env} must be one of {'|'.join(WAVESPEED_TIERS)} (your account level on "
                                     f"wavespeed.ai), got {tier!r}")
        return WAVESPEED_TIERS[tier]
    if is_loopback(urlsplit(api_url).hostname):
        return None
    return WAVESPEED_TIERS["bronze"] if provider == "wavespeed" else FAL_DEFAULT


def _parsed_limits(name: str, text: str) -> Limits:
    at_once, comma, rate = text.partition(",")
    starts, slash, seconds = rate.partition("/")
    try:
        counts = [int(at_once)] + ([int(starts)] if comma else [])
        window = float(seconds) if comma else 60.0
    except ValueError:
        counts, window = [], 0.0
    if not counts or min(counts) < 1 or (comma and not (slash and 0 < window < float("inf"))):
        raise ConfigurationError(f"{name} must be {LIMITS_FORM}: whole numbers from 1 and seconds above 0, "
                                 f"got {text!r}")
    return Limits(counts[0], counts[1] if comma else None, window, name)
