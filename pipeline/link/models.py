"""The linkage model in the warehouse: versions, hashes, and when to estimate again.

`link_models` [one estimated model] keeps each Splink model as JSON with its version (1, 2, ...),
the sha256 of that JSON, when and why it was estimated, on how many records, and where its m
values came from. A link uses the latest version. A new version is estimated only:
- on request (`iom links estimate`), or
- when there is none yet, or
- when the number of records differs by more than `reestimate_change_percent` from the records it
  was estimated on, or
- when the linking code's comparison levels are no longer the stored model's (a new level).
Below `MIN_ESTIMATION_RECORDS` records nothing is estimated: the model's priors are used (a
handful of records say nothing about m and u), stored as a version like any other.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from pipeline.config import LinkingConfig
from pipeline.warehouse import run_sql

log = logging.getLogger(__name__)

MIN_ESTIMATION_RECORDS = 1_000


@dataclass(frozen=True)
class StoredModel:
    version: int
    sha256: str
    created_at: datetime
    reason: str
    records: int
    labelled_pairs: int
    m_from: str
    model: dict


def model_sha256(model: dict) -> str:
    return hashlib.sha256(json.dumps(model, sort_keys=True, default=str).encode()).hexdigest()


def latest_model(con: duckdb.DuckDBPyConnection) -> StoredModel | None:
    row = run_sql(con, "link models: latest",
                  "SELECT version, sha256, created_at, reason, records, labelled_pairs, m_from, model "
                  "FROM link_models ORDER BY version DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return StoredModel(*row[:7], json.loads(row[7]))


def list_models(con: duckdb.DuckDBPyConnection) -> list[dict]:
    cursor = run_sql(con, "link models: list",
                     "SELECT version, sha256, created_at, reason, records, labelled_pairs, m_from FROM link_models "
                     "ORDER BY version")
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def estimate_reason(current: StoredModel | None, records: int, settings: LinkingConfig, requested: bool,
                    template: dict | None = None) -> str | None:
    """Why a new model is needed now, or None to keep the current one; `template` is the model the
    linking code would start from (its comparison levels)."""
    if requested:
        return "requested"
    if current is None:
        return "first link"
    if template is not None and _levels(current.model) != _levels(template):
        return "the model's comparison levels changed with the linking code"
    if current.records and abs(records - current.records) * 100.0 / current.records > settings.reestimate_change_percent:
        return (f"records changed from {current.records:,} to {records:,} "
                f"(more than {settings.reestimate_change_percent:g}%)")
    return None


def _levels(model: dict) -> list[tuple[str, str]]:
    return [(c["output_column_name"], lv["label_for_charts"]) for c in model["comparisons"]
            for lv in c["comparison_levels"]]


def store_model(con: duckdb.DuckDBPyConnection, model: dict, reason: str, records: int, labelled_pairs: int,
                m_from: str) -> StoredModel:
    version = run_sql(con, "link models: next version",
                      "SELECT coalesce(max(version), 0) + 1 FROM link_models").fetchone()[0]
    sha = model_sha256(model)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        splink_version = importlib.metadata.version("splink")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        splink_version = "unknown"
    run_sql(con, "link models: store",
            "INSERT INTO link_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [version, sha, now, reason, records, labelled_pairs, m_from, splink_version,
             json.dumps(model, sort_keys=True, default=str)])
    log.info("linkage model version %d stored (%s; m from %s)", version, reason, m_from)
    return StoredModel(version, sha, now, reason, records, labelled_pairs, m_from, model)
