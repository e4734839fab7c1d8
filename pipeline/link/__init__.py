"""Identity linking: one person key across police id, PNC id, CRN and NOMIS number.

- `deterministic`: PNC id, NOMIS number and exact name-and-birth-date links, the people table
  and the facts tables (the steps and their grain are listed there).
- `fingerprint`: when to relink (what decides the links, kept in `meta`).

Probabilistic linking (Splink) and its clerical review queue will sit beside these, as
`probabilistic` and `review`.
"""

from __future__ import annotations

import logging

import duckdb

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


def link_identities(con: duckdb.DuckDBPyConnection) -> LinkSummary:
    """Rebuild the links and the facts now, and record what they were built from."""
    summary = build_links(con)
    record_link(con, summary)
    return summary


def ensure_linked(con: duckdb.DuckDBPyConnection) -> tuple[LinkSummary, bool]:
    """The current links and whether they were rebuilt now: a relink (about 10 s a million
    people) happens only when the loads or what decides the links changed since the last one."""
    summary = current_link(con)
    if summary is not None:
        log.info("identity links unchanged since the last link: not relinked")
        return summary, False
    return link_identities(con), True
