"""Bad inputs: every damaged extract either loads with its rows accounted for (bad rows quarantined
with a reason and a line) or stops the command with exit 4 and a message naming the file, where,
and what to do. Never a traceback, never a silent loss of rows.

The bad files are written by `tests/corpus.py` into each test's tmp folder.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import corpus
import pytest
from builders import write_workspace
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from pipeline.config import Config, load_config, render_config
from pipeline.errors import InputFileError
from pipeline.ingest import LoadResult, ingest
from pipeline.warehouse import connect

REPO = Path(__file__).parents[2]
runner = CliRunner()


# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI installs a stderr handler on the root logger; CliRunner closes that stream after
    each invoke. Put the handlers back so later library calls do not log into a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def flat(text: str) -> str:
    """Text without any whitespace: rich wraps long messages, so compare without it."""
    return "".join(text.split())


def assert_says(output: str, *needles: str) -> None:
    squashed = flat(output)
    for needle in needles:
        assert flat(needle) in squashed, f"{needle!r} not in output:\n{output}"


def extract_path(config: Config, name: str) -> Path:
    return config.root / "extracts" / f"{name}.csv"


def loaded(config: Config, name: str) -> LoadResult:
    return {r.source: r for r in ingest(config)}[name]


def rows(config: Config, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(config)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def rejects(config: Config, source: str) -> list[tuple]:
    return rows(config, "SELECT line, column_name, reason_code FROM rejects WHERE source = ? ORDER BY line, column_name",
                [source])


def load_count(config: Config) -> int:
    if not config.warehouse_path.exists():
        return 0
    return rows(config, "SELECT count(*) FROM loads")[0][0]


def set_extract_option(config: Config, name: str, line: str) -> Config:
    """Add `line` (e.g. 'header_row = 2') to [extracts.NAME] of iom.toml and reload it.
    (`render_config`, used by `write_workspace`, writes header_row and sheet only as comments.)"""
    text = config.path.read_text(encoding="utf-8")
    section = f"[extracts.{name}]\n"
    assert section in text
    config.path.write_text(text.replace(section, section + line + "\n", 1), encoding="utf-8")
    return load_config(config.path)


def cli_ingest(config: Config, expected_exit: int) -> str:
    result = runner.invoke(app, ["ingest", "--config", str(config.path)])
    assert "Traceback" not in result.output
    assert result.exit_code == expected_exit, result.output
    return result.output


def iom_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def assert_file_error(config: Config, name: str, *needles: str) -> InputFileError:
    """ingest() raises InputFileError naming the file and the needles, and nothing was loaded."""
    with pytest.raises(InputFileError) as caught:
        ingest(config)
    message = str(caught.value)
    assert name in message, message
    assert caught.value.hint, "an input file error must say what to do"
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert load_count(config) == 0
    return caught.value


# --- truncated files -------------------------------------------------------------------------------


def test_truncated_mid_field_quarantines_the_cut_line_and_keeps_the_rest(workspace):
    config = workspace()
    corpus.truncated_mid_field(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 2, 1)
    assert rejects(config, "police_offences") == [(4, None, "malformed_row")]
    message = rows(config, "SELECT message FROM rejects")[0][0]
    assert "could not be parsed" in message and "columns" in message.lower()
    raw = rows(config, "SELECT raw FROM rejected_rows WHERE line = 4")[0][0]
    assert "CR000003" in raw  # the cut row is kept for the analyst, not dropped


def test_truncated_mid_quote_quarantines_the_cut_line(workspace):
    config = workspace()
    corpus.truncated_mid_quote(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 2, 1)
    assert rejects(config, "police_offences") == [(4, None, "malformed_row")]
    assert "quote" in rows(config, "SELECT message FROM rejects")[0][0]
    output = cli_ingest(load_config(config.path), 0)  # unchanged file: a reported no-op, exit 0
    assert "unchanged" in output


# --- delimiter and encodings ---------------------------------------------------------------------


def test_wrong_delimiter_stops_with_a_message_suggesting_the_delimiter(workspace):
    config = workspace()
    corpus.semicolon_separated(extract_path(config, "police_offences"))
    error = assert_file_error(config, "police_offences.csv", "offence_id", "required column missing")
    assert 'delimiter = ";"' in error.hint
    output = cli_ingest(config, 4)
    assert_says(output, "input file error", "police_offences.csv", 'delimiter = ";"')


def test_the_same_semicolon_file_configured_with_its_delimiter_loads(workspace):
    config = workspace(overrides={"police_offences": {"delimiter": ";"}})
    corpus.semicolon_separated(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (2, 2, 0)


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_utf8_bom_loads_and_does_not_spoil_the_first_column(workspace, encoding):
    config = workspace(overrides={"police_offences": {"encoding": encoding}})
    corpus.utf8_with_bom(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (2, 2, 0)
    assert result.ignored_columns == []
    assert rows(config, "SELECT offence_id FROM src_police_offences ORDER BY _line") == [("CR000001",), ("CR000002",)]


def test_utf8_bom_file_configured_cp1252_says_to_set_utf8(workspace):
    config = workspace(overrides={"police_offences": {"encoding": "cp1252"}})
    corpus.utf8_with_bom(extract_path(config, "police_offences"))
    error = assert_file_error(config, "police_offences.csv", "required column missing", "'offence_id'")
    assert 'encoding = "utf-8-sig"' in error.hint


def test_cp1252_names_configured_cp1252_load_with_the_right_characters(workspace):
    config = workspace(overrides={"police_nominals": {"encoding": "cp1252"}})
    corpus.cp1252_names(extract_path(config, "police_nominals"))
    result = loaded(config, "police_nominals")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (2, 2, 0)
    names = rows(config, "SELECT forenames, surname FROM src_police_nominals WHERE _line = 3")
    assert names == [("Zoë", "O’Brien")]


def test_cp1252_file_configured_utf8_stops_naming_file_line_and_encoding_to_set(workspace):
    config = workspace()
    corpus.cp1252_names(extract_path(config, "police_nominals"))
    error = assert_file_error(config, "police_nominals.csv", "not valid utf-8", "line 3", "0x92")
    assert 'encoding = "cp1252"' in error.hint
    output = cli_ingest(config, 4)
    assert_says(output, "police_nominals.csv", "line 3", 'encoding = "cp1252"')


@pytest.mark.slow
def test_subprocess_wrong_encoding_exits_4_and_leaves_the_warehouse_empty(tmp_path):
    config = write_workspace(tmp_path)
    corpus.cp1252_names(extract_path(config, "police_nominals"))
    result = iom_subprocess("ingest", "--config", str(config.path), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert_says(result.stderr, "police_nominals.csv", "line 3", "encoding")
    assert load_count(config) == 0


# --- dates, embedded newlines, long fields ---------------------------------------------------------------


def test_mixed_date_formats_configured_ones_load_others_quarantined_by_line(workspace):
    config = workspace(overrides={"police_offences": {"date_formats": ["%d/%m/%Y"]}})
    corpus.mixed_dates(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (5, 2, 3)
    assert result.reasons == {"unparseable_date": 3}
    found = rows(config, "SELECT line, column_name, value, reason_code, message FROM rejects ORDER BY line")
    assert [(line, value) for line, _, value, _, _ in found] == [(4, "09-03-2026"), (5, "3 Sep 2026"), (6, "31/02/2026")]
    for line, column, value, reason, message in found:
        assert (column, reason) == ("offence_date", "unparseable_date")
        assert corpus.MIXED_DATES[line] == value and value in message
    dates = rows(config, "SELECT _line, offence_date FROM src_police_offences ORDER BY _line")
    assert dates == [(2, date(2026, 9, 3)), (3, date(2026, 9, 3))]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf-excel"])
def test_embedded_newlines_and_quotes_load_exactly(workspace, newline):
    config = workspace()
    path = extract_path(config, "police_offences")
    text = corpus.csv_text(corpus.OFFENCE_COLUMNS,
                           [corpus.offence(i, offence_description=v) for i, v in corpus.EMBEDDED.items()]
                           + [corpus.offence(9, offence_date="not a date")], newline=newline)
    path.write_bytes(text.encode("utf-8"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (5, 4, 1)
    stored = dict(rows(config, "SELECT offence_id, offence_description FROM src_police_offences"))
    expected = {f"CR{i:06d}": v or None for i, v in corpus.EMBEDDED.items()}
    assert stored == expected
    # `line` counts records (the row number Excel shows), not physical lines of the text file.
    assert rejects(config, "police_offences") == [(6, "offence_date", "unparseable_date")]


def test_a_10000_character_field_is_quarantined_as_too_long(workspace):
    config = workspace()
    corpus.very_long_field(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 2, 1)
    assert rejects(config, "police_offences") == [(3, "offence_description", "too_long")]
    message = rows(config, "SELECT message FROM rejects")[0][0]
    assert "offence_description" in message and len(message) < 300


# --- empty, header only, repeated header ---------------------------------------------------------------


def test_empty_file_exits_4(workspace):
    config = workspace()
    corpus.empty_file(extract_path(config, "police_offences"))
    assert_file_error(config, "police_offences.csv", "is empty")
    assert_says(cli_ingest(config, 4), "police_offences.csv is empty", "export the extract again")


def test_header_only_loads_zero_rows_and_exits_0(workspace):
    config = workspace()
    corpus.header_only(extract_path(config, "police_offences"))
    output = cli_ingest(config, 0)
    assert "police_offences" in output
    assert rows(config, "SELECT rows_read, rows_loaded, rows_rejected FROM loads WHERE source = 'police_offences'") == [
        (0, 0, 0)
    ]


def test_a_repeated_header_line_is_quarantined_as_repeated_header(workspace):
    config = workspace()
    corpus.repeated_header(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (4, 3, 1)
    assert rejects(config, "police_offences") == [(4, None, "repeated_header")]
    assert rows(config, "SELECT _line FROM src_police_offences ORDER BY 1") == [(2,), (3,), (5,)]


# --- columns ---------------------------------------------------------------------------------------------


def test_extra_columns_are_ignored_and_listed(workspace):
    config = workspace()
    corpus.extra_columns(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded) == (2, 2)
    assert result.ignored_columns == ["Officer Notes", "Exported By"]


def test_extra_columns_are_named_in_the_cli_log(workspace):
    config = workspace()
    corpus.extra_columns(extract_path(config, "police_offences"))
    assert_says(cli_ingest(config, 0), "ignored: Officer Notes, Exported By")


def test_missing_optional_columns_load_as_empty(workspace):
    config = workspace()
    corpus.missing_optional_columns(extract_path(config, "police_offences"))
    result = loaded(config, "police_offences")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (2, 2, 0)
    assert result.absent_optional_columns == corpus.OPTIONAL_LEFT_OUT
    values = rows(config, "SELECT recorded_date, outcome, outcome_date, area, offence_description "
                          "FROM src_police_offences")
    assert values == [(None, None, None, None, "Burglary - residential")] * 2


def test_missing_required_column_exits_4_naming_file_and_column(workspace):
    config = workspace()
    corpus.missing_required_column(extract_path(config, "police_offences"))
    assert_file_error(config, "police_offences.csv", "required column missing", "'ho_offence_code'")
    assert_says(cli_ingest(config, 4), "police_offences.csv", "ho_offence_code", "What to do")
    assert load_count(config) == 0


# --- Excel and Parquet ----------------------------------------------------------------------------------


def test_excel_title_row_loads_with_header_row_2(workspace):
    config = workspace(overrides={"probation_events": {"file": "extracts/events.xlsx", "format": "xlsx"}})
    corpus.excel_with_title_row(config.root / "extracts" / "events.xlsx")
    config = set_extract_option(config, "probation_events", "header_row = 2")
    result = loaded(config, "probation_events")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 2, 1)
    # lines are the sheet's row numbers: title 1, header 2, data from 3
    assert rejects(config, "probation_events") == [(4, "event_date", "unparseable_date")]
    assert rows(config, "SELECT _line, event_type FROM src_probation_events ORDER BY 1") == [
        (3, "breach"), (5, "missed_appointment")
    ]


def test_excel_title_row_without_header_row_says_which_row_to_set(workspace):
    config = workspace(overrides={"probation_events": {"file": "extracts/events.xlsx", "format": "xlsx"}})
    corpus.excel_with_title_row(config.root / "extracts" / "events.xlsx")
    error = assert_file_error(config, "events.xlsx", "required column missing", "'crn'")
    assert "header_row = 2" in error.hint
    assert_says(cli_ingest(config, 4), "events.xlsx", "header_row = 2")


@pytest.mark.slow
def test_subprocess_excel_title_row_exits_4_with_the_header_row_hint(tmp_path):
    config = write_workspace(tmp_path, overrides={"probation_events": {"file": "extracts/events.xlsx",
                                                                      "format": "xlsx"}})
    corpus.excel_with_title_row(tmp_path / "extracts" / "events.xlsx")
    result = iom_subprocess("ingest", "--config", str(config.path), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert_says(result.stderr, "events.xlsx", "header_row = 2")


def test_parquet_with_wrong_types_is_read_as_text_and_quarantined_never_a_crash(workspace):
    overrides = {"police_nominals": {"file": "extracts/nominals.parquet", "format": "parquet"}}
    config = workspace(overrides=overrides)
    corpus.parquet_wrong_types(config.root / "extracts" / "nominals.parquet")
    result = loaded(config, "police_nominals")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 0, 3)
    found = rows(config, "SELECT line, column_name, value, reason_code FROM rejects ORDER BY line, column_name")
    assert found == [
        (1, "date_of_birth", "19910417", "unparseable_date"),
        (2, "date_of_birth", "19850230", "unparseable_date"),
        (2, "sex", "1.0", "not_allowed_value"),
        (3, "date_of_birth", "20000101", "unparseable_date"),
    ]


def test_parquet_integer_dates_load_when_their_format_is_configured_and_int_ids_become_text(workspace):
    overrides = {"police_nominals": {"file": "extracts/nominals.parquet", "format": "parquet",
                                     "date_formats": ["%Y%m%d"]}}
    config = workspace(overrides=overrides)
    corpus.parquet_wrong_types(config.root / "extracts" / "nominals.parquet")
    result = loaded(config, "police_nominals")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 2, 1)
    assert rejects(config, "police_nominals") == [(2, "date_of_birth", "unparseable_date"),
                                                  (2, "sex", "not_allowed_value")]
    stored = rows(config, "SELECT police_person_id, date_of_birth, ethnicity FROM src_police_nominals ORDER BY _line")
    assert stored == [("1001", date(1991, 4, 17), "[W1]"), ("1003", date(2000, 1, 1), "[A1, A2]")]


# --- the file system -----------------------------------------------------------------------------------


def test_a_directory_where_the_file_should_be_exits_4(workspace):
    config = workspace()
    corpus.directory_instead_of_file(extract_path(config, "police_offences"))
    assert_file_error(config, "police_offences.csv", "is a directory")
    assert_says(cli_ingest(config, 4), "police_offences.csv is a directory", "point [extracts.police_offences].file")


def test_a_glob_matching_nothing_exits_4(workspace):
    config = workspace(overrides={"police_offences": {"file": "extracts/offences_*.csv"}})
    assert_file_error(config, "offences_*.csv", "no file matches")
    assert_says(cli_ingest(config, 4), "no file matches 'extracts/offences_*.csv'", "put the extract there")


def test_an_unreadable_file_never_crashes(workspace):
    config = workspace()
    path = corpus.unreadable_file(extract_path(config, "police_offences"))
    try:
        output = cli_ingest(config, 0 if os.access(path, os.R_OK) else 4)  # root reads it anyway
    finally:
        os.chmod(path, 0o600)
    assert "internal error" not in output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file: permission cannot be denied")
def test_an_unreadable_file_exits_4_when_not_root(workspace):
    config = workspace()
    path = corpus.unreadable_file(extract_path(config, "police_offences"))
    try:
        assert_file_error(config, "police_offences.csv", "permission denied")
        assert_says(cli_ingest(config, 4), "police_offences.csv", "permission")
    finally:
        os.chmod(path, 0o600)


def test_permission_denied_is_a_file_error_even_as_root(workspace, monkeypatch):
    """Simulated, since root bypasses file modes: os.access says no."""
    config = workspace()
    path = extract_path(config, "police_offences")
    real_access = os.access
    monkeypatch.setattr("pipeline.preflight.os.access", lambda p, mode: Path(p) != path and real_access(p, mode))
    assert_file_error(config, "police_offences.csv", "permission denied")
    assert_says(cli_ingest(config, 4), "police_offences.csv", "permission denied", "permissions")


def test_open_failing_after_the_access_check_is_a_file_error(workspace, monkeypatch):
    """ACLs, root-squashed NFS or a file swapped mid-run: access() says yes, open() says no."""
    config = workspace()
    path = extract_path(config, "police_offences")
    real_open = Path.open

    def refusing_open(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing_open)
    assert_file_error(config, "police_offences.csv", "cannot be read", "Permission denied")
    assert_says(cli_ingest(config, 4), "police_offences.csv", "Permission denied")


# --- not a CSV at all -------------------------------------------------------------------------------


def test_binary_garbage_named_csv_exits_4_saying_it_is_not_csv(workspace):
    config = workspace()
    corpus.binary_garbage(extract_path(config, "police_offences"))
    assert_file_error(config, "police_offences.csv", "is not CSV text")
    assert_says(cli_ingest(config, 4), "police_offences.csv is not CSV text", "export the extract again")


def test_subprocess_binary_garbage_exits_4(tmp_path):
    config = write_workspace(tmp_path)
    corpus.binary_garbage(extract_path(config, "police_offences"))
    result = iom_subprocess("ingest", "--config", str(config.path), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert_says(result.stderr, "police_offences.csv is not CSV text")


def test_a_workbook_named_csv_suggests_the_xlsx_format(workspace):
    config = workspace()
    corpus.workbook_named_csv(extract_path(config, "probation_events"))
    error = assert_file_error(config, "probation_events.csv", "Excel workbook")
    assert 'format = "xlsx"' in error.hint


# --- fuzzing the CSV path ----------------------------------------------------------------------------

HEADER = ",".join(corpus.OFFENCE_COLUMNS)
CSV_ALPHABET = list('ab1 ,;|"\'\n\r\t/-:2069') + ["CR000001", "N0001234", "2026-09-03", "028/01", "charged", "ë", "’"]

pieces = st.sampled_from(CSV_ALPHABET)
cells = st.lists(pieces, max_size=4).map("".join)
csv_rows = st.lists(st.lists(cells, max_size=11).map(",".join), max_size=8)
csv_like = st.one_of(
    csv_rows.map("\n".join),
    csv_rows.map("\r\n".join),
    st.lists(pieces, max_size=60).map("".join),
)
file_bytes = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=200).map(lambda b: HEADER.encode() + b"\n" + b),
    csv_like.map(lambda t: (HEADER + "\n" + t).encode("utf-8")),
    csv_like.map(lambda t: t.encode("utf-8")),
    csv_like.map(lambda t: (HEADER + "\r\n" + t).encode("cp1252", errors="replace")),
)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=file_bytes, encoding=st.sampled_from(["utf-8", "cp1252"]))
def test_any_bytes_load_with_rows_accounted_for_or_fail_as_an_input_file_error(tmp_path_factory, data, encoding):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "extracts").mkdir()
    (root / "extracts" / "offences.csv").write_bytes(data)
    (root / "iom.toml").write_text(
        render_config([{"name": "police_offences", "file": "extracts/offences.csv", "encoding": encoding}]),
        encoding="utf-8",
    )
    config = load_config(root / "iom.toml")
    try:
        results = ingest(config)
    except InputFileError as exc:
        event("input file error")
        assert "offences.csv" in str(exc) or "police_offences" in str(exc)
        assert load_count(config) == 0
        return
    (result,) = results
    event("loaded" if result.rows_rejected == 0 else "loaded with rejects")
    assert result.rows_read == result.rows_loaded + result.rows_rejected
    in_warehouse = rows(
        config,
        "SELECT (SELECT count(*) FROM src_police_offences WHERE _load_id = ?), "
        "(SELECT count(*) FROM rejected_rows WHERE load_id = ?), "
        "(SELECT count(*) FROM rejected_rows r WHERE load_id = ? AND NOT EXISTS "
        "   (SELECT 1 FROM rejects x WHERE x.load_id = r.load_id AND x.line = r.line)), "
        "(SELECT count(*) FROM rejects WHERE load_id = ? AND (reason_code IS NULL OR message IS NULL))",
        [result.load_id] * 4,
    )
    assert in_warehouse == [(result.rows_loaded, result.rows_rejected, 0, 0)]


# --- a check that fails for a whole column ---------------------------------------------------------


def test_a_column_level_check_failure_stops_the_batch_naming_file_and_column(workspace, monkeypatch):
    import pandera.polars as pa
    from builders import example_row

    import pipeline.ingest as ingest_module
    from pipeline.validate import build_schema

    config = workspace({"police_nominals": [example_row("police_nominals")],
                        "police_offences": [example_row("police_offences")]})

    def with_a_check_that_cannot_run(extract, options):
        schema = build_schema(extract, options)
        if extract.name != "police_offences":
            return schema

        def cannot_run(data):
            raise RuntimeError("this check cannot run on the column")

        column = schema.columns["ho_offence_code"]
        return schema.update_column("ho_offence_code", checks=[*column.checks, pa.Check(cannot_run, name="broken")])

    monkeypatch.setattr(ingest_module, "build_schema", with_a_check_that_cannot_run)
    # the nominals file loaded first in the same batch is removed again too: load_count == 0
    error = assert_file_error(config, "police_offences.csv", "column ho_offence_code", "broken")
    assert "nothing was loaded" in error.message
