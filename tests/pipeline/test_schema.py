"""The warehouse schema: one version, named migrations that upgrade an older file in place, a
newer file refused; and run_sql, which names the failing step in the error and the CLI's log."""

from __future__ import annotations

import json

import duckdb
import pytest
from builders import write_workspace
from typer.testing import CliRunner

from cli import app
from pipeline.errors import WarehouseError, failed_step
from pipeline.schema import MIGRATIONS, SCHEMA_VERSION
from pipeline.warehouse import connect, open_warehouse, run_sql, table_exists
from pipeline.workspace import ingest_workspace

runner = CliRunner()

# The DDL of schema version 1 exactly as the code before version 2 wrote it: the historical fixture.
V1_DDL = [
    'CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)',
    'CREATE TABLE IF NOT EXISTS loads (\n        load_id VARCHAR PRIMARY KEY, load_seq BIGINT NOT NULL, source VARCHAR NOT NULL,\n        file_name VARCHAR NOT NULL, file_path VARCHAR NOT NULL, sha256 VARCHAR NOT NULL,\n        file_bytes BIGINT, file_format VARCHAR, rows_read BIGINT, rows_loaded BIGINT,\n        rows_rejected BIGINT, extract_date DATE, started_at TIMESTAMP, finished_at TIMESTAMP, purged_at TIMESTAMP)',
    'CREATE TABLE IF NOT EXISTS rejects (\n        load_id VARCHAR NOT NULL, source VARCHAR NOT NULL, file_name VARCHAR NOT NULL, line BIGINT,\n        column_name VARCHAR, value VARCHAR, reason_code VARCHAR NOT NULL, message VARCHAR)',
    'CREATE TABLE IF NOT EXISTS rejected_rows (\n        load_id VARCHAR NOT NULL, source VARCHAR NOT NULL, line BIGINT, raw VARCHAR)',
    'CREATE TABLE IF NOT EXISTS "src_police_nominals" (_load_id VARCHAR NOT NULL, _line BIGINT, "police_person_id" VARCHAR, "pnc_id" VARCHAR, "cro_number" VARCHAR, "surname" VARCHAR, "forenames" VARCHAR, "date_of_birth" DATE, "sex" VARCHAR, "ethnicity" VARCHAR, "area" VARCHAR, "deceased_date" DATE)',
    'CREATE TABLE IF NOT EXISTS "src_police_offences" (_load_id VARCHAR NOT NULL, _line BIGINT, "offence_id" VARCHAR, "police_person_id" VARCHAR, "offence_date" DATE, "recorded_date" DATE, "ho_offence_code" VARCHAR, "offence_description" VARCHAR, "outcome" VARCHAR, "outcome_date" DATE, "area" VARCHAR)',
    'CREATE TABLE IF NOT EXISTS "src_probation_cases" (_load_id VARCHAR NOT NULL, _line BIGINT, "crn" VARCHAR, "pnc_id" VARCHAR, "nomis_id" VARCHAR, "surname" VARCHAR, "forenames" VARCHAR, "date_of_birth" DATE, "sex" VARCHAR, "supervision_type" VARCHAR, "supervision_start" DATE, "supervision_end" DATE, "assessment_date" DATE, "ogrs3_2yr" DOUBLE, "rosh" VARCHAR, "mappa_level" BIGINT, "previous_sanctions" BIGINT, "first_sanction_date" DATE, "area" VARCHAR)',
    'CREATE TABLE IF NOT EXISTS "src_probation_events" (_load_id VARCHAR NOT NULL, _line BIGINT, "crn" VARCHAR, "event_date" DATE, "event_type" VARCHAR)',
    'CREATE TABLE IF NOT EXISTS "src_prison_custody" (_load_id VARCHAR NOT NULL, _line BIGINT, "spell_id" VARCHAR, "nomis_id" VARCHAR, "pnc_id" VARCHAR, "surname" VARCHAR, "forenames" VARCHAR, "date_of_birth" DATE, "sex" VARCHAR, "reception_date" DATE, "release_date" DATE, "expected_release_date" DATE, "sentence_days" BIGINT, "custody_type" VARCHAR, "release_area" VARCHAR)',
    'CREATE TABLE IF NOT EXISTS runs (\n        run_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, as_of DATE NOT NULL, status VARCHAR NOT NULL,\n        started_at TIMESTAMP, finished_at TIMESTAMP, rules_name VARCHAR, rules_version VARCHAR,\n        rules_sha256 VARCHAR, code_version VARCHAR, output_dir VARCHAR, manifest VARCHAR, purged_at TIMESTAMP)',
    'CREATE TABLE IF NOT EXISTS cohort_members (\n        run_id VARCHAR NOT NULL, cohort VARCHAR NOT NULL, person_key VARCHAR NOT NULL, area VARCHAR,\n        rank BIGINT, score BIGINT, cohort_type VARCHAR)',
    'CREATE TABLE IF NOT EXISTS movement (\n        run_id VARCHAR NOT NULL, cohort VARCHAR NOT NULL, person_key VARCHAR NOT NULL, status VARCHAR NOT NULL,\n        reason VARCHAR, previous_run_id VARCHAR)',
]
V1_RUN_TABLES = 3  # the last three: made by the first `iom run`, absent from a warehouse that never ran


