"""Every setting, read and checked once; where state lives, where keys come from, which provider URLs are allowed.

`Settings` holds every SONIFY_* variable, each parsed into its field by `Settings.from_environ`, which checks them
all at once: the first bad one is a ConfigurationError naming it and its form. `current()` is the snapshot of this
process's environment (and of what the ComfyUI adapter set: its user folder, emulator mode); a run takes it once at
its start and reads only it (RunContext.settings), so a variable changed meanwhile changes the next run, never half
of this one.

Keys are not settings: they come from the environment or a key file in the state folder when a client is built
(client_settings), never from a widget: a widget value is saved into every shared workflow and every saved file's
metadata.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
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


MAX_USD_ENV = "SONIFY_MAX_USD_PER_JOB"


MAX_USD = 5.0  # the estimate above which a node run (or a batch's clip) is refused until the setting is raised


# The spend caps over the ledger and the balance floor (sonify/budget.py checks them): unset means no limit.
MAX_USD_RUN_ENV, MAX_USD_DAY_ENV = "SONIFY_MAX_USD_PER_RUN", "SONIFY_MAX_USD_PER_DAY"
MAX_USD_MONTH_ENV, MIN_BALANCE_ENV = "SONIFY_MAX_USD_PER_MONTH", "SONIFY_MIN_BALANCE_USD"
DOLLARS = "a number of US dollars, 0 or more (e.g. 5 or 0.50), or unset for no limit"


UPLOAD_TTL_ENV = "SONIFY_UPLOAD_TTL_HOURS"


UPLOAD_TTL_HOURS = 24.0  # how long fal is asked to keep an upload (its default: at least 7 days, public)


MAX_CLIP_ENV = "SONIFY_MAX_CLIP_SECONDS"


MAX_CLIP_SECONDS = 600.0  # ten minutes of clip (or voice) a run takes: MMAudio's 21 windows, Kling's 32


EMULATOR_ENV = "SONIFY_EMULATOR"


PUBLIC_URL_ENV = "SONIFY_PUBLIC_URL"


WEBHOOK_LISTEN_ENV = "SONIFY_WEBHOOK_LISTEN"


DEFAULT_LISTEN = "127.0.0.1:8189"  # beside ComfyUI's 8188


WEBHOOK_SECONDS_ENV = "SONIFY_WEBHOOK_SECONDS"


WEBHOOK_THREADS_ENV = "SONIFY_WEBHOOK_THREADS"


KEY_ANSWER_KB_ENV = "SONIFY_WEBHOOK_KEYS_MAX_KB"


JWKS_MAX_KEYS_ENV = "SONIFY_FAL_JWKS_MAX_KEYS"


PROVIDER_ORDER_ENV = "SONIFY_PROVIDER_ORDER"


TRANSFER_SECONDS = 120.0  # every request, upload and download gets this long (SONIFY_TRANSFER_TIMEOUT) ...


AAC_KBPS_ENV = "SONIFY_AAC_KBPS"


AAC_KBPS = (32, 256)  # kbit/s a channel: FFmpeg's AAC encoder goes no higher than about 256 a channel at 44.1 kHz


SILENCE_ENV = "SONIFY_SILENCE_DBFS"


SILENCE_DBFS = (-120.0, -20.0)


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


STATE_DIR_ENV = "SONIFY_STATE_DIR"


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
    """The folder for the journal, caches and the optional key file (current().state_folder): created, or made,
    private (mode 700: the key file and paid results live here, and nobody else may plant links in it). Read from
    current() where it is used, not from a run's snapshot: the journal is opened by every step of a run, through
    many calls that carry no run."""
    return private_folder(current().state_folder, "Sonify's state folder",
                          hint=f"set {STATE_DIR_ENV} to a folder of its own")


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
class Settings:
    """Every setting of one moment, each read and checked once (`from_environ`); a run reads only the one it took
    at its start (`current()`). Keys are not here (see client_settings)."""

    state_folder: Path  # SONIFY_STATE_DIR, else ComfyUI's user folder (host_state_dir), else ~/.cache/sonify
    state_folder_set: bool  # SONIFY_STATE_DIR chose it
    emulator_asked: bool  # SONIFY_EMULATOR=1: ComfyUI starts in emulator mode
    wavespeed_url: str  # the providers' base URLs (SONIFY_*_URL, else DEFAULT_URLS), checked (check_base_url)
    fal_queue_url: str
    fal_rest_url: str
    fal_api_url: str
    fal_cdn_url: str
    fal_jwks: tuple[str, ...]  # SONIFY_FAL_JWKS_URL (several: spaces between), else the documented URL and FAL_JWKS_FALLBACK
    allowed_hosts: frozenset[str]  # SONIFY_ALLOWED_HOSTS, lower case
    wavespeed_limits: Limits | None  # SONIFY_WAVESPEED_LIMITS or SONIFY_WAVESPEED_TIER; None: unset (see limits())
    fal_limits: Limits | None  # SONIFY_FAL_LIMITS
    upload_ttl_seconds: int  # SONIFY_UPLOAD_TTL_HOURS, at least a minute (fal takes 0 as "never expire")
    max_clip_seconds: float  # SONIFY_MAX_CLIP_SECONDS
    max_usd_per_job: float | None  # SONIFY_MAX_USD_PER_JOB, above 0; None: unset (budget.read: saved, else MAX_USD)
    max_usd_per_run: float | None  # the spend caps and the floor, 0 or more; None: unset
    max_usd_per_day: float | None
    max_usd_per_month: float | None
    min_balance_usd: float | None
    public_url: str | None  # SONIFY_PUBLIC_URL without a trailing slash; None: webhooks off
    webhook_listen: tuple[str, int]  # SONIFY_WEBHOOK_LISTEN as (host, port); port 0 takes any free one
    webhook_seconds: float  # SONIFY_WEBHOOK_SECONDS
    webhook_threads: int  # SONIFY_WEBHOOK_THREADS
    key_answer_max_bytes: int  # SONIFY_WEBHOOK_KEYS_MAX_KB, in bytes
    jwks_max_keys: int  # SONIFY_FAL_JWKS_MAX_KEYS
    provider_order: tuple[str, ...]  # SONIFY_PROVIDER_ORDER; () when unset
    transfer_seconds: float  # SONIFY_TRANSFER_TIMEOUT: each request's allowance beside its size (net.watch.MIN_RATE)
    max_download_bytes: int  # SONIFY_MAX_DOWNLOAD_MB, in bytes
    max_decode_bytes: int  # SONIFY_MAX_DECODE_MB, in bytes
    queue_seconds: float  # SONIFY_QUEUE_TIMEOUT: a job's wait in the queue, its turn at the account included
    run_seconds: float  # SONIFY_RUN_TIMEOUT: a job's time once started
    aac_kbps: int  # SONIFY_AAC_KBPS: kbit/s a channel of the AAC Sonify encodes
    silence_dbfs: float  # SONIFY_SILENCE_DBFS: below this, a take's sound counts as silent
    # What the ComfyUI adapter set beside the environment (the module's `emulator` and `emulator_failure`), taken
    # into the snapshot by current(): a run reads emulator mode once too. Its keys are the emulator's own.
    emulator: LocalEmulator | None = field(default=None, repr=False)
    emulator_failure: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, host_folder: Path | None = None) -> Settings:
        """Every SONIFY_* variable of `environ` read and checked, in one go: the first that is not of its form is a
        ConfigurationError naming it and the form. `host_folder`: the state folder when SONIFY_STATE_DIR is unset."""
        read = _Reader(environ)
        folder = environ.get(STATE_DIR_ENV)
        urls = {name: read.base_url(name) for name in URL_ENV if name != "fal_jwks"}
        return cls(
            state_folder=Path(folder) if folder else (host_folder or Path.home() / ".cache" / "sonify"),
            state_folder_set=bool(folder),
            emulator_asked=read.text(EMULATOR_ENV) == "1",
            wavespeed_url=urls["wavespeed"], fal_queue_url=urls["fal_queue"], fal_rest_url=urls["fal_rest"],
            fal_api_url=urls["fal_api"], fal_cdn_url=urls["fal_cdn"],
            fal_jwks=read.jwks_urls(),
            allowed_hosts=frozenset(name.strip().rstrip(".").lower()
                                    for name in read.text(ALLOWED_HOSTS_ENV).split(",") if name.strip()),
            wavespeed_limits=read.limits("wavespeed"),
            fal_limits=read.limits("fal"),
            upload_ttl_seconds=max(60, round(read.positive(UPLOAD_TTL_ENV, UPLOAD_TTL_HOURS, "a number of hours") * 3600)),
            max_clip_seconds=read.positive(MAX_CLIP_ENV, MAX_CLIP_SECONDS, "a number of seconds"),
            max_usd_per_job=read.positive(MAX_USD_ENV, None, "a number of US dollars"),
            max_usd_per_run=dollars(MAX_USD_RUN_ENV, read.text(MAX_USD_RUN_ENV)),
            max_usd_per_day=dollars(MAX_USD_DAY_ENV, read.text(MAX_USD_DAY_ENV)),
            max_usd_per_month=dollars(MAX_USD_MONTH_ENV, read.text(MAX_USD_MONTH_ENV)),
            min_balance_usd=dollars(MIN_BALANCE_ENV, read.text(MIN_BALANCE_ENV)),
            public_url=read.public_url(),
            webhook_listen=read.listen(),
            webhook_seconds=read.positive(WEBHOOK_SECONDS_ENV, 10.0, "a number of seconds"),
            webhook_threads=int(read.positive(WEBHOOK_THREADS_ENV, 16, "a whole number of connections", whole=True)),
            key_answer_max_bytes=int(read.positive(KEY_ANSWER_KB_ENV, 64, "a whole number of KiB", whole=True)) * 1024,
            jwks_max_keys=int(read.positive(JWKS_MAX_KEYS_ENV, 16, "a whole number of keys", whole=True)),
            provider_order=read.provider_order(),
            transfer_seconds=read.positive("SONIFY_TRANSFER_TIMEOUT", TRANSFER_SECONDS, "a number of seconds"),
            max_download_bytes=int(read.positive("SONIFY_MAX_DOWNLOAD_MB", 500, "a number of MiB") * (1 << 20)),
            max_decode_bytes=int(read.positive("SONIFY_MAX_DECODE_MB", 8192, "a number of MiB") * (1 << 20)),
            queue_seconds=read.positive("SONIFY_QUEUE_TIMEOUT", 900.0, "a number of seconds"),
            run_seconds=read.positive("SONIFY_RUN_TIMEOUT", 1800.0, "a number of seconds"),
            aac_kbps=read.aac_kbps(),
            silence_dbfs=read.silence_dbfs(),
        )

    def spend_limit(self, env: str) -> float | None:
        """A spend setting by its variable's name (budget.SETTINGS): its value, None when unset."""
        return {MAX_USD_ENV: self.max_usd_per_job, MAX_USD_RUN_ENV: self.max_usd_per_run,
                MAX_USD_DAY_ENV: self.max_usd_per_day, MAX_USD_MONTH_ENV: self.max_usd_per_month,
                MIN_BALANCE_ENV: self.min_balance_usd}[env]

    def limits(self, provider: str, api_url: str) -> Limits | None:
        """What the account behind `provider`'s key allows (see Limits): SONIFY_WAVESPEED_LIMITS / SONIFY_FAL_LIMITS
        when set, else SONIFY_WAVESPEED_TIER (WaveSpeed), else the provider's documented default for a new account.
        None (no pacing) when its API (`api_url`, where jobs are sent) is on this machine — Sonify's emulator, a
        local proxy — unless a variable says otherwise: it has no account level."""
        given = self.wavespeed_limits if provider == "wavespeed" else self.fal_limits
        if given is not None:
            return given
        if is_loopback(urlsplit(api_url).hostname):
            return None
        return WAVESPEED_TIERS["bronze"] if provider == "wavespeed" else FAL_DEFAULT

    def url(self, name: str) -> str:
        """The provider's own base URL `name` (a DEFAULT_URLS key but fal_jwks), or the one set in the environment,
        emulator mode or not: where a real key is checked."""
        return getattr(self, f"{name}_url")

    def base_url(self, name: str) -> str:
        """A provider base URL: the emulator's in emulator mode, else url(name)."""
        return _emulator_url(self.emulator, name) if self.emulator is not None else self.url(name)

    def fal_jwks_urls(self) -> tuple[str, ...]:
        """Where fal's webhook key set is fetched from, in order (fal_jwks); in emulator mode the emulator's own."""
        return (_emulator_url(self.emulator, "fal_jwks"),) if self.emulator is not None else self.fal_jwks

    def real_bases(self, provider: str) -> tuple[str, ...]:
        """The provider's own API base URLs (or those set in the environment; API_BASES order), emulator mode or
        not. ConfigurationError, before any request, when some are on this machine and others are not: a job
        would be submitted (and paid) on one side, and its result refused as a URL of the other."""
        names = API_BASES[provider]
        urls = tuple(self.url(name) for name in names)
        here = {name: is_loopback(urlsplit(url).hostname) for name, url in zip(names, urls) if name not in KEYLESS_BASES}
        names = tuple(here)
        if len(set(here.values())) > 1:
            local = self._named_urls([n for n in names if here[n]])
            remote = self._named_urls([n for n in names if not here[n]])
            raise ConfigurationError(f"{local} on this machine, but {remote} elsewhere: {provider}'s API URLs must "
                                     "all be on this machine (the emulator, a local proxy) or all elsewhere; nothing "
                                     "was sent")
        return urls

    def _named_urls(self, names: list[str]) -> str:
        """e.g. "SONIFY_FAL_API_URL (https://api.fal.ai, the default)"."""
        return ", ".join(f"{URL_ENV[name]} ({self.url(name)}{', the default' if self.url(name) == DEFAULT_URLS[name] else ''})"
                         for name in names)


