"""Every table of the warehouse: its DDL, the schema version, and the named migrations.

Tables (grain in brackets):
- `meta` [one setting]: `schema_version`, the last link's fingerprint and summary, the settled cutoff.
- `schema_migrations` [one migration applied to this file]: name, schema version reached, when.
- `loads` [one extract file loaded once]: load id, source, file name, sha256, counts, times.
- `rejects` [one failed check of one row]; `rejected_rows` [one quarantined row, raw text as JSON].
- `src_<extract>` [one loaded row of one load]: typed contract columns plus `_load_id`, `_line`.
- `runs` [one run], `cohort_members` [one person in one cohort of one run], `movement` [one
  change of one person in one cohort since the previous run]; `run_scores_NNNNNN` [one assessed
  person of run NNNNNN], created by the run itself.
- `link_models` [one estimated linkage model], `link_decisions` [one reviewer's decision on a
  pair of records], `person_key_registry` [one record and its person key], `person_key_events`
  [one merge or split of person keys] (`pipeline.link`).
- `run_release_watch`, `run_unknown_codes` [one row of a run's release watch / unknown codes].
- `decision_imports` [one decisions file imported once]: who, when, which file, its sha256;
  `decisions` [one decision row of one imported file]: the person, the decision, its dates and the
  row as read (`pipeline.decisions`).

Built by the code, not declared here: `cur_<extract>` [one current row per natural key] and the
identity tables `person_ids`, `people`, `link_report`, `link_pairs`, `link_conflicts` (`pipeline.link`); the facts tables
`offence_codes`, `offence_facts`, `offence_history`, `custody_facts`, `case_facts`, `event_facts`
(`pipeline.facts`). They are rebuilt from the tables above with every link.

A warehouse records its schema version in `meta`. Opened for writing (`pipeline.warehouse`), an older one is upgraded in
place by the migrations it has not had yet, in order, in one transaction, each recorded in
`schema_migrations`; a newer one (written by newer code) is refused, read or write, because this
code cannot know what its tables mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contract import EXTRACTS, Extract
from pipeline.errors import WarehouseError

# Version 1: meta, loads, rejects, rejected_rows and src_* (the run tables made by the first run).
# Version 2: the run tables always present, and applied migrations recorded in schema_migrations.
# Version 3: a run's release watch, unknown codes and fairness. Version 4: the back-tests.
# Version 5: the panel's decisions. Version 6: the advisory model's trainings. Version 7:
# probabilistic linking (link_models, link_decisions, person_key_registry, person_key_events).
# Version 8: the impact analyses. Version 9: the person-key registry without its index.
SCHEMA_VERSION = "9"
VERSION_KEY = "schema_version"


def q(identifier: str) -> str:
    """Quote an SQL identifier (column names come from user mappings: never trust them)."""
    return '"' + identifier.replace('"', '""') + '"'


def src_table(extract: Extract | str) -> str:
    return f"src_{extract if isinstance(extract, str) else extract.name}"


def cur_table(extract: Extract | str) -> str:
    return f"cur_{extract if isinstance(extract, str) else extract.name}"


META_DDL = "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
MIGRATIONS_DDL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    name VARCHAR PRIMARY KEY, schema_version VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"""

LOAD_DDL = [
    """CREATE TABLE IF NOT EXISTS loads (
        load_id VARCHAR PRIMARY KEY, load_seq BIGINT NOT NULL, source VARCHAR NOT NULL,
        file_name VARCHAR NOT NULL, file_path VARCHAR NOT NULL, sha256 VARCHAR NOT NULL,
        file_bytes BIGINT, file_format VARCHAR, rows_read BIGINT, rows_loaded BIGINT,
        rows_rejected BIGINT, extract_date DATE, started_at TIMESTAMP, finished_at TIMESTAMP, purged_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS rejects (
        load_id VARCHAR NOT NULL, source VARCHAR NOT NULL, file_name VARCHAR NOT NULL, line BIGINT,
        column_name VARCHAR, value VARCHAR, reason_code VARCHAR NOT NULL, message VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS rejected_rows (
        load_id VARCHAR NOT NULL, source VARCHAR NOT NULL, line BIGINT, raw VARCHAR)""",
]

