"""When to relink: a fingerprint of what decides the links, kept with the last link in `meta`.

What decides the links is the loads in the warehouse (a new file, a purge), the SQL of the link
and facts steps as rendered, the parameters bound to them, the DuckDB version (its functions
normalise the identifiers), the `[linking]` settings (thresholds), the latest linkage model's
sha256, the reviewers' decisions, and LINK_VERSION, which covers the Python between the steps
(the graph search, the collision fallbacks, the split of clusters in conflict). A docstring or comment edit changes none of these, so it
costs no relink (about 10 s a million people); a change to a step's SQL or to LINK_VERSION does.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict

import duckdb

from pipeline import contract, facts
from pipeline.config import LinkingConfig
from pipeline.link.deterministic import LinkSummary, rendered_steps
from pipeline.warehouse import run_sql, table_exists

log = logging.getLogger(__name__)

# Bump when Python code in `pipeline.link` or `pipeline.facts` changes who is linked to whom or what
# the facts hold without changing any step's SQL (a change to the SQL is seen by itself).
LINK_VERSION = "3"
FINGERPRINT_KEY = "link_fingerprint"
SUMMARY_KEY = "link_summary"


def link_fingerprint(con: duckdb.DuckDBPyConnection, settings: LinkingConfig | None = None) -> str:
    """sha256 of everything that decides the links and the facts built on them."""
    settings = settings or LinkingConfig()
    loads = run_sql(con, "fingerprint: loads",
                    "SELECT load_id, sha256, purged_at FROM loads ORDER BY load_seq, load_id").fetchall()
    model = run_sql(con, "fingerprint: model",
                    "SELECT max(version), arg_max(sha256, version) FROM link_models").fetchone()
    decisions = run_sql(con, "fingerprint: decisions",
                        "SELECT count(*), max(decision_id) FROM link_decisions").fetchone()
    decided_by = {
        "linking": settings.model_dump(),
        "model": list(model),
        "decisions": list(decisions),
        "link_version": LINK_VERSION,
        "duckdb": duckdb.__version__,
        "link_steps": rendered_steps(),
        "fact_steps": facts.rendered_steps(),
        "fact_parameters": {"outcomes": list(contract.OUTCOMES), "history_window_months": facts.HISTORY_WINDOW_MONTHS},
        "loads": loads,
    }
    return hashlib.sha256(json.dumps(decided_by, default=str, sort_keys=True).encode()).hexdigest()


def record_link(con: duckdb.DuckDBPyConnection, summary: LinkSummary, settings: LinkingConfig | None = None) -> None:
    """Keep the fingerprint and summary of the link just built (in the link's transaction)."""
    for key, value in ((FINGERPRINT_KEY, link_fingerprint(con, settings)), (SUMMARY_KEY, json.dumps(asdict(summary)))):
        run_sql(con, f"record {key}", "INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


def current_link(con: duckdb.DuckDBPyConnection, settings: LinkingConfig | None = None) -> LinkSummary | None:
    """The summary of the stored link if nothing that decides it changed since; else None."""
    stored = dict(run_sql(con, "read last link", "SELECT key, value FROM meta WHERE key IN (?, ?)",
                          [FINGERPRINT_KEY, SUMMARY_KEY]).fetchall())
    if (stored.get(FINGERPRINT_KEY) == link_fingerprint(con, settings) and SUMMARY_KEY in stored
            and all(table_exists(con, t) for t in ("people", "person_ids", "link_pairs", *facts.FACT_TABLES))):
        return LinkSummary(**json.loads(stored[SUMMARY_KEY]))
    return None
