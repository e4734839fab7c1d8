"""The `iom` command: a thin layer over the library.

Each command parses its options, calls one library function, renders the result, and maps the
project's exceptions to the documented exit codes (see `pipeline.errors.EXIT_CODES`). Logging
handlers are configured here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from pipeline.errors import IomError, failed_step

log = logging.getLogger("iom")
T = TypeVar("T")

# The global options, with whether each takes a value; `iom run --quiet` means `iom --quiet run`.
GLOBAL_OPTIONS = {"--quiet": False, "-q": False, "--verbose": False, "-v": False, "--log-format": True,
                  "--log-file": True}


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options written after the command to before it, so that they work in both
    places (an analyst types `iom run --quiet`, cron writes `iom --quiet run`)."""
    moved: list[str] = []
    rest: list[str] = []
    tokens = iter(args)
    for token in tokens:
        if token == "--":  # everything after is an argument
            rest.append(token)
            rest.extend(tokens)
            break
        name = token.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            moved.append(token)
            if GLOBAL_OPTIONS[name] and "=" not in token:
                value = next(tokens, None)
                if value is not None:
                    moved.append(value)
        else:
            rest.append(token)
    return moved + rest


class _Group(TyperGroup):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args)))


app = typer.Typer(
    cls=_Group,
    help="IOM Cohort: transparent, auditable cohort selection for Integrated Offender Management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Wide when piped to a file or cron mail, so tables are not cut.
out = Console(highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


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


@app.callback()
def main(
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="text (default) or json (for cron).")] = LogFormat.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors; no progress bars.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging and tracebacks.")] = False,
    log_file: Annotated[Path | None, typer.Option("--log-file", help="Also append JSON log lines to this file (0600).")] = None,
) -> None:
    """IOM Cohort command line."""
    os.umask(0o077)  # everything we create (warehouse, outputs, logs) is owner-only
    state.quiet, state.verbose, state.log_format = quiet, verbose, log_format
    setup_logging(log_format, quiet, verbose, log_file)


# --- helpers ---------------------------------------------------------------------------------


def _call(fn: Callable[[], T]) -> T:
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


def _locked_call(cfg, command: str, fn: Callable[[], T], *, shared: bool = False, wait: float = 0.0) -> T:
    """`_call` holding the workspace lock: exclusive for a command that writes, shared for one that
    only reads. The lock comes first and the heavy imports inside `fn` after, so a busy workspace
    is reported within a second."""
    from pipeline.lock import workspace_lock

    def locked() -> T:
        with workspace_lock(cfg.warehouse_path, command, shared=shared, wait=wait):
            return fn()

    return _call(locked)


@contextmanager
def _progress():
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


def _table(title: str, columns: list[str], rows: list[list], justify_numbers: bool = True) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*[f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else ("" if v is None else str(v)) for v in row])
    return table


def _print_ingest(report) -> None:
    rows = [[r.source, r.file_name, r.status, r.rows_read, r.rows_loaded, r.rows_rejected,
             ", ".join(f"{k} {v:,}" for k, v in r.reasons.items())] for r in report.loads]
    out.print(_table("Loads", ["source", "file", "status", "read", "loaded", "rejected", "reasons"], rows))
    out.print()
    recon = []
    for r in report.reconciliation:
        ok = r["rows_read"] == r["rows_loaded"] + r["rows_rejected"]
        recon.append([r["source"], r["files"], r["rows_read"], r["rows_loaded"], r["rows_rejected"],
                      "read = loaded + rejected" if ok else "MISMATCH"])
    out.print(_table("Reconciliation (all loads)", ["source", "files", "read", "loaded", "rejected", "check"], recon))
    out.print()
    link_rows = [[s["source"], s["records"], s["linked"], s["unlinked"], s["by_pnc"], s["by_nomis"], s["by_name_dob"],
                  s["ambiguous"]] for s in report.link.per_source]
    unchanged = "" if report.relinked else " (unchanged: no new extract since the last link)"
    out.print(_table(f"Identity linking: {report.link.people:,} people{unchanged}",
                     ["source", "records", "linked across agencies", "unlinked", "by PNC", "by NOMIS",
                      "by name+DOB", "ambiguous"], link_rows))
    if report.link.orphan_offences or report.link.orphan_events:
        out.print(f"  offences whose police id has no nominal: {report.link.orphan_offences:,}; "
                  f"probation events whose CRN has no case: {report.link.orphan_events:,} (kept, not scored)")