def write_v1_warehouse(path, ran: bool = False) -> None:
    con = duckdb.connect(str(path))
    for ddl in V1_DDL if ran else V1_DDL[:-V1_RUN_TABLES]:
        con.execute(ddl)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute(
        "INSERT INTO loads (load_id, load_seq, source, file_name, file_path, sha256, rows_read, rows_loaded, "
        "rows_rejected, finished_at) VALUES ('police_nominals:0123456789abcdef', 1, 'police_nominals', 'old.csv', "
        "'/data/old.csv', 'ab', 1, 1, 0, TIMESTAMP '2026-10-01 09:00:00')"
    )
    con.execute("INSERT INTO src_police_nominals (_load_id, _line, police_person_id, surname, forenames, "
                "date_of_birth, area) VALUES ('police_nominals:0123456789abcdef', 2, 'N9', 'Old', 'Row', "
                "DATE '1990-01-01', 'Northgate')")
    con.close()


def rows(path, sql):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("ran", [False, True])
def test_a_version_1_warehouse_is_upgraded_in_place_and_keeps_its_data(tmp_path, ran):
    config = write_workspace(tmp_path)
    write_v1_warehouse(config.warehouse_path, ran=ran)

    con = connect(config)
    try:
        assert all(table_exists(con, t) for t in ("runs", "cohort_members", "movement", "schema_migrations"))
    finally:
        con.close()
    path = config.warehouse_path
    assert rows(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
    assert [r[0] for r in rows(path, "SELECT name FROM schema_migrations ORDER BY name")] == [m.name for m in MIGRATIONS]
    assert rows(path, "SELECT police_person_id, surname FROM src_police_nominals") == [("N9", "Old")]
    assert rows(path, "SELECT load_id FROM loads") == [("police_nominals:0123456789abcdef",)]

    # the upgraded warehouse works: an ingest links the old row, and the runs register reads back
    report = ingest_workspace(config)
    assert report.link.people == 1
    result = runner.invoke(app, ["runs", "--config", str(config.path)])
    assert result.exit_code == 0, result.output
    # opening again applies nothing twice
    connect(config).close()
    assert rows(path, "SELECT count(*) FROM schema_migrations") == [(len(MIGRATIONS),)]


def test_a_new_warehouse_starts_at_the_current_version_with_every_migration_recorded(tmp_path):
    path = tmp_path / "new.duckdb"
    open_warehouse(path).close()
    open_warehouse(path).close()
    assert rows(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
    assert rows(path, "SELECT name, schema_version FROM schema_migrations ORDER BY name") == [
        (m.name, m.to_version) for m in MIGRATIONS]
    assert rows(path, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'") == [(1,)]


def test_a_warehouse_with_a_newer_schema_is_refused_for_reading_and_writing(tmp_path):
    config = write_workspace(tmp_path)
    connect(config).close()
    newer = str(int(SCHEMA_VERSION) + 1)
    con = duckdb.connect(str(config.warehouse_path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [newer])
    con.close()

    for read_only in (False, True):
        with pytest.raises(WarehouseError) as error:
            connect(config, read_only=read_only)
        assert f"schema version {newer}" in error.value.message and "newer" in error.value.message
    # nothing was changed by the refused opens
    assert rows(config.warehouse_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(newer,)]
    result = runner.invoke(app, ["runs", "--config", str(config.path)])
    assert result.exit_code == WarehouseError.exit_code
    assert "newer" in result.output


def test_run_sql_names_the_failing_step_on_the_duckdb_error():
    con = duckdb.connect(":memory:")
    with pytest.raises(duckdb.CatalogException) as error:
        run_sql(con, "people", "SELECT * FROM no_such_table")
    assert failed_step(error.value) == "people"
    assert run_sql(con, "arithmetic", "SELECT ? + 1", [1]).fetchall() == [(2,)]


def test_an_internal_error_log_names_the_failing_step(tmp_path, monkeypatch):
    config = write_workspace(tmp_path)
    connect(config).close()

    def broken(cfg):
        con = connect(cfg, read_only=True)
        try:
            return run_sql(con, "list runs", "SELECT no_such_column FROM runs").fetchall()
        finally:
            con.close()

    monkeypatch.setattr("pipeline.runs.list_runs", broken)
    log_file = tmp_path / "iom.log"
    result = runner.invoke(app, ["--log-file", str(log_file), "runs", "--config", str(config.path)])
    assert result.exit_code == 1
    assert "internal error in step list runs" in result.output
    errors = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(e["level"] == "error" and "'list runs'" in e["message"] and "BinderException" in e["message"]
               for e in errors), errors


def test_a_version_8_person_key_registry_keeps_its_keys_through_the_upgrade(tmp_path):
    path = tmp_path / "v8.duckdb"
    open_warehouse(path).close()
    con = duckdb.connect(str(path))  # as version 8 left it: the registry with its primary key
    con.execute("DROP TABLE person_key_registry")
    con.execute("CREATE TABLE person_key_registry (record_id VARCHAR PRIMARY KEY, person_key VARCHAR NOT NULL, "
                "assigned_at TIMESTAMP NOT NULL)")
    con.execute("INSERT INTO person_key_registry VALUES ('police:N1', 'P0123456789AB', TIMESTAMP '2026-10-01 09:00')")
    con.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")
    con.execute("DELETE FROM schema_migrations WHERE name = '0009_person_key_registry_without_index'")
    con.close()

    open_warehouse(path).close()
    assert rows(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
    assert rows(path, "SELECT record_id, person_key FROM person_key_registry") == [("police:N1", "P0123456789AB")]
