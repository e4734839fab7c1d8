"""`iom run`: one monthly run, from new extracts to the proposed cohorts and their outputs.

Order: lock the workspace; decide the period; skip a completed period unless forced; ingest new
files; compute features at the as-of date; score; select; store everything under a run id in one
transaction; compare with the previous run (movement); write the output folder atomically.

A run killed at any point leaves no half-written state: the warehouse transaction is not
committed and the output folder is only renamed into place when complete.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import logging
import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from features.build import IDENTIFIER_COLUMNS, compute_features, unknown_offence_codes
from features.reference import load_offence_reference
from pipeline.config import Config
from pipeline.decisions import DECISION_COLUMNS, due_for_review, panel_at
from pipeline.errors import ValidationThresholdError
from pipeline.link.persons import merged_into
from pipeline.lock import workspace_lock
from pipeline.runs import RulesUsed, RunCounts, RunInput, RunManifest, get_run, list_runs
from pipeline.safe_cells import write_safe_csv
from pipeline.schema import scores_table
from pipeline.warehouse import connect, q, run_sql, transaction
from pipeline.workspace import IngestReport, ingest_workspace
from reporting.pseudonyms import for_config
from reporting.report import PACK, WORKBOOK, build_report
from reporting.tables import store_run_extras
from rules.schema import RuleSet, load_rules
from rules.score import EligibilityReason, score
from rules.select import SelectionStats, select_cohorts

log = logging.getLogger(__name__)

__all__ = ["RunResult", "Scored", "get_run", "list_runs", "run_period", "score_at", "score_period", "scores_table"]

# The columns a panel reads first, then every feature and component column.
LEADING_COLUMNS = [
    "rank", "area_rank", "person_key", "area", "score", "model_probability", "model_band", "model_rank", "eligible",
    "ineligible_reason", "priority", "super_prolific", "cohort_type", "selection_note", "reasons", *DECISION_COLUMNS,
]
DUE_FOR_REVIEW = "due_for_review.csv"


@dataclass
class RunResult:
    run_id: str | None
    as_of: date
    status: str  # "completed", "skipped" (period already done), "failed"
    output_dir: Path | None = None
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    message: str = ""
    stats: SelectionStats | None = None  # a completed run's selection (counts["stats"] is its to_dict())
    model: dict | None = None  # the advisory model used, as the manifest records it


def period_as_of(config: Config, today: date | None = None) -> date:
    today = today or date.today()
    return today.replace(day=1) if config.workspace.period == "month_start" else today


def code_version() -> str:
    try:
        version = importlib.metadata.version("iom-cohort")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
            timeout=5, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


# --- the scoring part (also what the benchmark times) -----------------------------------------


@dataclass
class Scored:
    ranked: pl.DataFrame  # the output columns, in rank order
    release_watch: pl.DataFrame
    stats: SelectionStats
    unknown_codes: pl.DataFrame
    rules: RuleSet
    timings: dict
    ineligible_code: pl.Series  # EligibilityReason per row of `ranked`: kept out of the output files
    due_for_review: pl.DataFrame | None = None  # the panel's decisions due for review at the as-of date
    model: dict | None = None  # the advisory model used (name, version, run id, hash), else None
    disagreement: pl.DataFrame | None = None  # with a model: where the rules and the model part

    def ranked_with_codes(self) -> pl.DataFrame:
        """`ranked` with its `ineligible_code` column, as `movement` reads it."""
        return self.ranked.with_columns(self.ineligible_code)


def score_at(con: duckdb.DuckDBPyConnection, config: Config, as_of: date, model=None) -> Scored:
    """Features at the as-of date, rule scores and cohort selection with the panel's decisions in
    force at that date (`pipeline.decisions`); nothing is written.

    With `model` (a `models.registry.LoadedModel`), the advisory model's probability, band and
    rank are added beside the score (and its points, when the rule set declares a blend), and
    the disagreement list is made; without one, nothing of the model appears."""
    timings = {}
    rules = load_rules(config.workspace.rules if config.workspace.rules == "default"
                       else str(config.resolve(config.workspace.rules)))
    reference = load_offence_reference(
        config.resolve(config.workspace.offence_reference) if config.workspace.offence_reference else None
    )
    started = time.perf_counter()
    features = compute_features(con, as_of, reference, rules.counted_outcomes, rules.unknown_offence,
                                identifiers=True, ordered=False)
    timings["features_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    scored = score(features, rules)
    timings["scoring_s"] = round(time.perf_counter() - started, 3)
    if model is not None:
        from threadpoolctl import threadpool_limits

        from models.predict import add_probability

        started = time.perf_counter()
        with threadpool_limits(config.model.threads):
            scored = add_probability(scored, model.artefact, rules.model_blend)
        timings["model_s"] = round(time.perf_counter() - started, 3)
    elif rules.model_blend is not None:
        log.warning("rule set %s declares a model blend, but no model is used: the rules score stands alone",
                    rules.name)
    started = time.perf_counter()
    panel = panel_at(con, as_of)
    selection = select_cohorts(scored, rules, panel)
    timings["selection_s"] = round(time.perf_counter() - started, 3)
    unknown = unknown_offence_codes(con, as_of, reference)
    ranked = selection.ranked.with_columns(  # in rank order, the ineligible last by person_key
        pl.col("managed").fill_null(False), pl.col("due_for_review").fill_null(False))
    codes = ranked.get_column("ineligible_code")
    ranked = ranked.drop("ineligible_code")
    ordered = [c for c in LEADING_COLUMNS + list(IDENTIFIER_COLUMNS) if c in ranked.columns]
    disagreement = None
    if model is not None:
        from models.predict import add_rank_and_band
        from models.predict import disagreement as disagreement_list

        started = time.perf_counter()
        ranked = add_rank_and_band(ranked)
        disagreement = disagreement_list(ranked, config.model.disagreement_top_percent)
        timings["model_s"] = round(timings["model_s"] + time.perf_counter() - started, 3)
    ordered = [c for c in LEADING_COLUMNS + list(IDENTIFIER_COLUMNS) if c in ranked.columns]
    ranked = ranked.select(ordered + [c for c in ranked.columns if c not in ordered])
    return Scored(ranked, selection.release_watch, selection.stats, unknown, rules, timings, codes,
                  due_for_review(con, as_of),
                  None if model is None else {**model.manifest(),
                                              "disagreement_top_percent": config.model.disagreement_top_percent},
                  disagreement)


def score_period(config: Config, as_of: date, model=None) -> dict:
    """Benchmark entry: compute and select at `as_of` on the current warehouse, store nothing
    (`model`: a loaded advisory model, `models.registry.load`)."""
    con = connect(config, read_only=True)
    try:
        scored = score_at(con, config, as_of, model)
    finally:
        con.close()
    stats = scored.stats
    counts = {"assessed": stats.assessed, "eligible": stats.eligible, "priority": stats.priority,
              "min_score": stats.min_score, "super_prolific": stats.super_prolific,
              "super_prolific_offences_12m": stats.super_prolific_offences_12m, "offences_12m": stats.offences_12m,
              "release_watch": stats.release_watch}
    return {"people": scored.ranked.height, **counts, **scored.timings}


# --- movement ------------------------------------------------------------------------------

COHORTS = {"priority": "priority", "super_prolific": "super_prolific"}
# A leaver's reason when the eligibility code says it all, checked before a change of area;
# any other exclusion reads "no longer eligible: <sentence>".
LEAVING_REASONS = {EligibilityReason.DECEASED: "deceased", EligibilityReason.LONG_CUSTODY: "long custody"}


def movement(current: pl.DataFrame, previous: pl.DataFrame | None, previous_run_id: str | None,
             merged: dict[str, str] | None = None) -> pl.DataFrame:
    """New, continuing and leaving members of each cohort, with a plain reason for leavers.

    `current` is this run's ranked frame with its `ineligible_code` (`Scored.ranked_with_codes`);
    `previous` is the previous run's cohort_members rows. A panel decision is the reason of a
    member who has one ("accepted as Fixed on 2026-11-03 (review 2027-02-03)") and of a person
    the panel's reject keeps out; a leaver's other reason is followed by their decision's note.
    `merged` maps a person key whose records were merged into another person since to that
    person's key (`pipeline.link.persons.merged_into`): such a member continues under the new key
    with the reason "records merged", not as a leaver and a new person.
    """
    if "decision_note" not in current.columns:
        current = current.with_columns(pl.lit(None, dtype=pl.Utf8).alias("decision_note"),
                                       pl.lit(None, dtype=pl.Utf8).alias("decision"),
                                       pl.lit(False).alias("due_for_review"))
    decision_note = pl.col("decision_note")
    rejected = (pl.col("decision") == "reject") & ~pl.col("due_for_review").fill_null(False)
    schema = {"cohort": pl.Utf8, "person_key": pl.Utf8, "status": pl.Utf8, "reason": pl.Utf8,
              "previous_run_id": pl.Utf8}
    previous, merged_reason = _merge_previous(previous, merged or {})
    frames = []
    for cohort, flag in COHORTS.items():
        before = (previous.filter(pl.col("cohort") == cohort).select("person_key", pl.col("area").alias("previous_area"),
                                                                     pl.col("score").alias("previous_score"),
                                                                     "merged_from")
                  if previous is not None else pl.DataFrame(schema={"person_key": pl.Utf8, "previous_area": pl.Utf8,
                                                                     "previous_score": pl.Int64, "merged_from": pl.Utf8}))
        now = current.filter(pl.col(flag)).select("person_key", pl.col("decision_note").alias("reason"))
        new = now.join(before, on="person_key", how="anti").with_columns(pl.lit("new").alias("status"))
        continuing = now.join(before.select("person_key", "merged_from"), on="person_key", how="inner").with_columns(
            pl.lit("continuing").alias("status"), pl.coalesce(merged_reason, pl.col("reason")).alias("reason"))
        leavers = before.join(now, on="person_key", how="anti").join(
            current.select("person_key", "area", "score", "eligible", "ineligible_reason", "ineligible_code",
                           "selection_note", "decision", "decision_note", "due_for_review"),
            on="person_key", how="left",
        )
        reason = pl.when(pl.col("score").is_null()).then(pl.lit("no longer in the data at the as-of date"))
        reason = reason.when(rejected).then(decision_note)
        for code, text in LEAVING_REASONS.items():
            reason = reason.when(pl.col("ineligible_code") == code.value).then(pl.lit(text))
        reason = (
            reason.when(pl.col("area").is_not_null() & (pl.col("area") != pl.col("previous_area")))
            .then(pl.lit("moved out of area (") + pl.col("previous_area") + pl.lit(" to ") + pl.col("area") + pl.lit(")"))
            .when(pl.col("ineligible_reason").is_not_null()).then(pl.lit("no longer eligible: ") + pl.col("ineligible_reason"))
            .when(pl.col("score") < pl.col("previous_score"))
            .then(pl.lit("score fell (") + pl.col("previous_score").cast(pl.Utf8) + pl.lit(" to ")
                  + pl.col("score").cast(pl.Utf8) + pl.lit(")")
                  + pl.when(pl.col("selection_note").is_not_null()).then(pl.lit("; ") + pl.col("selection_note"))
                  .otherwise(pl.lit("")))
            .otherwise(pl.lit("not selected: ") + pl.col("selection_note").fill_null("below the cohort definition"))
        )
        reason = pl.when(decision_note.is_not_null() & ~rejected.fill_null(False)) \
            .then(reason + pl.lit("; ") + decision_note).otherwise(reason)
        leaving = leavers.with_columns(pl.lit("leaving").alias("status"), pl.coalesce(merged_reason, reason).alias("reason"))
        for frame in (new, continuing, leaving):
            frames.append(frame.select(pl.lit(cohort).alias("cohort"), "person_key", "status", "reason",
                                       pl.lit(previous_run_id, dtype=pl.Utf8).alias("previous_run_id")))
    result = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    order = pl.col("status").replace_strict({"new": 0, "continuing": 1, "leaving": 2}, return_dtype=pl.Int8)
    return result.sort(["cohort", order, "person_key"]).select(list(schema))


def _merge_previous(previous: pl.DataFrame | None, merged: dict[str, str]) -> tuple[pl.DataFrame | None, pl.Expr]:
    """The previous members under their keys of today (a merged key mapped to the one now holding
    its records, one row per key and cohort), with `merged_from`, and the reason a merge gives."""
    if previous is None:
        return None, pl.lit(None, dtype=pl.Utf8)
    old = pl.col("person_key")
    previous = previous.with_columns(
        merged_from=pl.when(old.is_in(list(merged))).then(old).otherwise(pl.lit(None, dtype=pl.Utf8)),
        person_key=old.replace(merged) if merged else old,
    ).sort(["cohort", "person_key", pl.col("merged_from").is_not_null(), "score"], descending=[False, False, False, True])
    previous = previous.group_by(["cohort", "person_key"], maintain_order=True).agg(
        pl.col("area").first(), pl.col("score").first(),
        pl.col("merged_from").drop_nulls().sort().str.join(", ").alias("merged_from"))
    previous = previous.with_columns(pl.when(pl.col("merged_from") != "").then(pl.col("merged_from")).alias("merged_from"))
    reason = pl.when(pl.col("merged_from").is_not_null()).then(
        pl.lit("records merged (") + pl.col("merged_from") + pl.lit(" now part of this person)"))
    return previous, reason


def decision_counts(scored: Scored) -> dict[str, int]:
    """The manifest's `counts.decisions`: the panel's decisions the run applied and listed."""
    ranked = scored.ranked
    decided = ranked.filter(pl.col("decision").is_not_null())
    return {
        "managed": int(ranked.get_column("managed").sum()),
        "included": scored.stats.panel_included,
        "excluded": scored.stats.panel_excluded,
        "deferred": int(decided.filter((pl.col("decision") == "defer") & ~pl.col("due_for_review")).height),
        "due_for_review": scored.due_for_review.height if scored.due_for_review is not None else 0,
    }


# --- outputs -----------------------------------------------------------------------------------


def _csv_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV cannot hold lists: join them; floats keep fixed precision so files are byte-stable."""
    return frame.with_columns(
        [pl.col(c).list.join("; ") for c, t in frame.schema.items() if isinstance(t, pl.List)]
        + [pl.col(c).round(4) for c, t in frame.schema.items() if t in (pl.Float32, pl.Float64)]
    )


