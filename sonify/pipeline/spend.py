"""Spend, checked and shown: the budget (budget.py) against the ledger (ledger.py, kept in the journal) and the
provider's balance, before anything is uploaded; and what was spent, for the node, `sonify spend` and doctor.

A new job's check is atomic (jobs.Ticket.claim_spend); a run of several jobs (takes × windows) is first checked
as their sum, counting only the jobs that will be sent (a stored take costs nothing), so that it is refused whole
rather than half done.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from .. import budget as budgets
from .. import journal as jobs
from ..errors import ConfigurationError, ProviderError
from ..journal import ledger
from ..providers.base import Provider
from ..settings import Settings, current
from ..waiter import Waiter

log = logging.getLogger("sonify")


BALANCE_TIMEOUT = (5.0, 15.0)  # connect, read: the balance is read before anything is uploaded


def counted(settings: Settings) -> bool:
    """Whether jobs are capped and counted under `settings`: not in ComfyUI's emulator mode, which is free."""
    return settings.emulator is None


def budget(settings: Settings) -> budgets.Budget:
    """The limits in force: `settings`' (the environment's), else those saved from ComfyUI's settings (in the
    journal)."""
    return budgets.read(settings, jobs.guarded("reading the saved budget", lambda journal: journal.saved_budget(), {}))


def save(values: dict[str, str | float | None]) -> budgets.Budget:
    """Settings from ComfyUI's settings section ({variable: dollars, or None/"" to remove}), each checked like its
    environment variable, kept in the journal; the budget in force afterwards."""
    unknown = sorted(set(values) - set(budgets.SETTINGS))
    if unknown:
        raise ConfigurationError(f"{unknown[0]} is not a spend setting (one of {', '.join(budgets.SETTINGS)})")
    checked = {name: budgets.parse(name, value) for name, value in values.items()}
    journal = jobs.open_journal()
    if journal is None:
        raise ConfigurationError("the spend settings are kept in Sonify's job journal, which cannot be used now (see "
                                 "the log); set them as environment variables instead")
    journal.save_budget(checked)
    return budget(current())


def spent(run_id: str | None = None) -> budgets.Spent:
    """What the ledger holds today, this month and for `run_id` (nothing, when there is no journal)."""
    return jobs.guarded("reading the ledger", lambda journal: journal.spent(run_id), budgets.Spent())


def check_run(client: Provider, settings: budgets.Budget, estimate: float | None, run_id: str | None, what: str,
              waiter: Waiter) -> None:
    """A run of several jobs, `estimate` the sum of those it will send: refused whole (BudgetExceeded) if it would
    pass a cap or take the balance under the floor. Each job is checked and counted again as it starts."""
    budgets.check(settings, spent(run_id), estimate, what)
    check_balance(client, settings, estimate, what, waiter)


def check_balance(client: Provider, settings: budgets.Budget, estimate: float | None, what: str,
                  waiter: Waiter) -> None:
    """SONIFY_MIN_BALANCE_USD, where the provider tells the balance (one request; none when no floor is set)."""
    if settings[budgets.FLOOR] is None:
        return
    try:
        balance = client.balance(waiter, BALANCE_TIMEOUT)
    except ProviderError as exc:
        exc.args = (f"{budgets.FLOOR} is set, but the {client.name} balance could not be read ({exc}); nothing was sent",)
        raise
    if balance is None:
        log.info("%s is set, but %s does not tell this key its balance: the floor applies to WaveSpeed only",
                 budgets.FLOOR, client.name)
        return
    budgets.check_floor(settings, balance, estimate, client.name, what)


@dataclass(frozen=True)
class Summary:
    """Today and this month against their caps: for the node's last line and ComfyUI's settings section."""

    spent: budgets.Spent
    budget: budgets.Budget

    def today_text(self) -> str:
        return f"spent today {budgets.usd(self.spent.day)}" + _cap_text(self.budget[budgets.DAY], "daily")

    def as_json(self) -> dict[str, object]:
        return {"today_usd": round(self.spent.day, 6), "month_usd": round(self.spent.month, 6),
                "settings": {name: {"usd": self.budget[name], "from": self.budget.sources.get(name)}
                             for name in budgets.SETTINGS}}


def summary() -> Summary:
    return Summary(spent(), budget(current()))


