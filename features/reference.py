"""The offence reference table: Home Office offence code -> group, flags, gravity, OGRS3 group.

The shipped table is `features/offence_reference.csv` (described in `offence_reference.md`); a
workspace may override it with a file of the same columns. Every value is checked on load so a
bad override fails with the file, line and column named rather than scoring people wrongly.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl

from features.ogrs3 import OFFENCE_TERMS
from pipeline.contract import OFFENCE_CODE_PATTERN, offence_code_form
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_REFERENCE = Path(__file__).with_name("offence_reference.csv")

COLUMNS: tuple[str, ...] = (
    "ho_offence_code",
    "description",
    "offence_group",
    "neighbourhood_crime",
    "violence",
    "gravity",
    "harm_weight_days",
    "ogrs3_group",
)
SCHEMA: dict[str, pl.DataType] = {
    "ho_offence_code": pl.Utf8(),
    "description": pl.Utf8(),
    "offence_group": pl.Utf8(),
    "neighbourhood_crime": pl.Boolean(),
    "violence": pl.Boolean(),
    "gravity": pl.Int64(),
    "harm_weight_days": pl.Float64(),
    "ogrs3_group": pl.Utf8(),
}
_TRUE = ("true", "yes", "y", "1")
_FALSE = ("false", "no", "n", "0")
_GROUP_RE = re.compile(r"^[a-z][a-z0-9_]{0,59}$")


def _fail(path: Path, line: int | None, column: str, message: str) -> ConfigError:
    where = f"{path.name}: line {line}: {column}" if line is not None else f"{path.name}: {column}"
    return ConfigError(
        f"{where}: {message}",
        hint=f"fix the offence reference file {path} (see features/offence_reference.md for the columns)",
    )


def load_offence_reference(path: Path | None = None) -> pl.DataFrame:
    """Read and check the offence reference table; one row per Home Office offence code.

    Raises ConfigError naming the file, the line (header is line 1) and the column at fault.
    """
    path = Path(path) if path is not None else DEFAULT_REFERENCE
    try:
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8")
    except FileNotFoundError:
        raise ConfigError(f"offence reference file not found: {path}") from None
    except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name}: cannot be read as CSV: {str(exc).splitlines()[0]}") from None

    header = [c.strip() for c in raw.columns]
    raw.columns = header
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise _fail(path, None, missing[0], f"required column is missing (columns needed: {', '.join(COLUMNS)})")
    extra = [c for c in header if c not in COLUMNS]
    if extra:
        log.warning("%s: ignoring columns not in the reference table: %s", path.name, ", ".join(extra))

    rows = raw.select(pl.col(c).str.strip_chars() for c in COLUMNS).to_dicts()
    out: dict[str, list] = {c: [] for c in COLUMNS}
    seen: dict[str, int] = {}
    # A reference table is a few hundred rows at most: a plain loop gives the best messages.
    for index, row in enumerate(rows):
        line = index + 2
        code = offence_code_form(row["ho_offence_code"] or "")  # 28/1 is 028/01, as in the extracts
        if not re.match(OFFENCE_CODE_PATTERN, code):
            raise _fail(path, line, "ho_offence_code",
                        f"{code!r} is not an offence code: a Home Office code like '028/01', or a CJS or local "
                        "code of upper-case letters, digits, '/', '.' or '-' with at least one digit")
        if code in seen:
            raise _fail(path, line, "ho_offence_code", f"{code!r} repeats line {seen[code]}; each code once")
        seen[code] = line
        if not row["description"]:
            raise _fail(path, line, "description", "must not be empty")
        group = row["offence_group"] or ""
        if not _GROUP_RE.match(group):
            raise _fail(path, line, "offence_group", f"{group!r} must be lower-case letters, digits and _")
        flags = {}
        for column in ("neighbourhood_crime", "violence"):
            value = (row[column] or "").lower()
            if value not in _TRUE + _FALSE:
                raise _fail(path, line, column, f"{row[column]!r} must be true or false")
            flags[column] = value in _TRUE
        gravity_text = row["gravity"] or ""
        if gravity_text not in ("1", "2", "3", "4"):
            raise _fail(path, line, "gravity", f"{gravity_text!r} must be a whole number from 1 to 4")
        try:
            harm = float(row["harm_weight_days"] or "")
        except ValueError:
            raise _fail(
                path, line, "harm_weight_days", f"{row['harm_weight_days']!r} must be a number of days"
            ) from None
        if not harm >= 0 or harm == float("inf"):
            raise _fail(path, line, "harm_weight_days", f"{harm!r} must be a number of days, 0 or more")
        ogrs3_group = row["ogrs3_group"] or ""
        if ogrs3_group not in OFFENCE_TERMS:
            raise _fail(
                path, line, "ogrs3_group", f"{ogrs3_group!r} is not an OGRS3 group; allowed: {', '.join(OFFENCE_TERMS)}"
            )
        out["ho_offence_code"].append(code)
        out["description"].append(row["description"])
        out["offence_group"].append(group)
        out["neighbourhood_crime"].append(flags["neighbourhood_crime"])
        out["violence"].append(flags["violence"])
        out["gravity"].append(int(gravity_text))
        out["harm_weight_days"].append(harm)
        out["ogrs3_group"].append(ogrs3_group)
    if not out["ho_offence_code"]:
        raise _fail(path, None, "ho_offence_code", "the table has no rows")
    log.info("offence reference %s: %d codes", path.name, len(out["ho_offence_code"]))
    return pl.DataFrame(out, schema=SCHEMA)
