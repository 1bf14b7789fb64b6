"""What a user allows Sonify to spend: the caps and the balance floor, checked here (read in settings.py).

Each setting is a number of US dollars, 0 or more, or unset (no limit):

  SONIFY_MAX_USD_PER_JOB    a node run's or command's estimate (the sum over its takes and windows): above 0,
                            default $5, the price confirmation limit (a dearer run is refused until it is raised)
  SONIFY_MAX_USD_PER_RUN    what one run spends: a node run, a command, a whole batch
  SONIFY_MAX_USD_PER_DAY    what the ledger shows spent today (this machine's local day) ...
  SONIFY_MAX_USD_PER_MONTH  ... and this calendar month, by every process sharing the journal
  SONIFY_MIN_BALANCE_USD    the balance a job may not take the account under (where the provider tells it: WaveSpeed)

An environment variable wins; else the value saved from the Sonify section of ComfyUI's settings (kept in the
journal, so every process that shares it obeys it). The ledger is ledger.py; spend.py runs the checks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import settings as config
from .errors import BudgetExceeded, ConfigurationError
from .settings import Settings

JOB, RUN, DAY, MONTH = config.MAX_USD_ENV, config.MAX_USD_RUN_ENV, config.MAX_USD_DAY_ENV, config.MAX_USD_MONTH_ENV
FLOOR = config.MIN_BALANCE_ENV
SETTINGS = (JOB, RUN, DAY, MONTH, FLOOR)
FORM = config.DOLLARS
# How each cap names what it counts, in a message: (the cap, the spend it holds).
WORDS = {RUN: ("per-run cap", "in this run"), DAY: ("daily cap", "today"), MONTH: ("monthly cap", "this month")}
SLACK = 1e-9  # dollars: a sum of float prices that lands on the cap exactly does not pass it


def parse(name: str, text: str | float | None) -> float | None:
    """A setting's value in dollars, or None when unset; ConfigurationError naming it and its form otherwise (the
    per-job limit: above 0)."""
    value = config.dollars(name, text)
    if name == JOB and value == 0:
        raise ConfigurationError(f"{JOB} must be a number of US dollars above 0 (got {str(text)[:40]!r})")
    return value


@dataclass(frozen=True)
class Budget:
    """The settings in force (None: no limit), and where each set one comes from ("environment" or "settings")."""

    values: Mapping[str, float | None]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> float | None:
        return self.values.get(name)

    @property
    def ledger_caps(self) -> list[str]:
        """The caps that are checked against the ledger (run, day, month) and are set."""
        return [name for name in (RUN, DAY, MONTH) if self[name] is not None]


def read(settings: Settings, saved: Mapping[str, float | None] | None = None) -> Budget:
    """The budget: each limit from `settings` (the environment's), else from `saved` (the settings section's); the
    per-job limit is $5 (MAX_USD) when neither sets it, the others no limit."""
    values: dict[str, float | None] = {}
    sources: dict[str, str] = {}
    for name in SETTINGS:
        given = settings.spend_limit(name)
        if given is not None:
            values[name], sources[name] = given, "environment"
        elif saved and saved.get(name) is not None:
            values[name], sources[name] = parse(name, saved[name]), "settings"
        else:
            values[name] = config.MAX_USD if name == JOB else None
    return Budget(values, sources)


@dataclass(frozen=True)
class Spent:
    """What the ledger shows spent so far, in dollars: today, this month, and by this run."""

    day: float = 0.0
    month: float = 0.0
    run: float = 0.0

    def of(self, cap: str) -> float:
        return {RUN: self.run, DAY: self.day, MONTH: self.month}[cap]


def check(budget: Budget, spent: Spent, estimate: float | None, what: str = "this job") -> None:
    """BudgetExceeded, naming the cap, the sum so far and the estimate, if `estimate` (None: unknown, counted as
    nothing until the cap is reached) would take any ledger cap past its limit."""
    for cap in budget.ledger_caps:
        limit, so_far = budget[cap], spent.of(cap)
        words, when = WORDS[cap]
        if estimate is None and so_far + SLACK >= limit:
            raise BudgetExceeded(cap, f"the {words} of {usd(limit)} is reached: {usd(so_far)} spent {when} (see "
                                      f"`sonify spend`); {what} has no price estimate and was not sent")
        if estimate is not None and so_far + estimate > limit + SLACK:
            raise BudgetExceeded(cap, f"{what} (est. {usd(estimate)}) would pass the {words} of {usd(limit)}: "
                                      f"{usd(so_far)} spent {when} so far (see `sonify spend`); nothing was sent")


def check_job(budget: Budget, estimate: float | None, what: str = "this job is") -> None:
    """SONIFY_MAX_USD_PER_JOB, the price confirmation limit: the estimate of one node run or command (the sum over
    its takes and windows) above it is refused before anything is sent, saying how to allow it."""
    limit = budget[JOB]
    if limit is not None and estimate is not None and estimate > limit + SLACK:
        default = "" if JOB in budget.sources else " (the default)"
        raise BudgetExceeded(JOB, f"{what} estimated at ${estimate:.3f}, above the limit of ${limit:.3f}{default}: "
                                  f"nothing was sent; to allow it, set {JOB} to a higher number of dollars (e.g. "
                                  f"{JOB}={math.ceil(estimate)}) and run again")


def check_floor(budget: Budget, balance: float, estimate: float | None, provider: str, what: str = "this job") -> None:
    """SONIFY_MIN_BALANCE_USD: the balance the provider reports, less the estimate, must stay at the floor or over."""
    floor = budget[FLOOR]
    if floor is None:
        return
    after = balance - (estimate or 0.0)
    if after + SLACK < floor:
        cost = f" less {what}'s estimate of {usd(estimate)}" if estimate else ""
        raise BudgetExceeded(FLOOR, f"your {provider} balance is {usd(balance)}{cost}, under the floor of "
                                    f"{usd(floor)}; {what} was not sent — top up, or lower the floor")


def usd(amount: float) -> str:
    """A dollar amount as messages show it: to a tenth of a cent, like the catalog's prices."""
    return f"${amount:.3f}"


def day_start(now: float) -> float:
    """The start of `now`'s day, in this machine's local time (time.time() seconds)."""
    local = time.localtime(now)
    return time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))


def month_start(now: float) -> float:
    """The start of `now`'s calendar month, in this machine's local time."""
    local = time.localtime(now)
    return time.mktime((local.tm_year, local.tm_mon, 1, 0, 0, 0, 0, 0, -1))