def write_outputs(target: Path, scored: Scored, moves: pl.DataFrame, manifest: RunManifest, report=None,
                  fairness: pl.DataFrame | None = None) -> None:
    """Write into a temporary sibling folder, then rename: a killed run leaves no half folder.

    Every CSV goes through the one formula-injection rule (`pipeline.safe_cells`); with
    `pseudonymise` on, identifiers are replaced in every file. `report(staging, pseudonymiser)`
    writes the pack and the workbook into the same folder before the rename; `fairness.csv` is
    written before it, since the pack shows it."""
    pseudonymiser = for_config(report.config) if report is not None else None
    hide = pseudonymiser.frame if pseudonymiser is not None else (lambda frame: frame)
    staging = target.parent / f".tmp-{target.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o700)
    ranked = hide(scored.ranked)
    write_safe_csv(_csv_frame(ranked), staging / "scores.csv")
    ranked.write_parquet(staging / "scores.parquet", statistics=False)
    cohort = ranked.filter(pl.col("priority") | pl.col("super_prolific"))
    write_safe_csv(_csv_frame(cohort), staging / "cohort.csv")
    write_safe_csv(hide(moves), staging / "movement.csv")
    write_safe_csv(_csv_frame(hide(scored.release_watch)), staging / "release_watch.csv")
    write_safe_csv(scored.unknown_codes, staging / "unknown_offence_codes.csv")
    if scored.due_for_review is not None:
        due = due_csv_frame(scored.due_for_review)
        if pseudonymiser is not None:  # free text the panel wrote may name people
            due = due.drop("reason", "decided_by")
        write_safe_csv(_csv_frame(hide(due)), staging / DUE_FOR_REVIEW)
    if fairness is not None:
        write_safe_csv(_csv_frame(fairness), staging / "fairness.csv")
    if scored.disagreement is not None:
        write_safe_csv(_csv_frame(hide(scored.disagreement)), staging / "disagreement.csv")
    (staging / "manifest.json").write_text(manifest.to_json(indent=2) + "\n")
    if report is not None:
        report(staging, pseudonymiser)
    for path in staging.iterdir():
        path.chmod(0o600)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def due_csv_frame(due: pl.DataFrame) -> pl.DataFrame:
    """`due_for_review.csv`: one row per person whose decision in force is due for review."""
    return due.select("person_key", "surname", "forenames", "area", "police_person_id", "pnc_id", "crn", "nomis_id",
                      "decision", "cohort_type", "meeting_date", "review_date", "decided_by", "reason", "note")


