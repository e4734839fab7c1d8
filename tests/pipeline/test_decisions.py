"""`iom decisions import` and `iom decisions list`: every row checked, every problem named by
sheet, row and column, all or nothing, an audit trail, re-import a no-op, later decisions
superseding earlier ones person by person, and the synthetic world's past decisions as they are."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import openpyxl
import pytest
from builders import example_row, write_workspace
from typer.testing import CliRunner

from cli import app
from pipeline.identifiers import pnc_check_letter
from pipeline.run import run_period
from pipeline.workspace import ingest_workspace

runner = CliRunner()
WORKBOOK_COLUMNS = ["person_key", "police_person_id", "pnc_id", "crn", "nomis_id", "name", "area", "rank", "score",
                    "proposed_cohort_type", "decision", "cohort_type", "reason", "decided_by", "meeting_date",
                    "review_date", "management_end"]


def pnc_long(year: int, serial: int) -> str:
    return f"20{year:02d}/{serial:07d}{pnc_check_letter(year, serial)}"


def pnc_short(year: int, serial: int) -> str:  # the same id as police often key it
    return f"{year:02d}/{serial}{pnc_check_letter(year, serial)}"


PEOPLE = {  # police id -> (PNC year, serial)
    "N0000001": (12, 111), "N0000002": (13, 2222), "N0000003": (14, 33333), "N0000004": (15, 444444),
    "N0000009": (16, 999),  # known to the police, no offence: never assessed
}


def _tiny_workspace(tmp_path: Path):
    nominals = [example_row("police_nominals", police_person_id=pid, pnc_id=pnc_long(*p), surname=f"Name{pid[-1]}",
                            forenames="Alex", date_of_birth=f"19{80 + i}-01-0{i + 1}")
                for i, (pid, p) in enumerate(PEOPLE.items())]
    offences = [example_row("police_offences", offence_id=f"CR{i:010d}", police_person_id=pid,
                            offence_date=f"2026-0{1 + i % 9}-0{1 + i % 7}")
                for i, pid in enumerate(list(PEOPLE)[:4] * 3)]
    case = example_row("probation_cases", crn="X000001", pnc_id=pnc_long(*PEOPLE["N0000001"]), nomis_id="",
                       surname="Name1", forenames="Alex", date_of_birth="1980-01-01")
    config = write_workspace(tmp_path, {"police_nominals": nominals, "police_offences": offences,
                                       "probation_cases": [case]})
    ingest_workspace(config)
    return config


@pytest.fixture
def ws(tmp_path):
    return _tiny_workspace(tmp_path)


def keys_of(config) -> dict[str, str]:
    con = duckdb.connect(str(config.warehouse_path), read_only=True)
    try:
        return dict(con.execute("SELECT police_person_id, person_key FROM people").fetchall())
    finally:
        con.close()


def table(config, sql: str) -> list[tuple]:
    con = duckdb.connect(str(config.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def write_rows(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or ["person_key", "police_person_id", "pnc_id", "crn", "decision", "cohort_type", "reason",
                          "decided_by", "meeting_date", "review_date", "management_end"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def decision(**values) -> dict:
    return {"decided_by": "Chair, Northgate panel", "meeting_date": "2026-11-03", "review_date": "2027-02-03",
            "reason": "agreed", **values}


def imported(config, path: Path, *extra: str):
    return runner.invoke(app, ["decisions", "import", str(path), "--config", str(config.path), *extra])


def test_a_csv_is_imported_by_any_identifier_with_its_audit_trail(ws, tmp_path):
    keys = keys_of(ws)
    path = write_rows(tmp_path / "decisions.csv", [
        decision(person_key=keys["N0000001"].lower(), decision="accept", cohort_type="fixed"),
        decision(police_person_id="N0000002", decision="Reject"),
        decision(pnc_id=pnc_short(*PEOPLE["N0000003"]), decision="defer", review_date="01/12/2026"),
        decision(crn="X000001", decision="accept", cohort_type="Free", meeting_date="2026-10-06",
                 management_end="2026-10-30"),
        {},  # a blank row is no decision
    ])
    result = imported(ws, path)
    assert result.exit_code == 0, result.output
    assert "Imported 4 decisions" in result.output and "accept 2, defer 1, reject 1" in result.output
    (import_id, name, sha, fmt, user, rows, stored, blank), = table(
        ws, "SELECT import_id, file_name, sha256, file_format, imported_by, rows_read, decisions, blank_rows "
            "FROM decision_imports")
    assert (name, fmt, rows, stored) == ("decisions.csv", "csv", 4, 4) and user
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest() and sha in result.output
    got = {r[0]: r[1:] for r in table(ws, "SELECT row_number, person_key, named_by, decision, cohort_type, "
                                          "meeting_date, review_date, management_end, raw FROM decisions")}
    assert sorted(got) == [2, 3, 4, 5]  # the file's rows: the header is row 1
    assert got[2][:4] == (keys["N0000001"], "person_key", "accept", "Fixed")
    assert got[3][:4] == (keys["N0000002"], "police_person_id", "reject", None)
    assert got[4][:3] == (keys["N0000003"], "pnc_id", "defer") and got[4][5] == date(2026, 12, 1)
    # CRN X000001 is the probation case with N0000001's PNC id: the same person
    assert got[5][:4] == (keys["N0000001"], "crn", "accept", "Free") and got[5][6] == date(2026, 10, 30)
    assert json.loads(got[3][7])["police_person_id"] == "N0000002"  # the row as read


def test_every_problem_is_named_by_row_and_column_and_nothing_is_stored(ws, tmp_path):
    path = write_rows(tmp_path / "bad.csv", [
        decision(police_person_id="N0000001", decision="approve"),  # row 2
        decision(police_person_id="N0000002", decision="accept"),  # row 3: no cohort type
        decision(police_person_id="N0000003", decision="reject", cohort_type="Flex"),  # row 4
        decision(police_person_id="N0000004", decision="defer", review_date="2026-10-01"),  # row 5
        decision(police_person_id="N0000001", decision="defer", meeting_date="3rd Nov"),  # row 6
        decision(police_person_id="N7777777", decision="defer"),  # row 7: nobody
        decision(decision="defer"),  # row 8: no identifier
        decision(police_person_id="N0000002", decision="defer", reason="x" * 501),  # row 9
        {"police_person_id": "N0000003", "cohort_type": "Fixed"},  # row 10: no decision, but a type
        decision(police_person_id="N0000004", decision="reject", management_end="2026-12-01"),  # row 11
    ])
    result = imported(ws, path)
    assert result.exit_code == 4, result.output
    out = " ".join(result.output.split())
    for expected in (
        "bad.csv: ", "nothing was imported",
        "row 2, decision: 'approve' is not a decision; allowed: accept, reject, defer",
        "row 3, cohort_type: required for accept; allowed: Fixed, Flex, Free",
        "row 4, cohort_type: only for accept",
        "row 5, review_date: before the meeting date (2026-11-03)",
        "row 6, meeting_date: not a date; use yyyy-mm-dd",
        "row 7, police_person_id: no person with this police person id in the warehouse",
        "row 8: the row names no person",
        "row 9, reason: longer than 500 characters",
        "row 10, decision: empty, but cohort_type filled",
        "row 11, management_end: only for accept",
    ):
        assert expected in out, (expected, result.output)
    assert "N7777777" not in result.output  # identifiers are not echoed (personal data)
    assert table(ws, "SELECT count(*) FROM decision_imports") == [(0,)]
    assert table(ws, "SELECT count(*) FROM decisions") == [(0,)]


def test_the_same_file_again_is_a_no_op_and_a_later_file_supersedes_person_by_person(ws, tmp_path):
    keys = keys_of(ws)
    first = write_rows(tmp_path / "october.csv", [
        decision(police_person_id="N0000001", decision="accept", cohort_type="Flex", meeting_date="2026-10-06"),
        decision(police_person_id="N0000002", decision="reject", meeting_date="2026-10-06"),
    ])
    assert imported(ws, first).exit_code == 0
    again = imported(ws, first)
    assert again.exit_code == 0 and "already imported as D0001" in again.output and "nothing changed" in again.output
    copy = tmp_path / "copy.csv"
    copy.write_bytes(first.read_bytes())
    assert "already imported" in imported(ws, copy).output  # the same bytes under another name
    later = write_rows(tmp_path / "november.csv", [decision(police_person_id="N0000001", decision="reject")])
    result = imported(ws, later)
    assert result.exit_code == 0 and "earlier decision" in result.output and "superseded" in result.output
    assert table(ws, "SELECT count(*) FROM decisions") == [(3,)]  # history kept
    assert table(ws, "SELECT count(*) FROM decision_imports") == [(2,)]

    def listed(as_of: str) -> dict[str, str]:
        out = runner.invoke(app, ["decisions", "list", "--as-of", as_of, "--config", str(ws.path)]).output
        return {key: line for line in out.splitlines() for key in keys.values() if key in line}

    november = listed("2026-11-10")
    assert "reject" in november[keys["N0000001"]] and "D0002" in november[keys["N0000001"]]
    assert "reject" in november[keys["N0000002"]] and "D0001" in november[keys["N0000002"]]  # untouched
    october = listed("2026-10-20")  # before the later meeting, the earlier decision was in force
    assert "accept" in october[keys["N0000001"]]
    assert listed("2026-10-01") == {}  # before any meeting


def test_the_synthetic_past_decisions_file_is_imported_as_it_is_before_any_run(ws, tmp_path):
    # docs/synthetic-data.md: person_id + id_type (police id, or the PNC id as the police hold it)
    columns = ["person_id", "id_type", "decision", "cohort_type", "reason", "decided_by", "meeting_date",
               "review_date", "management_end"]
    past = write_rows(tmp_path / "past_decisions.csv", [
        {"person_id": "N0000001", "id_type": "police_person_id", "decision": "accept", "cohort_type": "Fixed",
         "reason": "9 offences recorded in the previous 12 months", "decided_by": "IOM panel, Northgate",
         "meeting_date": "2024-01-01", "review_date": "2024-04-01", "management_end": "2024-09-12"},
        {"person_id": pnc_short(*PEOPLE["N0000002"]), "id_type": "pnc_id", "decision": "accept", "cohort_type": "Flex",
         "reason": "4 offences", "decided_by": "IOM panel, Northgate", "meeting_date": "2026-09-01",
         "review_date": "2026-12-01", "management_end": ""},
        {"person_id": "N0000003", "id_type": "police_person_id", "decision": "defer", "cohort_type": "",
         "reason": "awaiting information from probation", "decided_by": "IOM panel, Northgate",
         "meeting_date": "2026-09-01", "review_date": "2026-10-01", "management_end": ""},
    ], columns)
    assert table(ws, "SELECT count(*) FROM runs") == [(0,)]
    result = imported(ws, past)
    assert result.exit_code == 0, result.output
    assert table(ws, "SELECT management_end FROM decisions WHERE decision = 'accept' ORDER BY meeting_date") == [
        (date(2024, 9, 12),), (None,)]
    out = runner.invoke(app, ["decisions", "list", "--as-of", "2026-11-01", "--config", str(ws.path)]).output
    keys = keys_of(ws)
    lines = {pid: next(line for line in out.splitlines() if keys[pid] in line) for pid in ("N0000001", "N0000002",
                                                                                        "N0000003")}
    assert "management ended" in lines["N0000001"]
    assert "in force" in lines["N0000002"]
    assert "due for review" in lines["N0000003"]
    due = runner.invoke(app, ["decisions", "list", "--due-for-review", "--as-of", "2026-11-01",
                              "--config", str(ws.path)]).output
    assert "1 people" in due and keys["N0000003"] in due and keys["N0000002"] not in due


def _workbook(path: Path, run_id: str | None, rows: list[dict], sheet: str = "decisions") -> Path:
    book = openpyxl.Workbook()
    decisions = book.active
    decisions.title = sheet
    decisions.append(WORKBOOK_COLUMNS)
    for row in rows:
        decisions.append([row.get(c) for c in WORKBOOK_COLUMNS])
    if run_id:
        about = book.create_sheet("about")
        about.append(["run", run_id])
        about.append(["pseudonymised", "no"])
    book.save(path)
    return path


def test_a_workbook_names_its_run_whose_people_and_dates_are_checked(ws, tmp_path):
    run_period(ws, date(2026, 11, 1))
    meeting, review = datetime(2026, 11, 3), datetime(2027, 2, 3)
    bad = _workbook(tmp_path / "pack.xlsx", "R0001-2026-11-01", [
        {"police_person_id": "N0000001", "decision": "accept", "cohort_type": "Fixed", "decided_by": "Chair",
         "meeting_date": meeting, "review_date": review},
        {"police_person_id": "N0000009", "decision": "reject", "decided_by": "Chair", "meeting_date": meeting,
         "review_date": review},  # known to the police, not assessed in the run
        {"police_person_id": "N0000002", "decision": "defer", "decided_by": "Chair",
         "meeting_date": datetime(2026, 10, 20), "review_date": review},  # before the run's as-of date
    ])
    result = imported(ws, bad)
    assert result.exit_code == 4, result.output
    out = " ".join(result.output.split())
    assert "pack.xlsx, sheet decisions: 2 problems" in out
    assert "row 3: the person was not assessed in run R0001-2026-11-01" in out
    assert "row 4, meeting_date: before the as-of date of run R0001-2026-11-01 (2026-11-01)" in out
    unknown = _workbook(tmp_path / "other.xlsx", "R0042-2026-01-01", [
        {"police_person_id": "N0000001", "decision": "defer", "decided_by": "Chair", "meeting_date": meeting,
         "review_date": review}])
    assert "names run R0042-2026-01-01, which is not a completed run" in " ".join(imported(ws, unknown).output.split())
    good = _workbook(tmp_path / "good.xlsx", "R0001-2026-11-01", [
        {"police_person_id": "N0000001", "decision": "accept", "cohort_type": "Fixed", "decided_by": "'-Chair",
         "meeting_date": meeting, "review_date": review}])
    result = imported(ws, good)
    assert result.exit_code == 0 and "(run R0001-2026-11-01)" in result.output, result.output
    # the workbook's safe-cell apostrophe is taken off again
    assert table(ws, "SELECT run_id, decided_by, meeting_date FROM decisions") == [
        ("R0001-2026-11-01", "-Chair", date(2026, 11, 3))]
    missing = _workbook(tmp_path / "sheetless.xlsx", None, [], sheet="Sheet1")
    result = imported(ws, missing)
    assert result.exit_code == 4 and "has no sheet 'decisions'" in result.output


def test_a_file_without_the_required_columns_is_refused_naming_them(ws, tmp_path):
    path = tmp_path / "thin.csv"
    path.write_text("police_person_id,decision\nN0000001,accept\n", encoding="utf-8")
    result = imported(ws, path)
    assert result.exit_code == 4
    out = " ".join(result.output.split())
    for column in ("decided_by", "meeting_date", "review_date"):
        assert f"row 1, {column}: required column missing" in out


def test_a_csv_saved_by_excel_on_windows_is_read(ws, tmp_path):
    path = tmp_path / "excel.csv"  # Windows-1252, semicolons, UK dates
    path.write_bytes("police_person_id;Decision;Decided By;Meeting Date;Review Date\r\n"
                     "N0000001;Defer;Chef d\u2019\u00e9quipe;03/11/2026;01/12/2026\r\n".encode("cp1252"))
    result = imported(ws, path)
    assert result.exit_code == 0, result.output
    assert table(ws, "SELECT decision, decided_by, meeting_date, review_date FROM decisions") == [
        ("defer", "Chef d\u2019\u00e9quipe", date(2026, 11, 3), date(2026, 12, 1))]


def test_global_options_after_a_group_command_and_logs_without_personal_data(ws, tmp_path):
    path = write_rows(tmp_path / "d.csv", [decision(police_person_id="N0000001", decision="accept", cohort_type="Flex",
                                                    reason="Name1 Alex: 7 offences")])
    log_file = tmp_path / "logs" / "iom.jsonl"
    result = imported(ws, path, "--quiet", "--log-format", "json", f"--log-file={log_file}", "--verbose")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(line["message"] == "imported 1 decisions as D0001" for line in lines)
    text = log_file.read_text()
    for personal in ("N0000001", "Name1", keys_of(ws)["N0000001"], pnc_long(*PEOPLE["N0000001"])):
        assert personal not in text


VALID = {  # template -> the panel's columns (the police id and meeting date are drawn)
    "accept": {"decision": "accept", "cohort_type": "Fixed"},
    "reject": {"decision": "reject"},
    "defer": {"decision": "defer"},
    "undecided": None,  # a prefilled row the panel left alone
}
INVALID = {
    "unknown decision": {"decision": "maybe"},
    "accept without a type": {"decision": "accept"},
    "review before meeting": {"decision": "defer", "review_date": "2026-01-01"},
    "nobody": {"decision": "defer", "police_person_id": "N0000099"},
}


@pytest.mark.slow
def test_a_file_is_stored_whole_or_not_at_all(tmp_path_factory):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pipeline.decision_file import DecisionFileError
    from pipeline.decisions import import_decisions

    config = _tiny_workspace(tmp_path_factory.mktemp("whole"))
    counter = iter(range(10**6))

    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from([*VALID, *INVALID]), st.sampled_from(list(PEOPLE)[:4]),
                              st.sampled_from(["2026-10-06", "2026-11-03"])), min_size=1, max_size=8))
    def check(rows):
        n = next(counter)
        written = []
        for template, pid, meeting in rows:
            values = {**VALID, **INVALID}[template]
            written.append({"police_person_id": pid} if values is None else
                           decision(**{"police_person_id": pid, "meeting_date": meeting, "reason": f"file {n}",
                                       **values}))
        path = write_rows(tmp_path_factory.mktemp("f") / "d.csv", written)
        before = table(config, "SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM decision_imports)")
        decided = [(pid, meeting) for template, pid, meeting in rows if template in VALID and VALID[template]]
        bad = any(template in INVALID for template, _, _ in rows) or len(set(decided)) < len(decided) or not decided
        if bad:
            with pytest.raises(DecisionFileError):
                import_decisions(config, path)
            assert table(config, "SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM decision_imports)") \
                == before
        else:
            report = import_decisions(config, path)
            assert report.decisions == len(decided) and report.blank_rows == len(rows) - len(decided)
            assert table(config, "SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM decision_imports)") \
                == [(before[0][0] + len(decided), before[0][1] + 1)]

    check()