# --- commands --------------------------------------------------------------------------------


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing iom.toml.")] = False,
) -> None:
    """Write a commented iom.toml (warehouse, extracts, column mappings) into DIRECTORY."""
    from pipeline.workspace import init_workspace

    path = _call(lambda: init_workspace(directory, force))
    out.print(f"Wrote {path}. Edit the [extracts.*] sections to point at your files and map your column names.")


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the extracts and iom.toml into.")],
    people: Annotated[int, typer.Option("--people", help="Number of people to generate.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed and date give the same files.")] = 42,
    extract_date: Annotated[str | None, typer.Option("--extract-date", help="YYYY-MM-DD; default the first day of this month.")] = None,
    fault_rate: Annotated[float, typer.Option("--fault-rate", help="Share of rows with injected faults.")] = 0.002,
    past_decisions: Annotated[bool, typer.Option("--past-decisions/--no-past-decisions", help="Simulate an IOM scheme's past monthly panels and write their decisions.")] = True,
    treatment_effect: Annotated[float, typer.Option("--treatment-effect", help="True effect of management: the share of a managed person's offending it prevents (0 = none).")] = 0.0,
    identity_noise: Annotated[float, typer.Option("--identity-noise", help="Scale of the identity corruption in probation and prison records (0 = clean copies, 1 = documented rates).")] = 1.0,
) -> None:
    """Generate a synthetic world: the five extracts, a matching iom.toml, the truth and past decisions."""
    from pipeline.workspace import generate_workspace

    when = _call(lambda: _parse_date(extract_date, "--extract-date")) if extract_date else date.today().replace(day=1)
    data, config_path = _call(lambda: generate_workspace(
        out_dir, people, seed, when, fault_rate, past_decisions=past_decisions, treatment_effect=treatment_effect,
        identity_noise=identity_noise))
    rows = [[e.name, e.path.name, e.format, e.rows] for e in data.extracts]
    out.print(_table(f"Generated {people:,} people (seed {seed}, extract date {when})", ["extract", "file", "format", "rows"], rows))
    out.print(f"Injected faults: {', '.join(f'{k} {v:,}' for k, v in sorted(data.faults.items())) or 'none'}")
    out.print(f"Truth (never read by the pipeline): {data.truth_dir}")
    if data.decisions_path is not None:
        out.print(f"Past panel decisions: {data.decisions_path}")
    out.print(f"Config: {config_path}")


