"""The panel's round trip from the analyst's chair: a run's workbook exported, its decisions sheet
filled in (openpyxl, as Excel would save it), `iom decisions import`, the next month's `iom run`,
and the decisions visible in that run's cohort, movement, scores, due-for-review list, pack and
workbook."""

from __future__ import annotations

import json
from datetime import datetime
from html import unescape
from pathlib import Path

import openpyxl
import packkit
import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app

pytestmark = pytest.mark.slow  # a generated workspace, runs, a workbook filled and imported

runner = CliRunner()
MEETING, REVIEW, NEXT_MEETING = datetime(2026, 11, 3), datetime(2027, 2, 3), datetime(2026, 12, 1)
HOSTILE_REASON = '=HYPERLINK("http://example.invalid","<b>click</b>")'


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return packkit.build(tmp_path_factory.mktemp("roundtrip"))


def _fill(sheet, row: int, column: dict[str, int], decision: str, cohort_type: str | None,
          review: datetime = REVIEW) -> None:
    for name, value in (("decision", decision), ("cohort_type", cohort_type), ("reason", "agreed by the panel"),
                        ("decided_by", "Chair, IOM panel"), ("meeting_date", MEETING), ("review_date", review)):
        sheet.cell(row, column[name], value)


def card(page: str, key: str) -> str:
    start = page.index(f'<article class="card" id="card-{key}"')
    return unescape(page[start:page.index("</article>", start)])


def test_decisions_made_on_a_workbook_shape_the_next_months_run(world):
    config = str(world / "iom.toml")
    november = packkit.latest_output(world)
    assert november.name == "R0002-2026-11-01"
    scores = pl.read_csv(november / "scores.csv", infer_schema_length=0)
    book = openpyxl.load_workbook(november / "pack.xlsx")
    sheet = book["decisions"]
    column = {cell.value: cell.column for cell in sheet[1]}
    proposed = [sheet.cell(r, column["person_key"]).value for r in range(2, sheet.max_row + 1)]
    assert len(proposed) >= 3
    rejected, free, deferred = proposed[:3]
    _fill(sheet, 2, column, "reject", None)
    _fill(sheet, 3, column, "accept", "Free")
    _fill(sheet, 4, column, "defer", None, review=NEXT_MEETING)
    hostile = sheet.cell(4, column["reason"], HOSTILE_REASON)  # the panel's free text is data too
    hostile.data_type = "s"  # typed as text, as Excel keeps a cell formatted as text
    # the panel adds someone the rules did not propose: eligible, scored, not in either cohort
    outside = scores.filter((pl.col("eligible") == "true") & (pl.col("priority") == "false")
                            & (pl.col("super_prolific") == "false") & (pl.col("score").cast(pl.Int64) > 0))
    added = outside["person_key"][0]
    new_row = sheet.max_row + 1
    sheet.cell(new_row, column["person_key"], added)
    _fill(sheet, new_row, column, "accept", "Flex")
    filled = world / "pack-completed.xlsx"
    book.save(filled)

    result = runner.invoke(app, ["decisions", "import", str(filled), "--config", config])
    assert result.exit_code == 0, result.output
    assert "Imported 4 decisions" in result.output and "(run R0002-2026-11-01)" in result.output
    again = runner.invoke(app, ["decisions", "import", str(filled), "--config", config])
    assert "already imported" in again.output

    result = runner.invoke(app, ["run", "--as-of", "2026-12-01", "--config", config, "--quiet"])
    assert result.exit_code == 0, result.output
    december = packkit.latest_output(world)
    assert december.name == "R0003-2026-12-01" and str(december / "due_for_review.csv") in result.output

    cohort = pl.read_csv(december / "cohort.csv", infer_schema_length=0)
    rows = {r["person_key"]: r for r in cohort.to_dicts()}
    assert rejected not in rows  # left out until review, even though the rules rank them first
    assert rows[added]["priority"] == "true" and rows[added]["cohort_type"] == "Flex"
    assert rows[added]["selection_note"] == "accepted as Flex on 2026-11-03 (review 2027-02-03)"
    assert rows[free]["cohort_type"] == "Free" and rows[free]["managed"] == "true"
    scored = pl.read_csv(december / "scores.csv", infer_schema_length=0)
    managed = set(scored.filter(pl.col("managed") == "true")["person_key"])
    assert managed == {free, added}
    assert scored.filter(pl.col("person_key") == rejected)["decision"].to_list() == ["reject"]

    moves = pl.read_csv(december / "movement.csv", infer_schema_length=0).filter(pl.col("cohort") == "priority")
    reason = {(r["person_key"], r["status"]): r["reason"] for r in moves.to_dicts()}
    assert reason[(added, "new")] == "accepted as Flex on 2026-11-03 (review 2027-02-03)"
    assert reason[(rejected, "leaving")] == "rejected on 2026-11-03 (review 2027-02-03)"
    assert reason[(free, "continuing")] == "accepted as Free on 2026-11-03 (review 2027-02-03)"

    due = pl.read_csv(december / "due_for_review.csv", infer_schema_length=0)
    assert due["person_key"].to_list() == [deferred] and due["review_date"].to_list() == ["2026-12-01"]
    manifest = json.loads((december / "manifest.json").read_text())
    assert manifest["counts"]["decisions"] == {"managed": 2, "included": 2, "excluded": 1, "deferred": 0,
                                               "due_for_review": 1}

    page = (december / "pack.html").read_text(encoding="utf-8")
    assert "Latest decision: accepted as Flex on 2026-11-03 (review 2027-02-03)" in card(page, added)
    assert "2026-11-03: accept as Flex, review 2027-02-03, by Chair, IOM panel: agreed by the panel" in card(page, added)
    due_section = page[page.index('id="due-for-review"'):page.index('id="release-watch"')]
    assert deferred in due_section and "Due for review (1)" in due_section
    assert "&lt;b&gt;click&lt;/b&gt;" in due_section and "<b>click" not in due_section  # escaped text
    assert due["reason"].to_list() == ["'" + HOSTILE_REASON]  # the safe-cell rule, as in every CSV
    assert f'id="card-{rejected}"' not in page

    explained = runner.invoke(app, ["explain", added, "--config", config])
    assert "panel decision: accepted as Flex on 2026-11-03 (review 2027-02-03) (managed)" in explained.output

    workbook = openpyxl.load_workbook(december / "pack.xlsx")
    due_sheet = workbook["due for review"]
    assert [c.value for c in due_sheet["A"]][1:] == [deferred]
    reason_cell = next(c for c in due_sheet[2] if isinstance(c.value, str) and "HYPERLINK" in c.value)
    assert reason_cell.data_type != "f" and reason_cell.value == "'" + HOSTILE_REASON
    prefilled = [c.value for c in workbook["decisions"]["A"]][1:]
    assert deferred in prefilled and added in prefilled  # to decide again; the accepted one is proposed


