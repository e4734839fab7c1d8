"""Stable pseudonyms for packs sent by email: keyed HMAC-SHA256 of names and identifiers.

With `pseudonymise = true` in `[workspace]`, every output of a run (the CSVs, the Parquet file,
pack.html and pack.xlsx) carries pseudonyms instead of person keys, police ids, PNC ids, CRNs,
NOMIS numbers and names, and no date of birth. The key comes from the environment variable
named by `pseudonym_key_env` (default `IOM_PSEUDONYM_KEY`), never from iom.toml, so the same
person has the same pseudonym every month while the key is unchanged, and nobody without the
key can recompute them from a list of identifiers (a plain hash could be reversed that way: the
identifier formats are short and public).

The analyst keeps the lookup: `OUTPUTS/pseudonyms/RUN_ID.csv` (kind, pseudonym, value), owner-
only, outside the run folder so that the run folder can be sent as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.errors import ConfigError

# column -> (kind used in the HMAC message, prefix of the pseudonym)
ID_COLUMNS: dict[str, tuple[str, str]] = {
    "person_key": ("person_key", "K-"),
    "police_person_id": ("police_person_id", "POL-"),
    "pnc_id": ("pnc_id", "PNC-"),
    "crn": ("crn", "CRN-"),
    "nomis_id": ("nomis_id", "NOM-"),
}
NAME_COLUMNS = ("surname", "forenames", "name")
DROPPED_COLUMNS = ("date_of_birth",)
DIGITS = 10  # hex digits of the HMAC kept: 40 bits, no collision to expect below a million people


def pseudonym(key: bytes, kind: str, value: str, prefix: str) -> str:
    digest = hmac.digest(key, f"{kind}:{value}".encode(), hashlib.sha256).hex().upper()
    return prefix + digest[:DIGITS]


@dataclass
class Pseudonymiser:
    key: bytes
    lookup: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, pseudonym) -> value

    @classmethod
    def from_env(cls, variable: str, environ=None) -> Pseudonymiser:
        env = os.environ if environ is None else environ
        key = env.get(variable)
        if not key:
            raise ConfigError(
                f"[workspace] pseudonymise = true but environment variable {variable} is not set",
                hint=f"export {variable}=... with a long random key (keep it: the same key gives the same "
                     f"pseudonyms every month), or set pseudonymise = false",
            )
        return cls(key.encode())

    def _map(self, kind: str, prefix: str, values: pl.Series) -> dict[str, str]:
        # One HMAC per distinct value, not per row.
        mapping = {v: pseudonym(self.key, kind, v, prefix) for v in values.drop_nulls().unique().to_list()}
        self.lookup.update({(kind, p): v for v, p in mapping.items()})
        return mapping

    def frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Identifiers and names replaced, dates of birth dropped; other columns as they are."""
        exprs = []
        for column, (kind, prefix) in ID_COLUMNS.items():
            if column in frame.columns:
                mapping = self._map(kind, prefix, frame.get_column(column).cast(pl.Utf8))
                exprs.append(pl.col(column).cast(pl.Utf8).replace_strict(mapping, default=None, return_dtype=pl.Utf8))
        if "person_key" in frame.columns:
            keys = frame.get_column("person_key").cast(pl.Utf8)
            names = self._map("name", "Person ", keys)
            for column in NAME_COLUMNS:
                if column in frame.columns:
                    # The name of a person is one pseudonym, keyed on the person, shown once.
                    value = pl.col("person_key").replace_strict(names, default=None, return_dtype=pl.Utf8)
                    exprs.append((value if column != "forenames" else pl.lit("", dtype=pl.Utf8)).alias(column))
        out = frame.with_columns(exprs) if exprs else frame
        return out.drop([c for c in DROPPED_COLUMNS if c in out.columns])

    def value(self, column: str, value: str | None) -> str | None:
        if value is None or column not in ID_COLUMNS:
            return value
        kind, prefix = ID_COLUMNS[column]
        result = pseudonym(self.key, kind, value, prefix)
        self.lookup[(kind, result)] = value
        return result

    def write_lookup(self, path: Path) -> Path:
        """The analyst's lookup from pseudonym back to value; owner-only, folder owner-only."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        rows = sorted(self.lookup.items())
        pl.DataFrame(
            {"kind": [k for (k, _), _ in rows], "pseudonym": [p for (_, p), _ in rows], "value": [v for _, v in rows]},
            schema={"kind": pl.Utf8, "pseudonym": pl.Utf8, "value": pl.Utf8},
        ).write_csv(path)
        path.chmod(0o600)
        return path


def for_config(config) -> Pseudonymiser | None:
    workspace = config.workspace
    if not getattr(workspace, "pseudonymise", False):
        return None
    return Pseudonymiser.from_env(workspace.pseudonym_key_env)


def lookup_path(config, run_id: str) -> Path:
    return config.pseudonym_lookup_path(run_id)