class _Reader:
    """One environment's SONIFY_* variables, each parsed into its form or refused by name (ConfigurationError)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, env: str) -> str:
        """A setting's raw text ("" when unset)."""
        return self.environ.get(env, "").strip()

    def positive(self, env: str, default: float | None, what: str, *, whole: bool = False) -> float | None:
        """`env` as a number above 0 (`default` when it is unset)."""
        text = self.text(env)
        if not text:
            return default
        try:
            value = float(int(text)) if whole else float(text)
        except (ValueError, OverflowError):  # not a number, or too large for one
            value = float("nan")
        if not 0 < value < float("inf"):
            raise ConfigurationError(f"{env} must be {what} above 0 (got {text[:40]!r})")
        return value

    def base_url(self, name: str) -> str:
        url = self.text(URL_ENV[name]) or DEFAULT_URLS[name]
        check_base_url(url, URL_ENV[name])
        return url.rstrip("/")

    def jwks_urls(self) -> tuple[str, ...]:
        env = URL_ENV["fal_jwks"]
        urls = self.environ.get(env, "").split() or [DEFAULT_URLS["fal_jwks"], FAL_JWKS_FALLBACK]
        for url in urls:
            check_url(url, env)
        return tuple(url.rstrip("/") for url in urls)

    def limits(self, provider: str) -> Limits | None:
        """SONIFY_WAVESPEED_LIMITS / SONIFY_FAL_LIMITS, else SONIFY_WAVESPEED_TIER; None when neither is set."""
        limits_env, tier_env = LIMITS_ENV[provider], TIER_ENV.get(provider)
        given = self.text(limits_env)
        tier = self.text(tier_env).lower() if tier_env else ""
        if given and tier:
            raise ConfigurationError(f"set {tier_env} or {limits_env}, not both (got {tier!r} and {given!r})")
        if given:
            return _parsed_limits(limits_env, given)
        if tier:
            if tier not in WAVESPEED_TIERS:
                raise ConfigurationError(f"{tier_env} must be one of {'|'.join(WAVESPEED_TIERS)} (your account level "
                                         f"on wavespeed.ai), got {tier!r}")
            return WAVESPEED_TIERS[tier]
        return None

    def public_url(self) -> str | None:
        """https, or http to this machine only (a delivery carries no secret, but a plain-http hop on the internet
        could be read and replayed); no user name or password: it is logged and sent to the providers."""
        url = self.text(PUBLIC_URL_ENV)
        if not url:
            return None
        check_base_url(url, PUBLIC_URL_ENV)
        return url.rstrip("/")

    def listen(self) -> tuple[str, int]:
        text = self.text(WEBHOOK_LISTEN_ENV) or DEFAULT_LISTEN
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigurationError(f"{WEBHOOK_LISTEN_ENV} must be host:port, e.g. {DEFAULT_LISTEN} (got {text!r})")
        return host, int(port)

    def provider_order(self) -> tuple[str, ...]:
        """e.g. "fal,wavespeed": the order `provider` auto tries the providers in when both can run a job."""
        raw = self.text(PROVIDER_ORDER_ENV)
        if not raw:
            return ()
        names = [word.strip().lower() for word in raw.split(",") if word.strip()]
        if any(n not in KEY_ENV for n in names) or len(set(names)) != len(names):
            raise ConfigurationError(f"{PROVIDER_ORDER_ENV} must name providers ({', '.join(KEY_ENV)}) once each, "
                                     f"separated by commas, e.g. fal,wavespeed; got {raw!r}")
        return tuple(names)

    def aac_kbps(self) -> int:
        text = self.text(AAC_KBPS_ENV)
        if not text:
            return 96
        value = int(text) if text.isascii() and text.isdigit() else None
        if value is None or not AAC_KBPS[0] <= value <= AAC_KBPS[1]:
            raise ConfigurationError(f"{AAC_KBPS_ENV} must be a whole number from {AAC_KBPS[0]} to {AAC_KBPS[1]} "
                                     f"kbit/s a channel (got {text[:40]!r})")
        return value

    def silence_dbfs(self) -> float:
        raw = self.text(SILENCE_ENV)
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


