"""One exception hierarchy; each class carries the documented process exit code.

The CLI maps these to exit codes and prints the message; anything else is an internal error.
Messages must never contain personal data (names, dates of birth, identifiers).
"""

from __future__ import annotations


class IomError(Exception):
    """Base class: a failure we expected and can explain to the user."""

    exit_code = 1
    label = "error"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  What to do: {self.hint}"


class UsageError(IomError):
    exit_code = 2
    label = "usage error"


class ConfigError(IomError):
    exit_code = 3
    label = "config error"


class InputFileError(IomError):
    """An extract (or decisions) file cannot be read as a whole: nothing from it is loaded."""

    exit_code = 4
    label = "input file error"


class ValidationThresholdError(IomError):
    exit_code = 5
    label = "validation threshold exceeded"


class LockedError(IomError):
    exit_code = 6
    label = "workspace locked"


class WarehouseError(IomError):
    """The warehouse cannot be opened (wrong or missing key, corrupt file)."""

    exit_code = 7
    label = "warehouse error"


class NotFoundError(IomError):
    """A run, person or registered model (alias, version) asked for does not exist."""

    exit_code = 8
    label = "not found"


class DataRangeError(IomError):
    """The data do not cover what was asked: a back-test window past the last date covered, or
    too little history before the first as-of date."""

    exit_code = 9
    label = "not enough data"


class RegistryError(IomError):
    """The model tracking store cannot be reached or read (a wrong or unreachable tracking URI)."""

    exit_code = 10
    label = "model registry error"


class ArtefactIntegrityError(IomError):
    """A model artefact's sha256 is not the one recorded at registration (or pinned in the
    config): it is refused before loading, as a model file is code."""

    exit_code = 11
    label = "model artefact refused"


EXIT_CODES: list[tuple[int, str, str]] = [
    (0, "ok", "the command completed (including a no-op re-run of a completed period)"),
    (1, "internal", "an unexpected error; the log names the step, please report it"),
    (2, "usage", "bad command-line options or arguments"),
    (3, "config", "iom.toml or a rule file is missing or invalid; the message names file and key"),
    (4, "input file", "an extract file cannot be read (missing, unreadable, undecodable, missing a required column), or a decisions file (the panel's, or reviewers' link decisions) has a problem in any row; nothing from it was loaded"),
    (5, "validation threshold", "a source's rejected share exceeded `max_rejected_percent`; the run is stored as failed"),
    (6, "locked", "another command holds the workspace lock (the message names it and since when); `--wait SECONDS` waits instead"),
    (7, "warehouse", "the warehouse cannot be opened: encryption key missing or wrong, the file is damaged, or its schema is newer than this code"),
    (8, "not found", "the run, person or model (alias or version) asked for does not exist"),
    (9, "not enough data", "a back-test or training window runs past the last date the data cover (the message names it), the warehouse holds too little history before the first as-of date, or the training data hold too few positives"),
    (10, "model registry", "the MLflow tracking store (`[model] tracking_uri` or `MLFLOW_TRACKING_URI`) cannot be reached or read"),
    (11, "model artefact refused", "a model file's sha256 differs from the one recorded when it was registered (or pinned in `[model] sha256`): it was not loaded"),
]


# A failing SQL step is named on the exception itself (PEP 678 notes), so that the original
# DuckDB error type stays catchable and the CLI can log which step failed.
_STEP_NOTE = "in SQL step: "


def note_step(exc: BaseException, step: str) -> None:
    if failed_step(exc) is None:  # the innermost step names the failure
        exc.add_note(_STEP_NOTE + step)


def failed_step(exc: BaseException) -> str | None:
    """The SQL step an exception was raised in, if `pipeline.warehouse.run_sql` ran it."""
    for note in getattr(exc, "__notes__", ()):
        if note.startswith(_STEP_NOTE):
            return note.removeprefix(_STEP_NOTE)
    return None
