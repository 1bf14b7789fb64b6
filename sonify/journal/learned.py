"""What later runs learn from earlier ones, kept in the journal: how long a model's jobs take, how fast uploads
go."""

from __future__ import annotations

from .db import guarded


class RunTimeStore:
    """The poll schedule's learned run times (providers/schedule.py: a `Store`), kept in the journal of
    the state folder. Like every journal use, a failure is logged and ignored."""

    def load(self, key: str, limit: int) -> list[tuple[float, float]]:
        return guarded("reading run times", lambda journal: journal.run_times(key, limit), [])

    def save(self, key: str, bracket: tuple[float, float]) -> None:
        guarded("recording a run time", lambda journal: journal.record_run_time(key, bracket))


class UplinkStore:
    """What uploads and proxy encodes measured (sonify/uplink.py decides from it), kept in the journal of the
    state folder. Like every journal use, a failure is logged and ignored (nothing known: the upload races)."""

    def uplink_rates(self, key: str, limit: int, since: float) -> list[float]:
        return guarded("reading upload rates", lambda journal: journal.uplink_rates(key, limit, since), [])

    def record_uplink(self, key: str, bytes_per_second: float) -> None:
        guarded("recording an upload rate", lambda journal: journal.record_uplink(key, bytes_per_second))

    def proxy_speeds(self, key: str, limit: int) -> list[tuple[float, float | None]]:
        return guarded("reading proxy speeds", lambda journal: journal.proxy_speeds(key, limit), [])

    def record_proxy_speed(self, key: str, seconds_per_mpf: float, bytes_per_mpf: float | None) -> None:
        guarded("recording a proxy speed",
                lambda journal: journal.record_proxy_speed(key, seconds_per_mpf, bytes_per_mpf))
