"""The command's exit codes, by the error that ends it, and the one line an OSError is shown as."""

from __future__ import annotations

from ..errors import Cancelled, ConfigurationError, JobFailed, JobTimedOut, ProviderError, SonifyError, ValidationError

EXIT = {ValidationError: 3, ConfigurationError: 3, ProviderError: 4, JobFailed: 5, JobTimedOut: 5, Cancelled: 130}


EXIT_SOME_FAILED = 6  # some clips of a batch (or some takes of a run) failed or were left at a spend cap; others kept


EXIT_DOCTOR = 1  # doctor found a problem


EXIT_OS = EXIT[ConfigurationError]  # a folder, file or port that cannot be used: the setup's to fix


def os_error_text(exc: OSError) -> str:
    """One line for an OSError: its own message when Sonify wrote it, else what failed on which file."""
    if exc.strerror is None:
        return str(exc)
    where = f": {exc.filename}" if exc.filename is not None else ""
    return f"{exc.strerror}{where}"


def exit_code(exc: SonifyError) -> int:
    return next((code for kind, code in EXIT.items() if isinstance(exc, kind)), 1)
