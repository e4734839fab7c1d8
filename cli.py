"""The `iom` command: a thin layer over the library.

Each command parses its options, calls one library function, renders the result, and maps the
project's exceptions to the documented exit codes (see `pipeline.errors.EXIT_CODES`). Logging
handlers are configured here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import click
import typer
from typer.core import TyperGroup

from cli_base import (
    ConfigOption,
    LogFormat,
    WaitOption,
    call,
    dates,
    locked_call,
    parse_date,
    progress_bar,
    setup_logging,
    state,
)
from cli_panel import decisions_app, links_app
from cli_show import (
    err,
    out,
    show_backtest,
    show_demo_step,
    show_explanation,
    show_impact,
    show_ingest,
    show_run,
    show_training,
    table,
)

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


# --- commands --------------------------------------------------------------------------------


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing iom.toml.")] = False,
) -> None:
    """Write a commented iom.toml (warehouse, extracts, column mappings) into DIRECTORY."""
    from pipeline.workspace import init_workspace

    path = call(lambda: init_workspace(directory, force))
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

    when = call(lambda: parse_date(extract_date, "--extract-date")) if extract_date else date.today().replace(day=1)
    data, config_path = call(lambda: generate_workspace(
        out_dir, people, seed, when, fault_rate, past_decisions=past_decisions, treatment_effect=treatment_effect,
        identity_noise=identity_noise))
    rows = [[e.name, e.path.name, e.format, e.rows] for e in data.extracts]
    out.print(table(f"Generated {people:,} people (seed {seed}, extract date {when})", ["extract", "file", "format", "rows"], rows))
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

        return ingest_workspace(cfg, progress, evaluate=True)

    cfg = call(lambda: load_config(config))
    with progress_bar() as progress:
        report = locked_call(cfg, "ingest", lambda: load(progress), wait=wait)
    show_ingest(report)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Workspace folder for the demo.")] = Path("iom-demo"),
    people: Annotated[int, typer.Option("--people", help="Number of people to generate.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    evidence: Annotated[bool, typer.Option(
        "--evidence/--no-evidence", help="Also import the simulated past decisions, back-test, estimate the impact "
                                         "and train the advisory model.")] = True,
) -> None:
    """Generate a realistic data set and run the whole chain on it: link, back-test, impact, model, two runs."""
    from pipeline.demo import demo_steps

    out.print(f"Generating {people:,} synthetic people into {directory} (seed {seed}) ...")
    seen: dict = {}

    def walk() -> None:
        for step in demo_steps(directory, people, seed, evidence, progress_bar):
            show_demo_step(step)
            seen[step.name] = step.result

    call(walk)
    config_path, result = seen["generated"][1], seen.get("run")
    out.print(f"\nWarehouse: {config_path.parent / 'warehouse.duckdb'}")
    out.print(f"Try: uv run iom explain {_first_priority(result)} --config {config_path}")
    if result is not None and result.output_dir is not None:
        next_month = (result.as_of + timedelta(days=32)).replace(day=1)
        out.print(f"Then fill the decisions sheet of {result.output_dir / 'pack.xlsx'} and: "
                  f"uv run iom decisions import FILLED.xlsx --config {config_path} && "
                  f"uv run iom run --as-of {next_month} --config {config_path}")


def _first_priority(result) -> str:
    """A person key from the proposed cohort, for the demo's explain hint."""
    import polars as pl

    cohort = pl.read_csv(result.output_dir / "cohort.csv", columns=["person_key"], n_rows=1)
    return cohort["person_key"][0] if cohort.height else "PERSON_KEY"


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

    cfg = call(lambda: load_config(config))
    when = call(lambda: parse_date(as_of, "--as-of")) if as_of else None

    def monthly_run(progress):
        from pipeline.run import run_period

        return run_period(cfg, when, force, progress, model)

    with progress_bar() as progress:
        result = locked_call(cfg, "run", lambda: monthly_run(progress), wait=wait)
    show_run(result)


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

    cfg = call(lambda: load_config(config))
    paths = locked_call(cfg, "report", regenerate, shared=True, wait=wait)
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

    cfg = call(lambda: load_config(config))
    e = locked_call(cfg, "explain", lambda: explain_person(cfg, identifier, run_id, events), shared=True, wait=wait)
    show_explanation(e, feature_lines)

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

    cfg = call(lambda: load_config(config))
    start, end = dates(from_date, "--from"), dates(to_date, "--to")

    def work():
        from models.train import train_model

        return train_model(cfg, start, end, horizon_days, target, out_dir)

    result = locked_call(cfg, "train", work, wait=wait)  # it stores the training in the warehouse
    show_training(result)

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

    cfg = call(lambda: load_config(config))
    if show is None:
        rows = locked_call(cfg, "runs", lambda: list_runs(cfg), shared=True, wait=wait)
        out.print(table("Runs", ["run", "as of", "status", "started", "finished", "rules", "code"],
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

    run_info = locked_call(cfg, "runs", fetch, shared=True, wait=wait)
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

    cfg = call(lambda: load_config(config))
    report = locked_call(cfg, "rejects", lambda: read_rejects(cfg, source, limit, out_file), shared=True, wait=wait)
    out.print(table("Rejected rows by reason", ["source", "file", "reason", "failures"],
                     [list(r) for r in report.by_reason]))
    out.print()
    out.print(table(f"First {report.detail.height} failures", ["source", "file", "line", "column", "reason", "message"],
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

    cfg = call(lambda: load_config(config))
    report = locked_call(cfg, "purge", lambda: purge_workspace(cfg, older_than, dry_run), wait=wait)
    verb = "Would remove" if dry_run else "Removed"
    out.print(f"{verb} data of {len(report.loads):,} loads and {len(report.runs):,} runs finished before "
              f"{report.cutoff:%Y-%m-%d %H:%M}:")
    for table_name, count in report.rows_deleted.items():
        out.print(f"  {table_name}: {count:,} rows")
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

    cfg = call(lambda: load_config(config))
    start, end = dates(from_date, "--from"), dates(to_date, "--to")

    def work():
        from evaluation.backtest import run_backtest

        return run_backtest(cfg, start, end, every, horizon_days, rules or (), out_dir)

    result = locked_call(cfg, "backtest", work, wait=wait)  # it stores its results in the warehouse
    show_backtest(result, horizon_days)


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

    cfg = call(lambda: load_config(config))
    start, end = dates(from_date, "--from"), dates(to_date, "--to")

    def work():
        from evaluation.impact_run import run_impact

        return run_impact(cfg, start, end, out_dir)

    result = locked_call(cfg, "impact", work, wait=wait)  # it stores its results in the warehouse
    show_impact(result)


app.add_typer(links_app, name="links")
app.add_typer(decisions_app, name="decisions")


if __name__ == "__main__":  # pragma: no cover
    app()