def today_text() -> str:
    """Today's spend against the daily cap, for a line after a run (a setting that is not a number: what is wrong)."""
    try:
        return summary().today_text()
    except ConfigurationError as exc:
        return str(exc)


@dataclass(frozen=True)
class Row:
    """The ledger's jobs of one day (local), provider and model: how many, what they cost, and on what figures."""

    day: str  # YYYY-MM-DD
    provider: str
    model: str
    jobs: int = 0
    usd: float = 0.0
    measured: int = 0  # jobs counted at their measured figure...
    estimated: int = 0  # ... at their estimate ...
    unpriced: int = 0  # ... and at nothing: no price published


def rows(entries: list[ledger.Entry]) -> list[Row]:
    """The entries by day, provider and model, oldest day first."""
    grouped: dict[tuple[str, str, str], Row] = {}
    for entry in entries:
        key = (time.strftime("%Y-%m-%d", time.localtime(entry.at)), entry.provider, entry.model)
        row = grouped.get(key, Row(*key))
        basis = entry.basis
        grouped[key] = dataclasses.replace(
            row, jobs=row.jobs + 1, usd=round(row.usd + (entry.usd or 0.0), 6),
            measured=row.measured + (basis == "measured"), estimated=row.estimated + (basis == "estimate"),
            unpriced=row.unpriced + (basis is None))
    return [grouped[key] for key in sorted(grouped)]


@dataclass(frozen=True)
class Report:
    """`sonify spend`: the ledger since a day, by day, provider and model, with today and this month against the caps."""

    since: float
    rows: list[Row]
    summary: Summary

    def as_json(self) -> dict[str, object]:
        return {"since": time.strftime("%Y-%m-%d", time.localtime(self.since)),
                "rows": [dataclasses.asdict(row) for row in self.rows],
                "total_usd": round(sum(row.usd for row in self.rows), 6), **self.summary.as_json()}

    def lines(self) -> list[str]:
        columns = ("day", "provider", "model", "jobs", "measured", "estimated", "no price", "usd")
        lines = [_line(columns)]
        lines += [_line((r.day, r.provider, r.model, r.jobs, r.measured, r.estimated, r.unpriced, budgets.usd(r.usd)))
                  for r in self.rows]
        since = time.strftime("%Y-%m-%d", time.localtime(self.since))
        total = sum(row.usd for row in self.rows)
        lines.append(f"since {since}: {budgets.usd(total)} for {sum(row.jobs for row in self.rows)} job(s)")
        lines.append(f"{self.summary.today_text()}; this month {budgets.usd(self.summary.spent.month)}"
                     + _cap_text(self.summary.budget[budgets.MONTH], "monthly"))
        return lines


def _line(cells: tuple[object, ...]) -> str:
    day, provider, model, *counts, usd = cells
    return f"{day:10}  {provider:9}  {model:32}  " + "  ".join(f"{c!s:>9}" for c in counts) + f"  {usd!s:>9}"


def _cap_text(cap: float | None, words: str) -> str:
    return f" of the {budgets.usd(cap)} {words} cap" if cap is not None else ""


def report(since: float | None = None) -> Report | None:
    """The ledger since `since` (time.time(); default: the start of this month), or None without a usable journal."""
    since = budgets.month_start(time.time()) if since is None else since
    entries = jobs.guarded("reading the ledger", lambda journal: journal.spend_entries(since))
    return None if entries is None else Report(since, rows(entries), summary())


PLURALS = {"second of sound": "seconds of sound", "compute second": "compute seconds", "job": "jobs"}


def cost_text(info: dict[str, object]) -> str:
    """A job's cost as a line shows it: measured (and by what) where the provider told what was used, else the
    estimate, else that there is none."""
    measured, measure = info.get("cost_usd_measured"), info.get("cost_measure")
    if isinstance(measured, (int, float)):
        if isinstance(measure, dict):
            quantity, unit = measure.get("quantity"), str(measure.get("unit"))
            said = f"{quantity:g} {unit if quantity == 1 else PLURALS.get(unit, unit)}"
            return f"{budgets.usd(measured)} measured ({said})"
        return f"{budgets.usd(measured)} measured"
    estimate = info.get("cost_usd_estimate")
    return f"est. {budgets.usd(estimate)}" if isinstance(estimate, (int, float)) else "no price estimate"
