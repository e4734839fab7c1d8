"""Packed integer keys: several small fields in one BIGINT, so that one max() or one integer
sort does the work of a multi-column arg_max or sort.

Every key's layout lives here, with its bit budgets, its SQL encoding (DuckDB, in the facts
tables and the features query) and its Polars encoding and decoding (features, rule selection).
A layout lists its fields most significant first; a field of `bits` bits holds 0 .. 2**bits - 1.
Values that do not fit are refused with KeyBudgetError (`check`), never clamped: a clamped date
or code would silently reorder ties.

Layouts:

- `SANCTION_KEY`: outcome day, offence day, code tie. The greatest is the current sanction: the
  latest outcome, then the latest offence, then the lowest offence code.
- `SERIOUS_KEY`: gravity, offence day, code tie. The greatest is the most serious offence: the
  highest gravity, then the most recent, then the lowest offence code.
- `SPELL_ORDER`, `PERIOD_ORDER`: a start day, then a hash of the source id (ties on one day).
- `ASSESSMENT_ORDER`: the assessment day, the period's start day, a hash of the CRN.
- `RANK_KEY`: score (descending), offences in 12 months (descending), days since the last
  offence (ascending, the top value for "no offence"); `rules.select` sorts on it when the
  values fit, else on the plain columns.

Days count from DAY_ZERO (19 bits: 1800-01-01 to 3235-06-11), a missing date as day 0. A code tie
is `CODE_LIMIT - 1 - code_number`, larger for lower codes (its own inverse).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from pipeline.errors import IomError

DAY_ZERO = date(1800, 1, 1)
DAY_BITS = 19
CODE_BITS = 22
DAY_LIMIT = 2**DAY_BITS
CODE_LIMIT = 2**CODE_BITS
LAST_DAY = DAY_ZERO + timedelta(days=DAY_LIMIT - 1)
_KEY_BITS = 63  # a signed BIGINT / Int64 holds 63 bits without its sign


class KeyBudgetError(IomError):
    """A value does not fit its field of a packed key (a date before 1800, millions of offence
    codes): nothing is built rather than ties silently reordered."""

    exit_code = 1
    label = "packed key budget exceeded"


@dataclass(frozen=True)
class KeyLayout:
    name: str
    fields: tuple[tuple[str, int], ...]  # (field, bits), most significant first

    def __post_init__(self) -> None:
        if self.bits > _KEY_BITS:
            raise ValueError(f"{self.name}: {self.bits} bits do not fit a BIGINT ({_KEY_BITS})")

    @property
    def bits(self) -> int:
        return sum(bits for _, bits in self.fields)

    @property
    def sentinel(self) -> int:
        """A value above every packed key of this layout."""
        return 2**self.bits

    def _bits(self, field: str) -> int:
        for name, bits in self.fields:
            if name == field:
                return bits
        raise KeyError(f"{self.name} has no field {field!r}")

    def shift(self, field: str) -> int:
        """How many bits lie below the field."""
        self._bits(field)  # an unknown field is refused
        names = [name for name, _ in self.fields]
        return sum(bits for _, bits in self.fields[names.index(field) + 1:])

    def limit(self, field: str) -> int:
        return 2 ** self._bits(field)

    def fits(self, field: str, low: int, high: int) -> bool:
        return low >= 0 and high < self.limit(field)

    def check(self, field: str, low: int | None, high: int | None, what: str) -> None:
        """Raise KeyBudgetError unless every value in `low .. high` fits `field` (None: no values)."""
        if low is None or high is None or self.fits(field, low, high):
            return
        raise KeyBudgetError(
            f"{what} do not fit the {self._bits(field)}-bit {field} field of {self.name} "
            f"(allowed 0 to {self.limit(field) - 1}, found {low} to {high})",
            hint="such values are not plausible in an extract: check the source, or widen the budget in pipeline/keys.py",
        )

    # --- encoding: each part is a field's value; a field left out counts as 0 ---------------------

    def sql(self, **parts: str) -> str:
        """The key as a DuckDB expression of the parts (SQL expressions)."""
        self._known(parts)
        return " + ".join(
            f"({parts[name]}) * {2 ** self.shift(name)}" if self.shift(name) else f"({parts[name]})"
            for name, _ in self.fields if name in parts
        )

    def pack(self, **parts: pl.Expr) -> pl.Expr:
        """The key as a Polars expression of the parts."""
        self._known(parts)
        terms = [parts[name] * 2 ** self.shift(name) if self.shift(name) else parts[name]
                 for name, _ in self.fields if name in parts]
        key = terms[0]
        for term in terms[1:]:
            key = key + term
        return key

    def descending(self, field: str, value):
        """A field's value stored reversed (largest for the smallest value), so that a max() or
        an ascending sort prefers small values; applied to a stored value it gives the value back."""
        return self.limit(field) - 1 - value

    # --- decoding -----------------------------------------------------------------------------

    def unpack(self, key: pl.Expr, field: str) -> pl.Expr:
        """A field's stored value out of a key (Polars)."""
        shifted = key // 2 ** self.shift(field) if self.shift(field) else key
        return shifted if field == self.fields[0][0] else shifted % self.limit(field)

    def unpack_sql(self, key: str, field: str) -> str:
        """A field's stored value out of a key (DuckDB)."""
        shifted = f"{key} // {2 ** self.shift(field)}" if self.shift(field) else key
        return f"({shifted})" if field == self.fields[0][0] else f"(({shifted}) % {self.limit(field)})"

    def _known(self, parts: dict) -> None:
        unknown = set(parts) - {name for name, _ in self.fields}
        if unknown:
            raise KeyError(f"{self.name} has no field {', '.join(sorted(unknown))}")


