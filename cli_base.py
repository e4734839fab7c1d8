"""What every `iom` command shares: the run state, logging, options, and the one way a command
calls the library (`call`, `locked_call`: exceptions to exit codes, the workspace lock)."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cli_show import err
from pipeline.errors import IomError, failed_step

log = logging.getLogger("iom")
T = TypeVar("T")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class _State:
    quiet = False
    verbose = False
    log_format = LogFormat.text


state = _State()

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Workspace config file (iom.toml).", show_default=True)
]
WaitOption = Annotated[float, typer.Option(
    "--wait", min=0, help="If another command holds the workspace, wait up to SECONDS for it (default: exit 6 at once).")]


# --- logging -----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for cron and log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and state.verbose:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(log_format: LogFormat, quiet: bool, verbose: bool, log_file: Path | None = None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if log_format is LogFormat.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handler.setLevel(level)
    root.addHandler(handler)
    if log_file is not None:  # always JSON lines; created owner-only (umask 077)
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(JsonFormatter())
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        root.addHandler(file_handler)
        log_file.chmod(0o600)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("mlflow", "alembic", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)



# --- helpers ---------------------------------------------------------------------------------


def call(fn: Callable[[], T]) -> T:
    """Run one library call; map our exceptions to exit codes, never show a raw traceback."""
    try:
        return fn()
    except IomError as exc:
        err.print(f"[bold red]{exc.label}:[/] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:  # anything unexpected is an internal error, exit 1
        step = failed_step(exc)
        if step:  # the exception type and step only: a message may quote a value from the data
            log.error("internal error in step %r: %s", step, type(exc).__name__)
        else:
            log.error("internal error: %s", type(exc).__name__)
        first_line = str(exc).splitlines()[0][:300] if str(exc) else ""
        where = f" in step {escape(step)}" if step else ""
        err.print(f"[bold red]internal error{where}:[/] {type(exc).__name__}: {escape(first_line)}")
        if state.verbose:
            err.print(traceback.format_exc())
        else:
            err.print("  run again with --verbose for the traceback, and report it")
        raise typer.Exit(1) from None


def locked_call(cfg, command: str, fn: Callable[[], T], *, shared: bool = False, wait: float = 0.0) -> T:
    """`_call` holding the workspace lock: exclusive for a command that writes, shared for one that
    only reads. The lock comes first and the heavy imports inside `fn` after, so a busy workspace
    is reported within a second."""
    from pipeline.lock import workspace_lock

    def locked() -> T:
        with workspace_lock(cfg.warehouse_path, command, shared=shared, wait=wait):
            return fn()

    return call(locked)


@contextmanager
def progress_bar():
    """A progress bar on a terminal only; a callback (label, done, total) for the library."""
    if state.quiet or not err.is_terminal:
        yield None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(), console=err, transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(label: str, done: int = 0, total: int | None = None) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield update


def dates(value: str | None, option: str) -> date | None:
    """An optional date option: None when not given, else parsed (a bad one exits 2)."""
    return call(lambda: parse_date(value, option)) if value else None


def parse_date(value: str, option: str) -> date:
    from pipeline.errors import UsageError

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from None