RUN_DDL = [
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, as_of DATE NOT NULL, status VARCHAR NOT NULL,
        started_at TIMESTAMP, finished_at TIMESTAMP, rules_name VARCHAR, rules_version VARCHAR,
        rules_sha256 VARCHAR, code_version VARCHAR, output_dir VARCHAR, manifest VARCHAR, purged_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS cohort_members (
        run_id VARCHAR NOT NULL, cohort VARCHAR NOT NULL, person_key VARCHAR NOT NULL, area VARCHAR,
        rank BIGINT, score BIGINT, cohort_type VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS movement (
        run_id VARCHAR NOT NULL, cohort VARCHAR NOT NULL, person_key VARCHAR NOT NULL, status VARCHAR NOT NULL,
        reason VARCHAR, previous_run_id VARCHAR)""",
]


# What a run showed besides its scores, kept so that `iom report` rebuilds the pack from the warehouse.
RUN_EXTRAS_DDL = [
    """CREATE TABLE IF NOT EXISTS run_release_watch (
        run_id VARCHAR NOT NULL, person_key VARCHAR NOT NULL, area VARCHAR, custody_type_at_d VARCHAR,
        expected_release_date DATE, days_until_release BIGINT, score BIGINT, score_if_released BIGINT,
        reasons_if_released VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS run_unknown_codes (run_id VARCHAR NOT NULL, code VARCHAR, count BIGINT)""",
    """CREATE TABLE IF NOT EXISTS run_fairness (
        run_id VARCHAR NOT NULL, dimension VARCHAR, "group" VARCHAR, metric VARCHAR, people BIGINT, value DOUBLE,
        reference_group VARCHAR, reference_value DOUBLE, ratio DOUBLE, flagged BOOLEAN)""",
]
# The back-tests: one row per `iom backtest`, and its metrics per rule set, scorer and as-of date.
BACKTEST_DDL = [
    """CREATE TABLE IF NOT EXISTS backtests (
        backtest_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, created_at TIMESTAMP, from_date DATE,
        to_date DATE, every VARCHAR, horizon_days INTEGER, last_covered DATE, rule_sets VARCHAR,
        output_dir VARCHAR, summary VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS backtest_metrics (
        backtest_id VARCHAR NOT NULL, rule_set VARCHAR NOT NULL, rules_version VARCHAR, rules_sha256 VARCHAR,
        as_of DATE, scorer VARCHAR NOT NULL, people BIGINT, reoffenders BIGINT, base_rate DOUBLE, auc DOUBLE,
        auc_low DOUBLE, auc_high DOUBLE, average_precision DOUBLE, auc_neighbourhood DOUBLE, auc_violence DOUBLE,
        cohort_size BIGINT, precision_at_cohort DOUBLE, capture_offences DOUBLE, capture_neighbourhood DOUBLE)""",
]
# The panel's decisions (`pipeline.decisions`): one row per imported file, one per decision row of
# a file. Never purged with a run: they are the audit trail of what the panel decided.
DECISIONS_DDL = [
    """CREATE TABLE IF NOT EXISTS decision_imports (
        import_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, file_name VARCHAR NOT NULL, file_path VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL, file_format VARCHAR NOT NULL, sheet VARCHAR, run_id VARCHAR,
        imported_by VARCHAR NOT NULL, host VARCHAR, imported_at TIMESTAMP NOT NULL, rows_read BIGINT NOT NULL,
        decisions BIGINT NOT NULL, blank_rows BIGINT NOT NULL, skipped_rows BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS decisions (
        import_id VARCHAR NOT NULL, row_number BIGINT NOT NULL, person_key VARCHAR NOT NULL, named_by VARCHAR NOT NULL,
        decision VARCHAR NOT NULL, cohort_type VARCHAR, reason VARCHAR, decided_by VARCHAR,
        meeting_date DATE NOT NULL, review_date DATE NOT NULL, management_end DATE, run_id VARCHAR,
        raw VARCHAR NOT NULL)""",
]
# The advisory model's trainings (`iom train`): one row each, beside its MLflow run.
MODEL_DDL = [
    """CREATE TABLE IF NOT EXISTS model_trainings (
        train_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, created_at TIMESTAMP, from_date DATE, to_date DATE,
        horizon_days INTEGER, target VARCHAR, kind VARCHAR, model_name VARCHAR, model_version VARCHAR,
        mlflow_run_id VARCHAR, artefact_sha256 VARCHAR, test_auc DOUBLE, rules_test_auc DOUBLE,
        champion BOOLEAN, output_dir VARCHAR, summary VARCHAR)""",
]
# The impact analyses (`iom impact`): one row each, its summary as JSON.
IMPACT_DDL = [
    """CREATE TABLE IF NOT EXISTS impacts (
        impact_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, created_at TIMESTAMP, from_date DATE, to_date DATE,
        last_covered DATE, treated_people BIGINT, effect DOUBLE, effect_low DOUBLE, effect_high DOUBLE,
        naive_effect DOUBLE, did_effect DOUBLE, net_value DOUBLE, break_even_effect DOUBLE, output_dir VARCHAR,
        summary VARCHAR)""",
]
PER_RUN_TABLES = (  # purged with the run
    "cohort_members", "movement", "run_release_watch", "run_unknown_codes", "run_fairness")

REGISTRY_DDL = """CREATE TABLE IF NOT EXISTS person_key_registry (
        record_id VARCHAR NOT NULL, person_key VARCHAR NOT NULL, assigned_at TIMESTAMP NOT NULL)"""
LINKING_DDL = [
    # [one estimated linkage model]: the Splink model as JSON, its sha256, why it was estimated
    """CREATE TABLE IF NOT EXISTS link_models (
        version INTEGER PRIMARY KEY, sha256 VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, reason VARCHAR NOT NULL,
        records BIGINT, labelled_pairs BIGINT, m_from VARCHAR, splink_version VARCHAR, model VARCHAR NOT NULL)""",
    # [one reviewer's decision on one pair of records]: the audit trail; the latest per pair applies
    """CREATE TABLE IF NOT EXISTS link_decisions (
        decision_id BIGINT PRIMARY KEY, decided_at TIMESTAMP NOT NULL, record_id_l VARCHAR NOT NULL,
        record_id_r VARCHAR NOT NULL, decision VARCHAR NOT NULL, decided_by VARCHAR NOT NULL, reason VARCHAR,
        match_probability DOUBLE, source_file VARCHAR, file_sha256 VARCHAR, file_line BIGINT)""",
    # [one source record]: the person key it was last given, so that a person keeps their key.
    # No primary-key index: the link writes one row per record it rekeys (pipeline.link.persons),
    # and the index cost more than a second at a first link of a million records.
    REGISTRY_DDL,
    # [one merge or split of person keys at one link]
    """CREATE TABLE IF NOT EXISTS person_key_events (
        event_at TIMESTAMP NOT NULL, event VARCHAR NOT NULL, person_key VARCHAR NOT NULL, other_key VARCHAR NOT NULL,
        records BIGINT)""",
]


# Text of identifiers and names is stored with FSST only: DuckDB's automatic choice first tries a
# dictionary, which finds nothing in nearly unique values, and took half of their write time for
# a file the same size (measured in docs/performance.md). Coded columns keep the automatic choice.
# Files of storage version 1.3 or later (an encrypted warehouse) have FSST only inside DICT_FSST,
# whose automatic choice is as fast: they take no clause (`pipeline.warehouse.text_compression`).
FSST = "USING COMPRESSION fsst"


def src_ddl(extract: Extract, compression: str = "") -> str:
    """`compression`: the clause for identifiers and names (`pipeline.warehouse.text_compression`)."""
    cols = ", ".join(f"{q(c.name)} {c.kind.sql_type}{' ' + compression if compression and c.nearly_unique else ''}"
                     for c in extract.columns)
    return f"CREATE TABLE IF NOT EXISTS {q(src_table(extract))} (_load_id VARCHAR NOT NULL, _line BIGINT, {cols})"


def table_ddl(compression: str = "") -> list[tuple[str, str]]:
    """(step name, DDL) of every declared table at SCHEMA_VERSION, in creation order."""
    return [
        ("meta", META_DDL),
        ("schema_migrations", MIGRATIONS_DDL),
        *((f"table {ddl.split()[5]}", ddl) for ddl in LOAD_DDL),
        *((f"table {src_table(e)}", src_ddl(e, compression)) for e in EXTRACTS.values()),
        *((f"table {ddl.split()[5]}", ddl) for ddl in RUN_DDL),
        *((f"table {ddl.split()[5]}", ddl) for ddl in RUN_EXTRAS_DDL),
        *((f"table {ddl.split()[5]}", ddl) for ddl in BACKTEST_DDL),
        *((f"table {ddl.split()[5]}", ddl) for ddl in DECISIONS_DDL),
        *((f"table {ddl.split()[5]}", ddl) for ddl in MODEL_DDL),
        *((f"table {ddl.split()[5]}", ddl) for ddl in LINKING_DDL),
        *((f"table {ddl.split()[5]}", ddl) for ddl in IMPACT_DDL),
    ]


# --- migrations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One named, ordered change that brings a warehouse of `from_version` to `to_version`.

    Its statements run in order, in the upgrade's transaction (`pipeline.warehouse.ensure_schema`)."""

    name: str
    from_version: str
    to_version: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    # Version 1 made the run tables at the first run; a warehouse that never ran had none.
    Migration("0002_run_tables_and_migration_log", "1", "2", (MIGRATIONS_DDL, *RUN_DDL)),
    Migration("0003_run_release_watch_unknown_codes_fairness", "2", "3", tuple(RUN_EXTRAS_DDL)),
    Migration("0004_backtests", "3", "4", tuple(BACKTEST_DDL)),
    Migration("0005_panel_decisions", "4", "5", tuple(DECISIONS_DDL)),
    Migration("0006_model_trainings", "5", "6", tuple(MODEL_DDL)),
    # Probabilistic linking: the model, the reviewers' link decisions and the person-key registry.
    Migration("0007_probabilistic_linking", "6", "7", tuple(LINKING_DDL)),
    Migration("0008_impacts", "7", "8", tuple(IMPACT_DDL)),
    # The registry loses its primary-key index (kept unique by the link that writes it).
    Migration("0009_person_key_registry_without_index", "8", "9", (
        "ALTER TABLE person_key_registry RENAME TO person_key_registry_indexed",
        REGISTRY_DDL,
        "INSERT INTO person_key_registry SELECT record_id, person_key, assigned_at FROM person_key_registry_indexed",
        "DROP TABLE person_key_registry_indexed",
    )),
)


def version_number(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        raise WarehouseError(
            f"the warehouse records schema version {version!r}, which this code cannot read",
            hint="the file may be damaged or written by another program",
        ) from None


def pending_migrations(version: str) -> tuple[Migration, ...]:
    """The migrations from `version` up to SCHEMA_VERSION, in order; each starts where the last ended."""
    pending, at = [], version
    for migration in MIGRATIONS:
        if version_number(migration.to_version) <= version_number(at):
            continue
        if migration.from_version != at:
            raise WarehouseError(
                f"no migration from schema version {at} (the next one, {migration.name}, starts at "
                f"{migration.from_version})",
                hint="report this: the migrations of this code do not chain",
            )
        pending.append(migration)
        at = migration.to_version
    if at != SCHEMA_VERSION:
        raise WarehouseError(f"no migration brings schema version {version} to {SCHEMA_VERSION}",
                             hint="report this: the migrations of this code do not chain")
    return tuple(pending)


def scores_table(run_seq: int) -> str:
    """The table of one run's scored people [one assessed person], named by the run's number."""
    return f"run_scores_{run_seq:06d}"