def test_a_pseudonymised_workbook_comes_back_through_the_analysts_lookup(world, tmp_path, monkeypatch):
    ws = packkit.copy(world, tmp_path / "ws")
    config = str(ws / "iom.toml")
    monkeypatch.setenv("IOM_PSEUDONYM_KEY", "a long random key")
    sent = tmp_path / "sent"
    result = runner.invoke(app, ["report", "--run", "R0002-2026-11-01", "--pseudonymise", "--out", str(sent),
                                 "--config", config])
    assert result.exit_code == 0, result.output
    book = openpyxl.load_workbook(sent / "pack.xlsx")
    sheet = book["decisions"]
    column = {cell.value: cell.column for cell in sheet[1]}
    assert sheet.cell(2, column["person_key"]).value.startswith("K-")
    _fill(sheet, 2, column, "accept", "Fixed")
    book.save(tmp_path / "returned.xlsx")
    real_first = pl.read_csv(ws / "outputs" / "R0002-2026-11-01" / "cohort.csv", infer_schema_length=0)["person_key"][0]

    lookup = ws / "outputs" / "pseudonyms" / "R0002-2026-11-01.csv"
    kept = lookup.read_bytes()
    lookup.unlink()
    result = runner.invoke(app, ["decisions", "import", str(tmp_path / "returned.xlsx"), "--config", config])
    assert result.exit_code == 4 and "pseudonym lookup" in " ".join(result.output.split())
    lookup.write_bytes(kept)
    result = runner.invoke(app, ["decisions", "import", str(tmp_path / "returned.xlsx"), "--config", config])
    assert result.exit_code == 0, result.output
    import duckdb

    con = duckdb.connect(str(ws / "warehouse.duckdb"), read_only=True)
    try:
        stored = con.execute("SELECT person_key, decision, cohort_type FROM decisions d JOIN decision_imports i "
                             "USING (import_id) WHERE i.file_name = 'returned.xlsx'").fetchall()
    finally:
        con.close()
    assert stored == [(real_first, "accept", "Fixed")]
    # the next run applies it, and a pseudonymised pack of that run shows the decision, not who it is
    result = runner.invoke(app, ["run", "--as-of", "2027-01-01", "--config", config, "--quiet"])
    assert result.exit_code == 0, result.output
    again = tmp_path / "sent-january"
    result = runner.invoke(app, ["report", "--pseudonymise", "--out", str(again), "--config", config])
    assert result.exit_code == 0, result.output
    page = (again / "pack.html").read_text(encoding="utf-8")
    assert "Latest decision: accepted as Fixed on 2026-11-03 (review 2027-02-03)" in page
    assert real_first not in page and "agreed by the panel" not in page  # no key, no free text