@app.command()
def ingest(config: ConfigOption = Path("iom.toml"), wait: WaitOption = 0.0) -> None:
    """Load every new extract into the warehouse, quarantine bad rows, link identities."""
    from pipeline.config import load_config

    def load(progress):
        from pipeline.workspace import ingest_workspace

        return ingest_workspace(cfg, progress)

    cfg = _call(lambda: load_config(config))
    with _progress() as progress:
        report = _locked_call(cfg, "ingest", lambda: load(progress), wait=wait)
    _print_ingest(report)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Workspace folder for the demo.")] = Path("iom-demo"),
    people: Annotated[int, typer.Option("--people", help="Number of people to generate.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
) -> None:
    """Generate a small realistic data set and run the whole chain on it."""
    from pipeline.config import load_config
    from pipeline.run import run_period
    from pipeline.workspace import generate_workspace, ingest_workspace

    when = date.today().replace(day=1)
    out.print(f"Generating {people:,} synthetic people into {directory} (seed {seed}, extract date {when}) ...")
    data, config_path = _call(lambda: generate_workspace(directory, people, seed, when, 0.002))
    out.print(f"Injected faults (to show quarantine at work): {', '.join(f'{k} {v:,}' for k, v in sorted(data.faults.items()))}")
    cfg = _call(lambda: load_config(config_path))
    with _progress() as progress:
        report = _locked_call(cfg, "demo", lambda: ingest_workspace(cfg, progress))
    _print_ingest(report)
    # Two monthly runs, so the pack shows movement since "last month".
    last_month = (when - timedelta(days=1)).replace(day=1)
    for as_of in (last_month, when):
        with _progress() as progress:
            result = _locked_call(cfg, "demo", lambda as_of=as_of: run_period(cfg, as_of, force=False, progress=progress))
        out.print()
        _print_run(result)
    out.print(f"\nWarehouse: {cfg.warehouse_path}")
    out.print(f"Try: uv run iom explain {_first_priority(result)} --config {config_path}")
    if result.output_dir is not None:
        next_month = (when + timedelta(days=32)).replace(day=1)
        out.print(f"Then fill the decisions sheet of {result.output_dir / 'pack.xlsx'} and: "
                  f"uv run iom decisions import FILLED.xlsx --config {config_path} && "
                  f"uv run iom run --as-of {next_month} --config {config_path}")


def _first_priority(result) -> str:
    """A person key from the proposed cohort, for the demo's explain hint."""
    import polars as pl

    cohort = pl.read_csv(result.output_dir / "cohort.csv", columns=["person_key"], n_rows=1)
    return cohort["person_key"][0] if cohort.height else "PERSON_KEY"


def _print_run(result) -> None:
    if result.status == "skipped":
        out.print(result.message)
        return
    stats = result.stats  # a SelectionStats (rules.select)
    out.print(f"Run {result.run_id} (as of {result.as_of}): {result.counts.get('assessed', 0):,} people assessed")
    out.print(f"  assessed: {stats.assessed:,}")
    out.print(f"  eligible: {stats.eligible:,}")
    out.print("  ineligible: " + ", ".join(f"{reason} {n}" for reason, n in stats.ineligible.items()))
    out.print(f"  priority: {stats.priority:,}")
    if stats.priority_by_area:
        columns = ["selected", "capacity", "eligible", "reaching_min_score", "super_prolific"]
        out.print(_table("  priority by area", ["area", *[c.replace("_", " ") for c in columns]],
                         [[area, *[getattr(a, c) for c in columns]] for area, a in stats.priority_by_area.items()]))
    else:
        out.print("  priority by area: ")
    out.print(f"  min score: {stats.min_score:,}")
    out.print(f"  super prolific: {stats.super_prolific:,}")
    out.print(f"  super prolific offences 12m: {stats.super_prolific_offences_12m:,}")
    out.print(f"  offences 12m: {stats.offences_12m:,}")
    if stats.super_prolific_offence_share is not None:
        out.print(f"  super prolific offence share: {stats.super_prolific_offence_share:.1%}")
    out.print(f"  release watch: {stats.release_watch:,}")
    moves = result.counts.get("movement", {})
    if moves:
        out.print("  movement: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in moves.items()))
    out.print(f"  release watch (in custody, release due within 90 days, would qualify): {result.counts.get('release_watch', 0):,}")
    panel = result.counts.get("decisions") or {}
    if any(panel.values()):
        out.print(f"  panel decisions: managed {panel['managed']:,} (in the cohort by accept {panel['included']:,}), "
                  f"kept out by reject {panel['excluded']:,}, deferred {panel['deferred']:,}, "
                  f"due for review {panel['due_for_review']:,}")
    out.print(f"Outputs: {result.output_dir}")
    model = result.model
    if model:
        split = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.counts.get("disagreement", {}).items())
        out.print(f"  advisory model: {model['name']} version {model['version']} ({model['kind']}, sha256 "
                  f"{model['artefact_sha256'][:12]}); disagreements: {split or 'none'}")
    names = ("scores.csv", "cohort.csv", "movement.csv", "release_watch.csv", "due_for_review.csv", "fairness.csv",
             "manifest.json") + (
        ("disagreement.csv",) if model else ())
    for name in names:
        out.print(f"  {result.output_dir / name}")
    out.print(f"Panel pack (open in a browser, works offline): {result.output_dir / 'pack.html'}")
    out.print(f"Panel workbook (decisions sheet): {result.output_dir / 'pack.xlsx'}")


@app.command()
def run(
    config: ConfigOption = Path("iom.toml"),
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD; default from [workspace].period.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run again even if this period has a completed run.")] = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="Score with this registered model beside the rules: an alias (champion) or a version; "
                        "default [model] use.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """Ingest new extracts, compute features, score, select the cohorts, write the outputs."""
    from pipeline.config import load_config

    cfg = _call(lambda: load_config(config))
    when = _call(lambda: _parse_date(as_of, "--as-of")) if as_of else None

    def monthly_run(progress):
        from pipeline.run import run_period

        return run_period(cfg, when, force, progress, model)

    with _progress() as progress:
        result = _locked_call(cfg, "run", lambda: monthly_run(progress), wait=wait)
    _print_run(result)


@app.command()
def report(
    run_id: Annotated[str | None, typer.Option("--run", help="Run id; default the latest completed run.")] = None,
    config: ConfigOption = Path("iom.toml"),
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder to write into; default the run's output folder.")] = None,
    pseudonymise: Annotated[bool | None, typer.Option("--pseudonymise/--no-pseudonymise",
                                                      help="Override [workspace].pseudonymise for this pack.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """Regenerate a run's panel pack (pack.html) and workbook (pack.xlsx) from the warehouse alone."""
    from pipeline.config import load_config

    def regenerate():
        from reporting.report import report_run

        return report_run(cfg, run_id, out_dir, pseudonymise)

    cfg = _call(lambda: load_config(config))
    paths = _locked_call(cfg, "report", regenerate, shared=True, wait=wait)
    out.print(f"Run {paths.run_id}: {paths.members:,} proposed people")
    out.print(f"Panel pack (open in a browser, works offline): {paths.pack}")
    out.print(f"Panel workbook (decisions sheet): {paths.workbook}")
    if paths.lookup:
        out.print(f"Pseudonym lookup (keep it; do not send it): {paths.lookup}")


@app.command()
def explain(
    identifier: Annotated[str, typer.Argument(help="Person key, police id, PNC id, CRN or NOMIS number.")],
    config: ConfigOption = Path("iom.toml"),
    run_id: Annotated[str | None, typer.Option("--run", help="Run id; default the latest completed run.")] = None,
    events: Annotated[int, typer.Option("--events", help="How many timeline events to show.")] = 15,
    wait: WaitOption = 0.0,
) -> None:
    """Why is this person ranked here? Score breakdown, feature values and a short timeline."""
    from pipeline.config import load_config
    from pipeline.explain import explain_person, feature_lines

    cfg = _call(lambda: load_config(config))
    e = _locked_call(cfg, "explain", lambda: explain_person(cfg, identifier, run_id, events), shared=True, wait=wait)
    row, person = e.row, e.person
    name = f"{person.get('forenames') or ''} {person.get('surname') or ''}".strip()
    out.print(f"{name} ({person['person_key']}) in run {e.run_id}, as of {e.as_of}")
    ids = ", ".join(f"{k} {person[k]}" for k in ("police_person_id", "pnc_id", "crn", "nomis_id") if person.get(k))
    out.print(f"  identifiers: {ids}")
    if row.get("eligible"):
        status = f"rank {row.get('rank')} overall, {row.get('area_rank')} in {row.get('area')}"
    else:
        status = f"not eligible: {row.get('ineligible_reason')}"
    cohorts = [c for c, flag in (("priority cohort", "priority"), ("super-prolific", "super_prolific")) if row.get(flag)]
    out.print(f"  score {row.get('score')}: {status}; " + (
        f"proposed for the {' and '.join(cohorts)} ({row.get('cohort_type') or 'n/a'})" if cohorts
        else f"not proposed ({row.get('selection_note') or 'below the cohort definition'})"))
    if row.get("decision_note"):
        out.print(f"  panel decision: {row['decision_note']}" + (" (managed)" if row.get("managed") else ""))
    out.print("\nWhy (each component of the score):")
    for line in (row.get("reasons") or "no points awarded").splitlines():
        out.print(f"  {line}")
    if e.model and e.model.get("error"):
        out.print(f"\nAdvisory model ({e.model['name']} version {e.model['version']}): not shown, {e.model['error']}")
    elif e.model:
        m = e.model
        out.print(f"\nAdvisory model ({m['name']} version {m['version']}, {m['kind']}; advisory only, the score "
                  "above decides):")
        out.print(f"  probability {m['probability']:.0%} ({row.get('model_band')}), rank {row.get('model_rank') or 'n/a'} "
                  f"among the eligible; contributions in {m['unit']}")
        for label, items in (("pushed up by", m["up"]), ("pushed down by", m["down"])):
            shown = "; ".join(f"{f} = {_show_value(v)} ({c:+.2f})" for f, v, c in items) or "nothing"
            out.print(f"  {label}: {shown}")
    out.print("\nFeature values at the as-of date:")
    skip = {"person_key", "reasons", "surname", "forenames", "date_of_birth", "ethnicity", "managed", "decision",
            "decision_cohort_type", "decision_date", "review_date", "due_for_review", "decision_note"}
    out.print(_table("", ["feature", "value"], [list(x) for x in feature_lines(row, skip)]))
    out.print("\nTimeline (newest first):")
    out.print(_table("", ["date", "agency", "event", "detail"],
                     [[t["day"], t["agency"], t["event"], t["detail"]] for t in e.timeline]))


def _show_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "unknown"}[value]
    return f"{value:.2f}" if isinstance(value, float) else str(value)


@app.command()
def train(
    config: ConfigOption = Path("iom.toml"),
    from_date: Annotated[str | None, typer.Option("--from", help="First snapshot date, YYYY-MM-DD; default 11 periods before --to.")] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Last snapshot date, YYYY-MM-DD; default the latest whose window the data cover.")] = None,
    horizon_days: Annotated[int | None, typer.Option("--horizon-days", help="Outcome window after each snapshot; default [model] horizon_days (365).")] = None,
    target: Annotated[str | None, typer.Option("--target", help="any (counted offence), neighbourhood or violence; default [model] target.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder; default OUTPUTS/train-ID.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """Train the advisory model on past snapshots, test it against the rules score, register it in MLflow."""
    from pipeline.config import load_config

    cfg = _call(lambda: load_config(config))
    start = _call(lambda: _parse_date(from_date, "--from")) if from_date else None
    end = _call(lambda: _parse_date(to_date, "--to")) if to_date else None

    def work():
        from models.train import train_model

        return train_model(cfg, start, end, horizon_days, target, out_dir)

    result = _locked_call(cfg, "train", work, wait=wait)  # it stores the training in the warehouse
    s = result.summary
    window = s["window"]
    out.print(f"Training {result.train_id}: snapshots {window['from']} to {window['to']} (test from "
              f"{window['test_dates'][0]}), target {window['target']} within {window['horizon_days']} days")
    out.print("  rows: " + "; ".join(f"{p} {c['rows']:,} ({c['positives']:,} positive)" for p, c in s["counts"].items()))
    rows = [[r["scorer"] + (" (chosen)" if r["chosen"] else ""), _fmt(r["auc"]),
             f"{_fmt(r['auc_low'])}-{_fmt(r['auc_high'])}", _fmt(r["average_precision"]), _fmt(r["brier"], 4),
             "" if r["precision_at_cohort"] is None else f"{r['precision_at_cohort']:.1%}",
             "" if r["capture_offences"] is None else f"{r['capture_offences']:.1%}"]
            for r in result.metrics.iter_rows(named=True)]
    out.print(_table("Test period, test people (the same rows for every scorer)",
                     ["scorer", "AUC", "95% CI", "AP", "Brier", "precision", "capture"], rows))
    verdict = ("moved to this version" if result.champion else
               f"not moved (the test AUC must beat the rules score's by {s['champion_margin']:+.3f})")
    out.print(f"Registered {result.model_name} version {result.model_version} ({result.kind}) in {result.tracking_uri}; "
              f"MLflow run {result.run_id}; alias champion {verdict}")
    out.print(f"  artefact sha256 {result.sha256}")
    out.print(f"Outputs: {result.output_dir}")
    for name in ("model_card.md", "metrics.csv", "calibration.csv", "fairness.csv", "train.json"):
        out.print(f"  {result.output_dir / name}")


def _fmt(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


@app.command()
def runs(
    config: ConfigOption = Path("iom.toml"),
    show: Annotated[str | None, typer.Argument(help="'show' followed by a run id prints that run's manifest.")] = None,
    run_id: Annotated[str | None, typer.Argument(help="Run id for `iom runs show RUN`.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """List the runs of this workspace, or `iom runs show RUN` for one run's manifest."""
    from pipeline.config import load_config
    from pipeline.runs import get_run, list_runs
    from pipeline.warehouse import connect

    cfg = _call(lambda: load_config(config))
    if show is None:
        rows = _locked_call(cfg, "runs", lambda: list_runs(cfg), shared=True, wait=wait)
        out.print(_table("Runs", ["run", "as of", "status", "started", "finished", "rules", "code"],
                         [[r["run_id"], r["as_of"], r["status"], r["started_at"], r["finished_at"],
                           f"{r['rules_name'] or ''} {r['rules_version'] or ''}".strip(), r["code_version"]] for r in rows]))
        return
    if show != "show" or not run_id:
        err.print("usage error: use `iom runs` to list runs or `iom runs show RUN` for one run")
        raise typer.Exit(2)

    def fetch():
        con = connect(cfg, read_only=True)
        try:
            return get_run(con, run_id)
        finally:
            con.close()

    run_info = _locked_call(cfg, "runs", fetch, shared=True, wait=wait)
    out.print(json.dumps(run_info["manifest"], indent=2, default=str, sort_keys=True))


@app.command()
def rejects(
    config: ConfigOption = Path("iom.toml"),
    source: Annotated[str | None, typer.Option("--source", help="Only this extract, e.g. police_offences.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many failures to show.")] = 20,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write every failure to this CSV file.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """The quarantined rows: counts by reason, then each failure with file, line, column and value."""
    from pipeline.config import load_config
    from pipeline.quality import rejects as read_rejects

    cfg = _call(lambda: load_config(config))
    report = _locked_call(cfg, "rejects", lambda: read_rejects(cfg, source, limit, out_file), shared=True, wait=wait)
    out.print(_table("Rejected rows by reason", ["source", "file", "reason", "failures"],
                     [list(r) for r in report.by_reason]))
    out.print()
    out.print(_table(f"First {report.detail.height} failures", ["source", "file", "line", "column", "reason", "message"],
                     [[r["source"], r["file_name"], r["line"], r["column_name"], r["reason_code"], r["message"]]
                      for r in report.detail.iter_rows(named=True)]))
    if report.written:
        out.print(f"Every failure written to {report.written}")


@app.command()
def purge(
    older_than: Annotated[str, typer.Option("--older-than", help="Retention period: 24m, 2y, 730d or 104w.")],
    config: ConfigOption = Path("iom.toml"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be removed; change nothing.")] = False,
    wait: WaitOption = 0.0,
) -> None:
    """Remove extract rows, rejects and per-person run data past the retention period."""
    from pipeline.config import load_config
    from pipeline.retention import purge as purge_workspace

    cfg = _call(lambda: load_config(config))
    report = _locked_call(cfg, "purge", lambda: purge_workspace(cfg, older_than, dry_run), wait=wait)
    verb = "Would remove" if dry_run else "Removed"
    out.print(f"{verb} data of {len(report.loads):,} loads and {len(report.runs):,} runs finished before "
              f"{report.cutoff:%Y-%m-%d %H:%M}:")
    for table, count in report.rows_deleted.items():
        out.print(f"  {table}: {count:,} rows")
    out.print("Kept: the loads and runs registers (file names, sha256, counts, manifests).")


@app.command()
def backtest(
    config: ConfigOption = Path("iom.toml"),
    from_date: Annotated[str | None, typer.Option("--from", help="First as-of date, YYYY-MM-DD; default 11 periods before --to.")] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Last as-of date, YYYY-MM-DD; default the latest whose window the data cover.")] = None,
    every: Annotated[str, typer.Option("--every", help="Period between as-of dates: 1m, 3m, 2w, 30d.")] = "1m",
    horizon_days: Annotated[int, typer.Option("--horizon-days", help="Length of the outcome window after each as-of date.")] = 365,
    rules: Annotated[list[str] | None, typer.Option("--rules", help="A rule file to test (repeat to compare); default the workspace's.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder; default OUTPUTS/backtest-ID.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """Back-test the ranking: score at past as-of dates, then see who offended in the window after."""
    from pipeline.config import load_config

    cfg = _call(lambda: load_config(config))
    start = _call(lambda: _parse_date(from_date, "--from")) if from_date else None
    end = _call(lambda: _parse_date(to_date, "--to")) if to_date else None

    def work():
        from evaluation.backtest import run_backtest

        return run_backtest(cfg, start, end, every, horizon_days, rules or (), out_dir)

    result = _locked_call(cfg, "backtest", work, wait=wait)  # it stores its results in the warehouse
    out.print(f"Back-test {result.backtest_id}: {len(result.dates)} as-of dates from {result.dates[0]} to "
              f"{result.dates[-1]}, window {horizon_days} days, data to {result.last_covered}")
    for name, summary in result.summary["rule_sets"].items():
        p = summary["population"]
        out.print(f"  {name}: {p['evaluated']:,} eligible person-dates evaluated ({p['evaluated_from_release']:,} "
                  f"followed from their release; {p['left_out_no_complete_window']:,} left out, no complete window)")
    pooled = result.metrics.filter(result.metrics["as_of"].is_null())

    def pct(value):
        return "" if value is None else f"{value:.1%}"

    rows = [[r["rule_set"], r["scorer"], f"{r['auc']:.3f}" if r["auc"] is not None else "",
             f"{r['auc_low']:.3f}-{r['auc_high']:.3f}" if r["auc_low"] is not None else "",
             f"{r['average_precision']:.3f}" if r["average_precision"] is not None else "",
             r["cohort_size"], pct(r["precision_at_cohort"]), pct(r["capture_offences"]),
             pct(r["capture_neighbourhood"])] for r in pooled.iter_rows(named=True)]
    out.print(_table("Pooled over the as-of dates (eligible people with a complete window)",
                     ["rule set", "score", "AUC", "95% CI", "AP", "selected", "precision", "capture", "capture NC"],
                     rows))
    for name, summary in result.summary["rule_sets"].items():
        flagged = summary["fairness"]["flagged"]
        out.print(f"Fairness ({name}): {summary['fairness']['checked']:,} ratios checked, {len(flagged):,} outside "
                  f"{summary['fairness']['ratio_range'][0]}-{summary['fairness']['ratio_range'][1]} (fairness.csv)")
    out.print(f"Outputs: {result.output_dir}")
    for name in ("metrics.csv", "bands.csv", "curves.csv", "fairness.csv", "backtest.json", "backtest.svg"):
        out.print(f"  {result.output_dir / name}")


@app.command()
def impact(
    config: ConfigOption = Path("iom.toml"),
    from_date: Annotated[str | None, typer.Option("--from", help="First meeting date, YYYY-MM-DD; default the first accept.")] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Last meeting date, YYYY-MM-DD; default the latest with 12 months of data after it.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder; default OUTPUTS/impact-ID.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """Estimate the effect of IOM management on offending, what it is worth and the break-even."""
    from pipeline.config import load_config

    cfg = _call(lambda: load_config(config))
    start = _call(lambda: _parse_date(from_date, "--from")) if from_date else None
    end = _call(lambda: _parse_date(to_date, "--to")) if to_date else None

    def work():
        from evaluation.impact_run import run_impact

        return run_impact(cfg, start, end, out_dir)

    result = _locked_call(cfg, "impact", work, wait=wait)  # it stores its results in the warehouse
    s = result.summary

    def pct(figure):
        if figure.get("estimate") is None:
            return "not estimable"
        low, high = figure.get("low"), figure.get("high")
        return f"{figure['estimate']:.1%}" + (f" (95% CI {low:.1%} to {high:.1%})" if low is not None else "")

    out.print(f"Impact {result.impact_id}: meetings {s['from']} to {s['to']}, {s['treated_people']:,} managed people, "
              f"{s['comparison_people']:,} comparison people, data to {s['last_covered']}")
    out.print(f"  reduction in offending (matched around the capacity cut): {pct(s['effect'])}")
    out.print(f"  difference-in-differences: {pct(s['did_effect'])}")
    out.print(f"  naive before/after (overstated by regression to the mean): {pct(s['naive_effect'])}")
    out.print(f"  neighbourhood crime (matched): {pct(s['neighbourhood_effect'])}")
    v = s["value"]
    be = v["break_even_effect"]
    out.print(f"  cost of crime avoided {pct_money(v['cost_avoided'])}; management cost £{v['management_cost']:,.0f}; "
              f"net value " + ("n/a" if v["net_value"] is None else f"£{v['net_value']:,.0f}")
              + "; break-even reduction " + ("n/a" if be is None or not v["management_cost"] else f"{be:.1%}"))
    if not v["management_cost"]:
        out.print("  no management costs are set: add [impact] staff, intervention and fixed costs for the break-even")
    out.print(f"Outputs: {result.output_dir}")
    for name in ("impact.csv", "impact.json", "impact.svg"):
        out.print(f"  {result.output_dir / name}")


def pct_money(figure: dict) -> str:
    if figure.get("estimate") is None:
        return "n/a"
    text = f"£{figure['estimate']:,.0f}"
    if figure.get("low") is not None:
        text += f" (95% CI £{figure['low']:,.0f} to £{figure['high']:,.0f})"
    return text


decisions_app = typer.Typer(
    help="The panel's decisions: import the completed workbook (or a CSV), list them.", no_args_is_help=True)
app.add_typer(decisions_app, name="decisions")


@decisions_app.command("import")
def decisions_import(
    file: Annotated[Path, typer.Argument(help="The completed pack.xlsx, or a CSV in the decisions sheet's columns.")],
    config: ConfigOption = Path("iom.toml"),
    sheet: Annotated[str, typer.Option("--sheet", help="The workbook's sheet to read.")] = "decisions",
    wait: WaitOption = 0.0,
) -> None:
    """Import the panel's decisions (accept, reject, defer) from a workbook or CSV, all rows or none."""
    from pipeline.config import load_config

    def load():
        from pipeline.decisions import import_decisions

        return import_decisions(cfg, file, sheet)

    cfg = _call(lambda: load_config(config))
    r = _locked_call(cfg, "decisions import", load, wait=wait)
    if r.status == "already imported":
        out.print(f"{r.file_name} was already imported as {r.import_id} ({r.imported_at:%Y-%m-%d %H:%M} UTC, by "
                  f"{r.imported_by}): nothing changed.")
        return
    where = f", sheet {r.sheet}" if r.sheet else ""
    out.print(f"Imported {r.decisions:,} decisions from {r.file_name}{where} as {r.import_id}"
              + (f" (run {r.run_id})" if r.run_id else "") + ": "
              + ", ".join(f"{k} {v:,}" for k, v in r.by_decision.items()))
    out.print(f"  rows read {r.rows_read:,}; without a decision {r.blank_rows:,}; people with an earlier decision "
              f"(kept as history, superseded from their new meeting on) {r.superseding:,}")
    out.print(f"  sha256 {r.sha256}; imported by {r.imported_by} at {r.imported_at:%Y-%m-%d %H:%M:%S} UTC")
    out.print("The next `iom run` applies them: see `iom decisions list`.")


@decisions_app.command("list")
def decisions_list(
    config: ConfigOption = Path("iom.toml"),
    due: Annotated[bool, typer.Option("--due-for-review", help="Only decisions due for review at the date.")] = False,
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD; default today.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """The panel's decision in force for each person at a date, with its review date and status."""
    from pipeline.config import load_config

    def read():
        from pipeline.decisions import list_decisions

        return list_decisions(cfg, when, due)

    cfg = _call(lambda: load_config(config))
    when = _call(lambda: _parse_date(as_of, "--as-of")) if as_of else date.today()
    frame = _locked_call(cfg, "decisions list", read, shared=True, wait=wait)
    title = f"{'Due for review' if due else 'Decisions in force'} at {when}: {frame.height:,} people"
    rows = [[r["person_key"], f"{r.get('forenames') or ''} {r.get('surname') or ''}".strip(), r.get("area"),
             r["decision"], r["cohort_type"], r["meeting_date"], r["review_date"], r["management_end"], r["status"],
             r["decided_by"], r["import_id"], r["earlier"]] for r in frame.iter_rows(named=True)]
    out.print(_table(title, ["person", "name", "area", "decision", "type", "meeting", "review", "management ended",
                             "status", "decided by", "import", "earlier decisions"], rows))


def _parse_date(value: str, option: str) -> date:
    from pipeline.errors import UsageError

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from None


if __name__ == "__main__":  # pragma: no cover
    app()