@dataclass
class _PackHook:
    """Writes pack.html and pack.xlsx into the staging folder from the run's own transaction."""

    con: duckdb.DuckDBPyConnection
    run_id: str
    config: Config

    def __call__(self, staging: Path, pseudonymiser) -> None:
        build_report(self.con, self.run_id, staging, self.config, pseudonymiser)


def _clean_stale_staging(outputs: Path) -> None:
    if outputs.exists():
        for stale in outputs.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)


# --- the run -------------------------------------------------------------------------------------


def _threshold_breaches(report: IngestReport, limit: float | None) -> list[str]:
    if limit is None:
        return []
    breaches = []
    for load in report.loads:
        if load.status == "loaded" and load.rows_read:
            share = 100.0 * load.rows_rejected / load.rows_read
            if share > limit:
                breaches.append(f"{load.source} ({load.file_name}): {share:.1f}% rejected, limit {limit:g}%")
    return breaches


def run_period(config: Config, as_of: date | None = None, force: bool = False, progress=None,
               model: str | None = None) -> RunResult:
    """One run, holding the workspace lock (a no-op when the caller, such as the CLI, holds it).
    `model`: a registered model's alias or version to score with beside the rules (default
    `[model] use`; none: no model)."""
    as_of = as_of or period_as_of(config)
    with workspace_lock(config.warehouse_path, "run"):
        return _run_locked(config, as_of, force, progress, model or config.model.use)