SANCTION_KEY = KeyLayout("sanction_key", (("outcome_day", DAY_BITS), ("offence_day", DAY_BITS), ("code_tie", CODE_BITS)))
SERIOUS_KEY = KeyLayout("serious_key", (("gravity", 22), ("offence_day", DAY_BITS), ("code_tie", CODE_BITS)))
SPELL_ORDER = KeyLayout("spell_order", (("reception_day", DAY_BITS), ("spell_hash", 32)))
PERIOD_ORDER = KeyLayout("period_order", (("start_day", DAY_BITS), ("crn_hash", 32)))
ASSESSMENT_ORDER = KeyLayout("assessment_order", (("assessed_day", DAY_BITS), ("start_day", DAY_BITS),
                                                  ("crn_hash", CODE_BITS)))
RANK_KEY = KeyLayout("rank_key", (("score", 21), ("offences_12m", 20), ("days_since_last_offence", 20)))
LAYOUTS = (SANCTION_KEY, SERIOUS_KEY, SPELL_ORDER, PERIOD_ORDER, ASSESSMENT_ORDER, RANK_KEY)


# --- the shared fields ------------------------------------------------------------------------------


def day_number_sql(column: str) -> str:
    """Days since DAY_ZERO (0 for a missing date); `check_days` has refused dates out of budget."""
    return f"coalesce({column} - DATE '{DAY_ZERO.isoformat()}', 0)"


def day_date_sql(day_number: str) -> str:
    """A day number back to its date (DuckDB)."""
    return f"(DATE '{DAY_ZERO.isoformat()}' + CAST({day_number} AS INTEGER))"


def day_number(day: date) -> int:
    return (day - DAY_ZERO).days


def check_days(what: str, earliest: date | None, latest: date | None) -> None:
    """Refuse dates a day field cannot hold (KeyBudgetError); None: no dates."""
    if earliest is None or latest is None:
        return
    if not (earliest >= DAY_ZERO and latest <= LAST_DAY):
        raise KeyBudgetError(
            f"{what}: dates outside {DAY_ZERO} .. {LAST_DAY} do not fit the {DAY_BITS}-bit day fields of the "
            "packed keys",
            hint="such dates are not plausible in an extract: correct them at the source",
        )


def code_tie_sql(code_number: str) -> str:
    """Larger for lower codes, so that a max() breaks ties towards the lowest code."""
    return f"({CODE_LIMIT - 1} - {code_number})"


def code_tie(code_number: pl.Expr) -> pl.Expr:
    """`code_tie_sql` in Polars."""
    return SANCTION_KEY.descending("code_tie", code_number)


def code_in_key(key: pl.Expr) -> pl.Expr:
    """The code number back out of a SANCTION_KEY or SERIOUS_KEY (both end in the code tie)."""
    return code_tie(SANCTION_KEY.unpack(key, "code_tie"))


def hash_sql(column: str, bits: int) -> str:
    """A hash of a source id in `bits` bits: the tie-break within one day."""
    return f"CAST(hash({column}) % {2 ** bits} AS BIGINT)"
