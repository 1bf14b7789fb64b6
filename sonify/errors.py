"""One error family. Every message is written for the person who runs the node."""

from __future__ import annotations

from .redact import redact


class SonifyError(Exception):
    """Base of every error Sonify raises on purpose."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        # ComfyUI loads the pack under its folder path as module name and shows the exception's
        # module to the user: keep it short and stable.
        super().__init_subclass__(**kwargs)
        cls.__module__ = "sonify.errors"

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(redact(message))
        self.task_id = task_id


class ConfigurationError(SonifyError):
    """Something in the setup is missing or wrong (no key, bad base URL)."""


class ValidationError(SonifyError):
    """An input is out of range; raised before any request is sent."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.input_name = name


class BudgetExceeded(ValidationError):
    """A job that would pass a spend cap (or take the balance under its floor): refused before anything is uploaded
    or submitted. `input_name` is the setting's variable (SONIFY_MAX_USD_PER_DAY, …)."""


class ProviderError(SonifyError):
    """The provider answered with an HTTP error, or an answer we cannot use."""

    def __init__(self, message: str, *, status: int | None = None, task_id: str | None = None) -> None:
        super().__init__(message, task_id=task_id)
        self.status = status


class Refused(ProviderError):
    """A submit the provider turned away before processing it (HTTP 429: its rate limit, or a full queue), so no
    task was created and it is safe to send again; `retry_after`: the seconds the provider asked to wait, if it
    said (its Retry-After header)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class JobFailed(SonifyError):
    """The remote job ran and reported failure."""


class JobTimedOut(SonifyError):
    """We stopped waiting; the remote job may still finish."""


class Cancelled(SonifyError):
    """The user cancelled (ComfyUI's Cancel, Ctrl-C)."""