def _run_locked(config: Config, as_of: date, force: bool, progress, model_ref: str | None = None) -> RunResult:
    started_at = datetime.now(UTC).replace(tzinfo=None)
    timings: dict[str, float] = {}
    for_config(config)  # a pseudonymised run without its key fails here, before any work
    con = connect(config)
    try:
        done = run_sql(
            con, "run: completed period",
            "SELECT run_id, output_dir FROM runs WHERE as_of = ? AND status = 'completed' ORDER BY seq DESC LIMIT 1",
            [as_of],
        ).fetchall()
        if done and not force:
            return RunResult(done[0][0], as_of, "skipped", Path(done[0][1]) if done[0][1] else None,
                             message=f"period {as_of} already completed as run {done[0][0]}; use --force to run it again")
    finally:
        con.close()

    loaded = None
    if model_ref:  # before any work: an unknown alias or a refused artefact stops the run here
        from models.registry import load

        step = time.perf_counter()
        loaded = load(config, model_ref)
        timings["model_load_s"] = round(time.perf_counter() - step, 3)

    step = time.perf_counter()
    report = ingest_workspace(config, progress)
    timings["ingest_and_link_s"] = round(time.perf_counter() - step, 3)
    breaches = _threshold_breaches(report, config.workspace.max_rejected_percent)

    con = connect(config)
    try:
        seq = run_sql(con, "run: next seq", "SELECT coalesce(max(seq), 0) + 1 FROM runs").fetchall()[0][0]
        run_id = f"R{seq:04d}-{as_of.isoformat()}"
        inputs = [
            RunInput(*row)
            for row in run_sql(
                con, "run: inputs",
                "SELECT source, file_name, sha256, rows_read, rows_loaded, rows_rejected FROM loads ORDER BY load_seq",
            ).fetchall()
        ]
        manifest = RunManifest(
            run_id=run_id, as_of=as_of, started_at=started_at, code_version=code_version(), user=getpass.getuser(),
            host=socket.gethostname(), python=platform.python_version(), inputs=inputs, forced=force,
            counts=RunCounts(ingest=report.reconciliation, link=report.link.per_source, people=report.link.people),
            relinked=report.relinked,
        )
        if breaches:
            manifest.status, manifest.failure = "failed", "validation threshold exceeded: " + "; ".join(breaches)
            with transaction(con):
                run_sql(
                    con, "run: record failed run",
                    "INSERT INTO runs (run_id, seq, as_of, status, started_at, finished_at, code_version, manifest) "
                    "VALUES (?, ?, ?, 'failed', ?, ?, ?, ?)",
                    [run_id, seq, as_of, started_at, datetime.now(UTC).replace(tzinfo=None), manifest.code_version,
                     manifest.to_json(sort_keys=False)],
                )
            raise ValidationThresholdError(
                "rejected rows above max_rejected_percent: " + "; ".join(breaches),
                hint="see `iom rejects` for each failure, fix the extract, or raise the threshold in iom.toml",
            )

        step = time.perf_counter()
        scored = score_at(con, config, as_of, loaded)
        timings.update(scored.timings)
        timings["score_and_select_s"] = round(time.perf_counter() - step, 3)
        previous = run_sql(
            con, "run: previous run",
            "SELECT run_id FROM runs WHERE status = 'completed' AND as_of < ? ORDER BY as_of DESC, seq DESC LIMIT 1",
            [as_of],
        ).fetchall()
        previous_id = previous[0][0] if previous else None
        previous_members = (
            run_sql(con, "run: previous cohort", "SELECT cohort, person_key, area, score FROM cohort_members WHERE run_id = ?",
                    [previous_id]).pl()
            if previous_id else None
        )
        moves = movement(scored.ranked_with_codes(), previous_members, previous_id, merged_into(con))
        # monitoring only: nothing above reads it (imported here: fairlearn loads scikit-learn,
        # which `iom explain` and `iom runs` need not wait for)
        from evaluation.fairness import fairness_summary, run_fairness_at

        fairness = run_fairness_at(con, scored.ranked)
        stats = scored.stats
        output_dir = config.outputs_path / run_id
        manifest.status = "completed"
        manifest.rules = RulesUsed(scored.rules.name, scored.rules.version, scored.rules.sha256)
        manifest.model = scored.model
        manifest.previous_run_id, manifest.output_dir = previous_id, output_dir
        manifest.counts.assessed = scored.ranked.height
        manifest.counts.stats = stats.to_dict()
        manifest.counts.movement = {
            f"{c}_{s}": n for c, s, n in moves.group_by(["cohort", "status"]).len().sort(["cohort", "status"]).iter_rows()
        }
        manifest.counts.release_watch = scored.release_watch.height
        manifest.counts.decisions = decision_counts(scored)
        manifest.counts.unknown_offence_codes = int(scored.unknown_codes.height)
        if scored.disagreement is not None:
            manifest.counts.disagreement = {
                kind: n for kind, n in scored.disagreement.group_by("kind").len().sort("kind").iter_rows()}
        manifest.fairness = fairness_summary(fairness)
        step = time.perf_counter()
        with transaction(con):
            table = q(scores_table(seq))
            con.register("ranked_frame", scored.ranked.to_arrow())
            run_sql(con, "run: store scores", f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM ranked_frame")
            con.unregister("ranked_frame")
            members = pl.concat([
                scored.ranked.filter(pl.col(flag)).select(
                    pl.lit(cohort).alias("cohort"), "person_key", "area", "rank",
                    pl.col("score").cast(pl.Int64), "cohort_type")
                for cohort, flag in COHORTS.items()
            ])
            con.register("members_frame", members.to_arrow())
            run_sql(con, "run: store cohort members",
                    "INSERT INTO cohort_members SELECT ?, cohort, person_key, area, rank, score, cohort_type "
                    "FROM members_frame", [run_id])
            con.unregister("members_frame")
            con.register("moves_frame", moves.to_arrow())
            run_sql(con, "run: store movement",
                    "INSERT INTO movement SELECT ?, cohort, person_key, status, reason, previous_run_id FROM moves_frame",
                    [run_id])
            con.unregister("moves_frame")
            store_run_extras(con, run_id, scored.release_watch, scored.unknown_codes, fairness)
            timings["store_s"] = round(time.perf_counter() - step, 3)
            manifest.timings = timings
            manifest.finished_at = datetime.now(UTC).replace(tzinfo=None)
            manifest.report = {"pack": PACK, "workbook": WORKBOOK, "pseudonymised": config.workspace.pseudonymise}
            # The run's row first: the pack is built from the warehouse (this transaction) alone.
            run_sql(
                con, "run: record completed run",
                "INSERT INTO runs (run_id, seq, as_of, status, started_at, finished_at, rules_name, rules_version, "
                "rules_sha256, code_version, output_dir, manifest) VALUES (?, ?, ?, 'completed', ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, seq, as_of, started_at, datetime.now(UTC).replace(tzinfo=None), scored.rules.name,
                 scored.rules.version, scored.rules.sha256, manifest.code_version, str(output_dir),
                 manifest.to_json()],
            )
            _clean_stale_staging(config.outputs_path)
            write_outputs(output_dir, scored, moves, manifest, _PackHook(con, run_id, config), fairness)
    finally:
        con.close()
    log.info("run %s completed: %d assessed", run_id, scored.ranked.height)
    return RunResult(run_id, as_of, "completed", output_dir, manifest.counts.to_dict(), timings, stats=stats,
                     model=scored.model)
