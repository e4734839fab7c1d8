"""Ingest: rows accounted for, rejects explained, re-ingest a no-op, bad files change nothing."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from builders import example_row, write_csv, write_workspace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract import EXTRACTS
from pipeline.errors import InputFileError
from pipeline.ingest import ingest
from pipeline.warehouse import connect


def offence(i: int, **overrides) -> dict:
    return example_row("police_offences", **{"offence_id": f"CR{i:06d}", **overrides})


def warehouse_rows(config, sql: str, params=None) -> list[tuple]:
    con = connect(config)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_ingest_loads_good_rows_and_quarantines_bad_ones_with_line_and_reason(workspace):
    config = workspace(
        {
            "police_nominals": [example_row("police_nominals")],
            "police_offences": [offence(1), offence(2, offence_date="2026-13-40"), offence(3), offence(1)],
        }
    )
    results = {r.source: r for r in ingest(config)}
    offences = results["police_offences"]
    assert (offences.rows_read, offences.rows_loaded, offences.rows_rejected) == (4, 2, 2)
    assert offences.reasons == {"unparseable_date": 1, "duplicate_id": 1}
    rejects = warehouse_rows(
        config, "SELECT file_name, line, column_name, value, reason_code FROM rejects ORDER BY line"
    )
    # header is line 1: offence 2 is on line 3, the repeated offence 1 on line 5
    assert rejects == [
        ("police_offences.csv", 3, "offence_date", "2026-13-40", "unparseable_date"),
        ("police_offences.csv", 5, "offence_id", "CR000001", "duplicate_id"),
    ]
    raw = warehouse_rows(config, "SELECT raw FROM rejected_rows WHERE line = 3")[0][0]
    assert json.loads(raw)["offence_id"] == "CR000002"  # the quarantined row itself is kept


def test_load_records_sha256_counts_and_time(workspace, tmp_path):
    config = workspace({"police_offences": [offence(1), offence(2)]})
    ingest(config)
    path = tmp_path / "extracts" / "police_offences.csv"
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    row = warehouse_rows(
        config,
        "SELECT sha256, rows_read, rows_loaded, rows_rejected, finished_at IS NOT NULL FROM loads WHERE source = ?",
        ["police_offences"],
    )
    assert row == [(expected, 2, 2, 0, True)]


def test_reingesting_the_same_file_is_a_reported_no_op(workspace):
    config = workspace({"police_offences": [offence(1), offence(2, outcome="bogus")]})
    first = ingest(config)
    before = warehouse_rows(config, "SELECT (SELECT count(*) FROM loads), (SELECT count(*) FROM src_police_offences), "
                            "(SELECT count(*) FROM rejects)")
    second = ingest(config)
    after = warehouse_rows(config, "SELECT (SELECT count(*) FROM loads), (SELECT count(*) FROM src_police_offences), "
                           "(SELECT count(*) FROM rejects)")
    assert {r.status for r in first} == {"loaded"}
    assert {r.status for r in second} == {"unchanged"}
    assert before == after


def test_a_new_extract_replaces_rows_with_the_same_key(workspace, tmp_path):
    from pipeline.link import refresh_current_tables

    config = workspace({"police_offences": [offence(1, outcome="pending"), offence(2)]})
    ingest(config)
    write_csv(tmp_path / "extracts" / "police_offences.csv", EXTRACTS["police_offences"].column_names,
              [offence(1, outcome="convicted"), offence(3)])
    ingest(config)
    con = connect(config)
    refresh_current_tables(con)
    current = dict(con.execute("SELECT offence_id, outcome FROM cur_police_offences").fetchall())
    con.close()
    assert current == {"CR000001": "convicted", "CR000002": "charged", "CR000003": "charged"}


def test_missing_required_column_stops_with_file_and_column_and_changes_nothing(workspace, tmp_path):
    config = workspace({"police_offences": [offence(1)]})
    ingest(config)
    before = Path(config.warehouse_path).read_bytes()
    columns = [c for c in EXTRACTS["police_offences"].column_names if c != "offence_date"]
    write_csv(tmp_path / "extracts" / "police_offences.csv", columns, [offence(2)])
    with pytest.raises(InputFileError) as caught:
        ingest(config)
    message = str(caught.value)
    assert "police_offences.csv" in message and "offence_date" in message
    assert warehouse_rows(config, "SELECT count(*) FROM loads") == [(5,)]
    assert warehouse_rows(config, "SELECT count(*) FROM src_police_offences") == [(1,)]
    del before


def test_a_bad_file_late_in_the_list_leaves_earlier_files_unloaded(workspace, tmp_path):
    config = workspace({"police_nominals": [example_row("police_nominals")]})
    (tmp_path / "extracts" / "prison_custody.csv").write_bytes(b"")
    with pytest.raises(InputFileError, match="prison_custody.csv is empty"):
        ingest(config)
    assert warehouse_rows(config, "SELECT count(*) FROM loads") == [(0,)]


def test_mapped_names_cp1252_semicolons_and_day_first_dates(workspace, tmp_path):
    mapping = {"Case Ref": "crn", "Family Name": "surname", "Given": "forenames", "DOB": "date_of_birth"}
    config = workspace(overrides={"probation_cases": {"encoding": "cp1252", "delimiter": ";",
                                                      "date_formats": ["%d/%m/%Y"], "columns": mapping}})
    path = tmp_path / "extracts" / "probation_cases.csv"
    path.write_bytes("Case Ref;Family Name;Given;DOB;Unused\nX123456;O’Brien;Zoë;17/04/1991;x\n".encode("cp1252"))
    results = {r.source: r for r in ingest(config)}
    assert results["probation_cases"].rows_loaded == 1
    assert results["probation_cases"].ignored_columns == ["Unused"]
    row = warehouse_rows(config, "SELECT crn, surname, forenames, date_of_birth FROM src_probation_cases")[0]
    assert row[:3] == ("X123456", "O’Brien", "Zoë") and row[3].isoformat() == "1991-04-17"


def test_parquet_and_excel_extracts(workspace, tmp_path):
    rows = [offence(1), offence(2)]
    (tmp_path / "extracts").mkdir()
    parquet = tmp_path / "extracts" / "offences.parquet"
    pl.DataFrame(rows).write_parquet(parquet)
    xlsx = tmp_path / "extracts" / "events.xlsx"
    events = pl.DataFrame([example_row("probation_events"), example_row("probation_events", event_date="bad")])
    events.write_excel(xlsx)
    config = workspace(overrides={"police_offences": {"file": "extracts/offences.parquet", "format": "parquet"},
                                  "probation_events": {"file": "extracts/events.xlsx", "format": "xlsx"}})
    results = {r.source: r for r in ingest(config)}
    assert results["police_offences"].rows_loaded == 2
    events_result = results["probation_events"]
    assert (events_result.rows_read, events_result.rows_loaded, events_result.rows_rejected) == (2, 1, 1)
    assert warehouse_rows(config, "SELECT line FROM rejects WHERE source = 'probation_events'") == [(3,)]


def test_malformed_csv_rows_are_quarantined_and_later_lines_keep_their_numbers(workspace, tmp_path):
    config = workspace()
    header = ",".join(EXTRACTS["probation_events"].column_names)
    (tmp_path / "extracts" / "probation_events.csv").write_text(
        f"{header}\nX123456,2026-08-14,breach\nX123456,2026-08-15\nX123456,2026-08-16,recall,extra\n"
        "X123456,2026-08-17,bogus\n"
    )
    result = {r.source: r for r in ingest(config)}["probation_events"]
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (4, 1, 3)
    lines = warehouse_rows(config, "SELECT line, reason_code FROM rejects ORDER BY line")
    assert lines == [(3, "malformed_row"), (4, "malformed_row"), (5, "not_allowed_value")]


# --- the property: nothing is ever lost ------------------------------------------------------

CORRUPTIONS = {
    "offence_date": ["", "31/02/2023", "2099-01-01", "not known"],
    "offence_id": ["", "bad id!", "CR000001"],
    "ho_offence_code": ["", "burglary", "999/99"],
    "outcome": ["arrested", "CHARGED", ""],
    "recorded_date": ["2020-01-01", "garbage"],
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.just({}),
            st.sampled_from(sorted(CORRUPTIONS)).flatmap(
                lambda column: st.sampled_from(CORRUPTIONS[column]).map(lambda value: {column: value})
            ),
        ),
        min_size=1,
        max_size=30,
    )
)
@pytest.mark.slow
def test_read_equals_loaded_plus_rejected_and_every_reject_has_a_reason(tmp_path_factory, changes):
    root = tmp_path_factory.mktemp("prop")
    rows = [offence(i + 1, **change) for i, change in enumerate(changes)]
    config = write_workspace(root, {"police_offences": rows})
    result = {r.source: r for r in ingest(config)}["police_offences"]
    assert result.rows_read == len(rows)
    assert result.rows_read == result.rows_loaded + result.rows_rejected
    con = connect(config)
    try:
        orphan = con.execute(
            "SELECT count(*) FROM rejected_rows r WHERE NOT EXISTS "
            "(SELECT 1 FROM rejects x WHERE x.load_id = r.load_id AND x.line = r.line)"
        ).fetchone()[0]
        no_reason = con.execute("SELECT count(*) FROM rejects WHERE reason_code IS NULL OR message IS NULL").fetchone()[0]
        lines = con.execute(
            "SELECT line FROM rejected_rows UNION ALL SELECT _line FROM src_police_offences ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert orphan == 0 and no_reason == 0
    assert [line for (line,) in lines] == list(range(2, len(rows) + 2))  # every line exactly once




def test_rows_of_an_interrupted_load_are_removed_before_the_next_ingest(workspace):
    config = workspace({"police_offences": [offence(1)]})
    ingest(config)
    con = connect(config)
    # what a kill -9 part-way through a file leaves: a load without finished_at, and some of its rows
    con.execute("INSERT INTO loads (load_id, load_seq, source, file_name, file_path, sha256) "
                "VALUES ('police_offences:dead', 99, 'police_offences', 'x.csv', '/x.csv', 'dead')")
    con.execute("INSERT INTO src_police_offences (_load_id, _line, offence_id, police_person_id, offence_date, "
                "ho_offence_code) VALUES ('police_offences:dead', 2, 'CR9', 'N1', DATE '2026-01-01', '028/01')")
    con.close()
    ingest(config)
    assert warehouse_rows(config, "SELECT offence_id FROM src_police_offences") == [("CR000001",)]
    assert warehouse_rows(config, "SELECT count(*) FROM loads WHERE finished_at IS NULL") == [(0,)]


# --- preflight scan and read-ahead -------------------------------------------------------------


@pytest.fixture
def small_chunks(monkeypatch):
    """Scan in 7-byte chunks so that characters, CRLFs and lines straddle chunk boundaries."""
    import pipeline.preflight as preflight_module

    monkeypatch.setattr(preflight_module, "SCAN_CHUNK_BYTES", 7)


@given(text=st.text(alphabet=st.sampled_from(list("ab,é€\n\r")), max_size=60))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_scan_digest_and_newline_mix_match_a_plain_reading_whatever_the_chunking(tmp_path, small_chunks, text):
    from pipeline.preflight import _scan_file

    data = text.encode("utf-8")
    path = tmp_path / "scan.csv"
    path.write_bytes(data)
    digest, mixed = _scan_file(path, "police_offences", "utf-8")
    lf, crlf = data.count(b"\n"), data.count(b"\r\n")
    assert digest == hashlib.sha256(data).hexdigest()
    assert mixed == (0 < crlf < lf)


def test_scan_names_the_line_of_a_bad_byte_in_a_later_chunk(tmp_path, small_chunks):
    from pipeline.preflight import _scan_file

    path = tmp_path / "bad.csv"
    path.write_bytes("h1,h2\nZoë,1\nab,2\nO\x92Brien,3\n".encode("latin-1").replace("ë".encode("latin-1"), "ë".encode()))
    with pytest.raises(InputFileError) as caught:
        _scan_file(path, "police_nominals", "utf-8")
    assert "line 4" in str(caught.value) and "0x92" in str(caught.value)


def test_scan_reports_a_file_cut_in_the_middle_of_a_character(tmp_path, small_chunks):
    from pipeline.preflight import _scan_file

    path = tmp_path / "cut.csv"
    path.write_bytes(b"h1\nab\nZo" + "ë".encode()[:1])
    with pytest.raises(InputFileError) as caught:
        _scan_file(path, "police_nominals", "utf-8")
    assert "line 3" in str(caught.value) and "truncated" in str(caught.value)


def test_read_ahead_keeps_order_and_raises_the_producers_error_in_the_consumer():
    from pipeline.ingest import _read_ahead

    assert list(_read_ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise InputFileError("the reader failed")

    seen = []
    with pytest.raises(InputFileError, match="the reader failed"):
        for item in _read_ahead(failing()):
            seen.append(item)
    assert seen == [1, 2]


def test_read_ahead_stops_its_worker_when_the_consumer_leaves_early():
    import threading

    from pipeline.ingest import _read_ahead

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    items = _read_ahead(endless())
    assert next(items) == 0
    items.close()  # the consumer stops, as it does when a batch fails to store
    assert not any(t.name == "iom-read-ahead" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 4  # bounded: the worker ran at most a couple of items ahead


def test_a_file_that_loses_most_of_its_rows_is_warned_about_with_its_commonest_failure(workspace, caplog):
    from builders import offence

    rows = [offence(f"CR{i}", "N1", date(2026, 1, 1) if i % 4 else date(2026, 1, 2),
                    code="burglary" if i % 4 else "028/01") for i in range(1, 9)]
    config = workspace({"police_offences": rows})
    with caplog.at_level("WARNING", logger="pipeline.ingest"):
        result = {r.source: r for r in ingest(config)}["police_offences"]
    assert (result.rows_loaded, result.rows_rejected) == (2, 6)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("6 of 8 rows rejected (75%)" in m and "bad_format in ho_offence_code" in m and "iom rejects" in m
               for m in warned), warned


def test_a_file_with_a_few_bad_rows_is_not_warned_about(workspace, caplog):
    from builders import offence

    rows = [offence(f"CR{i}", "N1", date(2026, 1, 1), code="burglary" if i == 1 else "028/01") for i in range(1, 9)]
    config = workspace({"police_offences": rows})
    with caplog.at_level("WARNING", logger="pipeline.ingest"):
        ingest(config)
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "rows rejected" in r.getMessage()]


def test_a_failure_while_a_later_file_loads_removes_the_files_already_finished(workspace, monkeypatch):
    """Files are read and validated ahead, in worker threads, while the main thread finishes the
    one before: a failure in the last file must still leave the warehouse as it was."""
    import pipeline.ingest as ingest_module

    config = workspace({"police_nominals": [example_row("police_nominals")],
                        "police_offences": [offence(1), offence(2)],
                        "prison_custody": [example_row("prison_custody")]})
    validate = ingest_module.validate_batch

    def failing(frame, extract, *args, **kwargs):
        if extract.name == "prison_custody":
            raise InputFileError("prison_custody: a failure while validating")
        return validate(frame, extract, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "validate_batch", failing)
    with pytest.raises(InputFileError, match="a failure while validating"):
        ingest(config)
    assert warehouse_rows(config, "SELECT (SELECT count(*) FROM loads), (SELECT count(*) FROM src_police_nominals), "
                                  "(SELECT count(*) FROM src_police_offences), (SELECT count(*) FROM rejects)") \
        == [(0, 0, 0, 0)]
    monkeypatch.setattr(ingest_module, "validate_batch", validate)
    assert {r.source: r.rows_loaded for r in ingest(config)}["police_offences"] == 2  # and a retry loads


def test_the_same_file_twice_in_one_command_is_loaded_once(workspace, tmp_path):
    config = workspace({"police_offences": [offence(1), offence(2)]},
                       overrides={"police_offences": {"file": "extracts/offences_*.csv"}})
    original = tmp_path / "extracts" / "police_offences.csv"
    for copy in ("offences_a.csv", "offences_b.csv"):
        (tmp_path / "extracts" / copy).write_bytes(original.read_bytes())
    results = [r for r in ingest(config) if r.source == "police_offences"]
    assert [(r.file_name, r.status, r.rows_read) for r in results] == [
        ("offences_a.csv", "loaded", 2), ("offences_b.csv", "unchanged", 2)]
    assert warehouse_rows(config, "SELECT count(*) FROM src_police_offences") == [(2,)]
