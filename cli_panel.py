"""The `iom links` and `iom decisions` command groups (registered on the app in `cli.py`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from cli_base import ConfigOption, WaitOption, call, locked_call, parse_date
from cli_show import out, show_link, table

links_app = typer.Typer(help="Probabilistic identity linking: the review queue, decisions, evaluation, the model.",
                        no_args_is_help=True)


@links_app.command("review")
def links_review(
    config: ConfigOption = Path("iom.toml"),
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the whole queue to this CSV file, to decide in.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many pairs to show.")] = 20,
    wait: WaitOption = 0.0,
) -> None:
    """The clerical review queue: pairs between the thresholds, side by side, with the weight of each field."""
    from pipeline.config import load_config
    from pipeline.link.review import review_queue, write_queue

    cfg = call(lambda: load_config(config))
    queue = locked_call(cfg, "links review", lambda: review_queue(cfg), shared=True, wait=wait)
    rows = [[r["record_id_l"], f"{r['forenames_l'] or ''} {r['surname_l'] or ''} {r['date_of_birth_l'] or ''}",
             r["record_id_r"], f"{r['forenames_r'] or ''} {r['surname_r'] or ''} {r['date_of_birth_r'] or ''}",
             f"{r['match_probability']:.3f}", r["suggested"]] for r in queue.head(limit).iter_rows(named=True)]
    out.print(table(f"Review queue: {queue.height:,} pairs", ["record", "as held", "record", "as held",
                                                               "probability", "suggested"], rows))
    if out_file is not None:
        written = call(lambda: write_queue(queue, out_file))
        out.print(f"Written to {written}: fill `decision` with match or no_match, then `iom links decide {written}`")


@links_app.command("decide")
def links_decide(
    file: Annotated[Path, typer.Argument(help="A review file with decision filled (match / no_match) per pair.")],
    config: ConfigOption = Path("iom.toml"),
    wait: WaitOption = 0.0,
) -> None:
    """Import reviewers' decisions (match / no_match) with an audit trail, and relink."""
    from pipeline.config import load_config
    from pipeline.link.review import import_decisions

    cfg = call(lambda: load_config(config))
    result = locked_call(cfg, "links decide", lambda: import_decisions(cfg, file), wait=wait)
    if result.already_imported:
        out.print(f"{result.file} (sha256 {result.sha256[:12]}) was imported before: nothing changed")
        return
    out.print(f"Recorded {result.recorded:,} decisions from {result.file}: {result.matches:,} match, "
              f"{result.no_matches:,} no match; {result.blank:,} rows without a decision skipped")
    if result.link is not None:
        show_link(result.link)


@links_app.command("evaluate")
def links_evaluate(
    config: ConfigOption = Path("iom.toml"),
    truth: Annotated[Path | None, typer.Option("--truth", help="Truth file; default truth/identities.parquet beside iom.toml.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """Precision and recall of the links against the synthetic world's truth file."""
    from pipeline.config import load_config
    from pipeline.link.evaluate import evaluate

    cfg = call(lambda: load_config(config))
    e = locked_call(cfg, "links evaluate", lambda: evaluate(cfg, truth), shared=True, wait=wait)
    out.print(table(f"Links against {e.truth_file}", ["measure", "value"], [
        ["records scored", e.records], ["precision", f"{e.precision:.4f}"], ["recall", f"{e.recall:.4f}"],
        ["true pairs", e.true_pairs], ["linked pairs", e.predicted_pairs], ["false pairs", e.false_pairs],
        ["missed pairs", e.missed_pairs], ["  of which across two PNC ids (never merged)", e.missed_two_pnc_ids],
        ["probabilistic pairs linked", e.probabilistic_pairs_linked],
        ["  of which correct", e.probabilistic_pairs_correct],
        ["review queue pairs", e.queue_pairs], ["  of which true matches", e.queue_true_matches]]))


@links_app.command("estimate")
def links_estimate(config: ConfigOption = Path("iom.toml"), wait: WaitOption = 0.0) -> None:
    """Estimate the linkage model again (u by sampling, m from PNC-linked pairs) and relink."""
    from pipeline.config import load_config
    from pipeline.workspace import relink_workspace

    cfg = call(lambda: load_config(config))
    summary = locked_call(cfg, "links estimate", lambda: relink_workspace(cfg, reestimate=True), wait=wait)
    show_link(summary)


decisions_app = typer.Typer(
    help="The panel's decisions: import the completed workbook (or a CSV), list them.", no_args_is_help=True)


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

    cfg = call(lambda: load_config(config))
    r = locked_call(cfg, "decisions import", load, wait=wait)
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

    cfg = call(lambda: load_config(config))
    when = call(lambda: parse_date(as_of, "--as-of")) if as_of else date.today()
    frame = locked_call(cfg, "decisions list", read, shared=True, wait=wait)
    title = f"{'Due for review' if due else 'Decisions in force'} at {when}: {frame.height:,} people"
    rows = [[r["person_key"], f"{r.get('forenames') or ''} {r.get('surname') or ''}".strip(), r.get("area"),
             r["decision"], r["cohort_type"], r["meeting_date"], r["review_date"], r["management_end"], r["status"],
             r["decided_by"], r["import_id"], r["earlier"]] for r in frame.iter_rows(named=True)]
    out.print(table(title, ["person", "name", "area", "decision", "type", "meeting", "review", "management ended",
                             "status", "decided by", "import", "earlier decisions"], rows))
