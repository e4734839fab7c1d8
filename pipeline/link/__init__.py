"""Identity linking: one person key across police id, PNC id, CRN and NOMIS number.

- `deterministic`: PNC id, NOMIS number and exact name-and-birth-date links, the people table
  and the facts tables (the steps and their grain are listed there).
- `probabilistic`: Splink on the records no identifier joined (`link_pairs`, with per-field weights).
- `models`: the linkage model's versions in the warehouse and when to estimate again.
- `clusters`: the people from the components and the accepted links; never two PNC ids.
- `persons`: stable person keys, merges and splits.
- `review`: the clerical review queue and the reviewers' decisions; `evaluate`: precision and
  recall against a synthetic truth file.
- `fingerprint`: when to relink (what decides the links, kept in `meta`).
"""

from __future__ import annotations

import logging

import duckdb

from pipeline.config import LinkingConfig
from pipeline.link.deterministic import LinkSummary, build_links, refresh_current_tables
from pipeline.link.fingerprint import (
    FINGERPRINT_KEY,
    LINK_VERSION,
    SUMMARY_KEY,
    current_link,
    link_fingerprint,
    record_link,
)

log = logging.getLogger(__name__)

__all__ = [
    "FINGERPRINT_KEY", "LINK_VERSION", "SUMMARY_KEY", "LinkSummary", "ensure_linked", "link_fingerprint",
    "link_identities", "refresh_current_tables",
]


def link_identities(con: duckdb.DuckDBPyConnection, settings: LinkingConfig | None = None,
                    reestimate: bool = False) -> LinkSummary:
    """Rebuild the links and the facts now, and record what they were built from."""
    summary = build_links(con, settings, reestimate)
    record_link(con, summary, settings)
    return summary


def ensure_linked(con: duckdb.DuckDBPyConnection, settings: LinkingConfig | None = None) -> tuple[LinkSummary, bool]:
    """The current links and whether they were rebuilt now: a relink happens only when the
    loads, the linking settings, the model, the decisions or the linking code changed since the last one."""
    summary = current_link(con, settings)
    if summary is not None:
        log.info("identity links unchanged since the last link: not relinked")
        return summary, False
    return link_identities(con, settings), True