# current()'s last snapshot and what it was made from; replaced whole (one assignment), so a thread reading it
# never sees one without the other.
_last: tuple[tuple, Settings] | None = None


def current() -> Settings:
    """The settings of this process now: the SONIFY_* variables of os.environ and what the ComfyUI adapter set
    (host_state_dir, emulator, emulator_failure), read and checked once, and the same object again until any of
    them changes. Nothing tells when os.environ changes (tests change it between runs; a ComfyUI user sets a
    variable and restarts, custom code may set one meanwhile), so each call compares what a snapshot is made of —
    a tuple of the SONIFY_* items, a few microseconds — rather than parsing and checking some thirty variables
    again. A bad value is a ConfigurationError at every call until it is mended."""
    global _last
    made_of = (_sonify_items(), host_state_dir, emulator, emulator_failure)
    last = _last
    if last is not None and last[0] == made_of:
        return last[1]
    snapshot = dataclasses.replace(Settings.from_environ(dict(made_of[0]), host_folder=made_of[1]),
                                   emulator=made_of[2], emulator_failure=made_of[3])
    _last = (made_of, snapshot)
    return snapshot


def _sonify_items() -> tuple[tuple[str, str], ...]:
    """os.environ's SONIFY_* items. Read again if another thread sets or removes a variable while they are read
    (os.environ's items() looks each key up after listing them)."""
    while True:
        try:
            return tuple((name, value) for name, value in os.environ.items() if name.startswith("SONIFY_"))
        except (KeyError, RuntimeError):
            continue


@dataclass(frozen=True)
class ClientSettings:
    """What one provider client is made of: its key and its API base URLs (in API_BASES order), both the
    emulator's or both the real provider's (or the environment's), never one of each."""

    key: str
    urls: tuple[str, ...]


def client_settings(provider: str, settings: Settings) -> ClientSettings:
    """The key and API base URLs for a `provider` client under `settings` (in emulator mode the emulator's own: a
    real key never goes to it; the snapshot holds one emulator mode, so a switch meanwhile cannot pair the key of
    one mode with the URLs of the other). The real key is read now, and registered for redaction."""
    mode, failure = settings.emulator, settings.emulator_failure
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
    return ClientSettings(key, settings.real_bases(provider))


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


def _emulator_url(mode: LocalEmulator, name: str) -> str:
    """The same path on the emulator (fal's key set lives at a path of its own)."""
    return mode.url + urlsplit(DEFAULT_URLS[name]).path.rstrip("/")


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
