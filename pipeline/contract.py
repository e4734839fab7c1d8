"""The extract contract: the canonical columns of the five extracts.

One definition serves everything that needs to know the shape of an extract: the validation
schemas (`pipeline.validate`), the warehouse tables (`pipeline.schema`), the synthetic
generator, the `iom init` template and `docs/extract-contract.md`. Changing a column here
changes all of them together. The reason codes of a quarantined row (`RejectReason`) are part
of the contract too: analysts filter `iom rejects` on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum


class Kind(StrEnum):
    TEXT = "text"
    DATE = "date"
    INTEGER = "integer"
    DECIMAL = "decimal"

    @property
    def sql_type(self) -> str:
        """The warehouse column type of a value of this kind."""
        return {"text": "VARCHAR", "date": "DATE", "integer": "BIGINT", "decimal": "DOUBLE"}[self.value]


class RejectReason(StrEnum):
    """Why a row was quarantined: the code stored in `rejects.reason_code`, and its message
    template ({column} and {value} are filled in). Listed in docs/extract-contract.md in this order."""

    template: str

    def __new__(cls, code: str, template: str) -> RejectReason:
        member = str.__new__(cls, code)
        member._value_ = code
        member.template = template
        return member

    MISSING_REQUIRED = "missing_required", "{column} is required but empty"
    TOO_LONG = "too_long", "{column} is longer than allowed"
    NOT_ALLOWED_VALUE = "not_allowed_value", "{column} value '{value}' is not one of the allowed values"
    BAD_FORMAT = "bad_format", "{column} value '{value}' is not in the expected format"
    BAD_CHECK_LETTER = "bad_check_letter", "{column} value '{value}' has the wrong PNC check letter"
    UNPARSEABLE_DATE = "unparseable_date", "{column} value '{value}' is not a date in the configured formats"
    FUTURE_DATE = "future_date", "{column} value '{value}' is after the extract date"
    DATE_TOO_EARLY = "date_too_early", "{column} value '{value}' is before 1900-01-01, the earliest date accepted"
    AGE_OUT_OF_RANGE = (
        "age_out_of_range", "{column} value '{value}' gives an age outside 10 to 100 on the extract date"
    )
    NOT_A_NUMBER = "not_a_number", "{column} value '{value}' is not a number"
    OUT_OF_RANGE = "out_of_range", "{column} value '{value}' is outside the allowed range"
    DATE_ORDER = "date_order", "{column} value '{value}' is before the date it must follow"
    DUPLICATE_ID = "duplicate_id", "{column} value '{value}' repeats a key already seen earlier in the file"
    MALFORMED_ROW = "malformed_row", "the row could not be parsed: {value}"
    REPEATED_HEADER = "repeated_header", "the row repeats the header line"


# Identifier patterns: CJS data standards as used in MoJ public code (see docs/extract-contract.md).
PNC_PATTERN = r"^[0-9]{0,2}([0-9]{2})/([0-9]{1,7})([A-Z])$"
CRO_PATTERN = r"^(([0-9]{1,6})/([0-9]{2})([A-Z])|SF([0-9]{2})/([0-9]{1,6})([A-Z]))$"
NOMIS_PATTERN = r"^[A-Z][0-9]{4}[A-Z]{2}$"
CRN_PATTERN = r"^[A-Z][0-9]{6}$"
LOCAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$"
NAME_COLUMNS = ("surname", "forenames")
HO_CODE_PATTERN = r"^[0-9]{3}[A-Z]?/[0-9]{2}$"
# What an offence code may be: a Home Office class/subclass (028/01, the shipped reference's
# codes), a CJS offence code (TH68010) or a force's or another jurisdiction's own code, which the
# workspace's offence reference maps to a group (an unmapped code scores with the rule set's
# `[unknown_offence]` defaults and is listed in the pack). Rejecting every non-Home Office code
# lost all the offences of an extract keyed in local codes.
# At least one digit: a description keyed in the code column ("burglary") is still refused.
OFFENCE_CODE_PATTERN = r"^([0-9]|[A-Z][A-Z0-9/.\-]*[0-9])[A-Z0-9/.\-]*$"
# A Home Office code keyed without its zeros or with another separator (28/1, 028-01, 028.01).
HO_CODE_VARIANT = r"^0*([0-9]{1,3})([A-Z]?)[/.\-]([0-9]{1,2})$"


def offence_code_form(code: str) -> str:
    """The stored form of an offence code (for one value, as a reference file's): upper case, and
    a Home Office code with its zeros and '/'. `validate.normalise` does the same to a column."""
    code = code.strip().upper()
    parts = re.match(HO_CODE_VARIANT, code)
    return f"{int(parts[1]):03d}{parts[2]}/{int(parts[3]):02d}" if parts else code
AREA_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 &'\-]{0,59}$"

# No date in a criminal-justice extract precedes this: an earlier one is a keying error (0221 for
# 2021), and the packed keys (pipeline/keys.py) count days from 1800, so it must be quarantined.
EARLIEST_DATE = date(1900, 1, 1)

SEX_CODES = ("M", "F", "X", "U")
# Words for sex that every system uses, read without any configuration (upper-cased first).
SEX_WORDS = {"MALE": "M", "FEMALE": "F", "MAN": "M", "WOMAN": "F", "UNKNOWN": "U", "NOT KNOWN": "U",
             "NOT STATED": "U", "NOT RECORDED": "U", "OTHER": "X", "INDETERMINATE": "X"}
OUTCOMES = (
    "charged",
    "summonsed",
    "cautioned",
    "community_resolution",
    "convicted",
    "nfa",
    "pending",
    "other",
)
SUPERVISION_TYPES = ("licence", "community_order", "suspended_sentence", "pss", "none")
ROSH_LEVELS = ("low", "medium", "high", "very_high")
PROBATION_EVENT_TYPES = ("breach", "recall", "missed_appointment", "positive_drug_test", "other")
CUSTODY_TYPES = ("sentenced", "remand", "recall")


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = Kind.TEXT
    required: bool = False
    allowed: tuple[str, ...] = ()
    pattern: str | None = None
    identifier: str | None = None  # "pnc", "cro", "nomis", "crn": format plus any check digit
    minimum: float | None = None
    maximum: float | None = None
    may_be_future: bool = False  # planned dates (expected release, supervision end)
    is_date_of_birth: bool = False
    max_length: int = 200
    description: str = ""
    example: str = ""

    @property
    def nearly_unique(self) -> bool:
        """Identifiers and names: nearly every row holds a value of its own (what the warehouse
        stores with FSST compression only, `pipeline.schema.FSST`)."""
        return self.kind is Kind.TEXT and (self.identifier is not None or self.pattern == LOCAL_ID_PATTERN
                                           or self.name in NAME_COLUMNS)


@dataclass(frozen=True)
class Extract:
    name: str
    agency: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # natural key; later loads replace earlier rows with the same key
    # False for records with no id of their own (events): the key may repeat within a file, no
    # repeat is rejected, and the n-th row with a key in one load is the n-th in the next.
    has_unique_key: bool = True
    # (later, earlier) pairs of date columns that must be ordered
    ordered_dates: tuple[tuple[str, str], ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _id(name: str, identifier: str, pattern: str, description: str, example: str, required=False) -> Column:
    return Column(
        name,
        required=required,
        pattern=pattern,
        identifier=identifier,
        max_length=20,
        description=description,
        example=example,
    )


_PNC = _id("pnc_id", "pnc", PNC_PATTERN, "Police National Computer id, long or short form, valid check letter", "12/394773H")
_SURNAME = Column("surname", max_length=80, description="Family name as recorded", example="Ashworth")
_FORENAMES = Column("forenames", max_length=120, description="Given names, space separated", example="Daniel James")
_DOB = Column(
    "date_of_birth", Kind.DATE, is_date_of_birth=True,
    description="Date of birth; must give an age of 10 to 100 on the extract date", example="1991-04-17",
)
_SEX = Column("sex", allowed=SEX_CODES, description="M, F, X (other) or U (unknown)", example="M")


POLICE_NOMINALS = Extract(
    name="police_nominals",
    agency="police",
    description="One row per person known to the force (a 'nominal').",
    key=("police_person_id",),
    columns=(
        Column("police_person_id", required=True, pattern=LOCAL_ID_PATTERN, max_length=40,
               description="The force's own person id; unique in the extract", example="N0001234"),
        _PNC,
        _id("cro_number", "cro", CRO_PATTERN, "Criminal Records Office number", "097501/98T"),
        Column("surname", required=True, max_length=80, description=_SURNAME.description, example="Ashworth"),
        Column("forenames", required=True, max_length=120, description=_FORENAMES.description, example="Daniel James"),
        Column("date_of_birth", Kind.DATE, required=True, is_date_of_birth=True,
               description=_DOB.description, example="1991-04-17"),
        _SEX,
        Column("ethnicity", max_length=40,
               description="Self or officer-defined ethnicity; used ONLY to monitor outcomes, never to score",
               example="W1"),
        Column("area", required=True, pattern=AREA_PATTERN, max_length=60,
               description="Local policing / IOM area the person is managed in", example="Northgate"),
        Column("deceased_date", Kind.DATE, description="Date of death if known", example=""),
    ),
)

POLICE_OFFENCES = Extract(
    name="police_offences",
    agency="police",
    description="One row per offence a nominal is linked to (suspect, arrested, charged or convicted).",
    key=("offence_id",),
    ordered_dates=(("recorded_date", "offence_date"), ("outcome_date", "offence_date")),
    columns=(
        Column("offence_id", required=True, pattern=LOCAL_ID_PATTERN, max_length=40,
               description="The force's own offence/crime id; unique in the extract", example="CR0000098765"),
        Column("police_person_id", required=True, pattern=LOCAL_ID_PATTERN, max_length=40,
               description="The nominal this offence belongs to", example="N0001234"),
        Column("offence_date", Kind.DATE, required=True, description="Date committed (start date if a range)",
               example="2026-09-03"),
        Column("recorded_date", Kind.DATE, description="Date recorded by the force", example="2026-09-04"),
        Column("ho_offence_code", required=True, pattern=OFFENCE_CODE_PATTERN, max_length=16,
               description="Home Office offence code, class/subclass (28/1 is read as 028/01); a CJS or local "
                           "code is accepted and mapped by the offence reference", example="028/01"),
        Column("offence_description", max_length=200, description="Free text description", example="Burglary - residential"),
        Column("outcome", allowed=OUTCOMES, description="Outcome of the offence for this person", example="charged"),
        Column("outcome_date", Kind.DATE, description="Date of the outcome", example="2026-09-05"),
        Column("area", pattern=AREA_PATTERN, max_length=60, description="Area where the offence happened",
               example="Northgate"),
    ),
)

PROBATION_CASES = Extract(
    name="probation_cases",
    agency="probation",
    description="One row per probation case (CRN) and supervision period, with the latest assessment.",
    key=("crn", "supervision_start"),
    ordered_dates=(("supervision_end", "supervision_start"),),
    columns=(
        _id("crn", "crn", CRN_PATTERN, "Case reference number (nDelius)", "X123456", required=True),
        _PNC,
        _id("nomis_id", "nomis", NOMIS_PATTERN, "Prison number, once linked", "A1234AA"),
        _SURNAME,
        _FORENAMES,
        _DOB,
        _SEX,
        Column("supervision_type", allowed=SUPERVISION_TYPES,
               description="licence, community_order, suspended_sentence, pss or none", example="licence"),
        Column("supervision_start", Kind.DATE, description="Start of this supervision period", example="2026-02-01"),
        Column("supervision_end", Kind.DATE, may_be_future=True,
               description="Planned or actual end of the period (may be in the future)", example="2027-02-01"),
        Column("assessment_date", Kind.DATE,
               description="Date of the OGRS3/RoSH assessment; supervision_start is used when empty",
               example="2026-02-10"),
        Column("ogrs3_2yr", Kind.DECIMAL, minimum=0, maximum=100,
               description="OGRS3 two-year proven reoffending probability, percent", example="67.5"),
        Column("rosh", allowed=ROSH_LEVELS, description="Risk of serious harm level", example="medium"),
        Column("mappa_level", Kind.INTEGER, minimum=0, maximum=3, description="MAPPA level 0 to 3 (0 = none)",
               example="0"),
        Column("previous_sanctions", Kind.INTEGER, minimum=0, maximum=500,
               description="Number of previous sanctions (convictions, cautions)", example="7"),
        Column("first_sanction_date", Kind.DATE, description="Date of first sanction", example="2008-06-12"),
        Column("area", pattern=AREA_PATTERN, max_length=60, description="Probation delivery area", example="Northgate"),
    ),
)

PROBATION_EVENTS = Extract(
    name="probation_events",
    agency="probation",
    description="One row per enforcement or compliance event on a case.",
    key=("crn", "event_date", "event_type"),  # plus occurrence number, see has_unique_key
    has_unique_key=False,
    columns=(
        _id("crn", "crn", CRN_PATTERN, "Case reference number (nDelius)", "X123456", required=True),
        Column("event_date", Kind.DATE, required=True, description="Date of the event", example="2026-08-14"),
        Column("event_type", required=True, allowed=PROBATION_EVENT_TYPES,
               description="breach, recall, missed_appointment, positive_drug_test or other", example="breach"),
    ),
)

PRISON_CUSTODY = Extract(
    name="prison_custody",
    agency="prison",
    description="One row per custody spell (reception to release).",
    key=("spell_id",),
    ordered_dates=(("release_date", "reception_date"),),
    columns=(
        Column("spell_id", required=True, pattern=LOCAL_ID_PATTERN, max_length=40,
               description="Custody spell id; unique in the extract", example="S00001234"),
        _id("nomis_id", "nomis", NOMIS_PATTERN, "Prison (NOMIS) number", "A1234AA", required=True),
        _PNC,
        _SURNAME,
        _FORENAMES,
        _DOB,
        _SEX,
        Column("reception_date", Kind.DATE, required=True, description="Date received into custody",
               example="2026-05-02"),
        Column("release_date", Kind.DATE, description="Date released; empty while still in custody", example=""),
        Column("expected_release_date", Kind.DATE, may_be_future=True,
               description="Expected (earliest) release date while in custody", example="2026-12-20"),
        Column("sentence_days", Kind.INTEGER, minimum=0, maximum=40000,
               description="Sentence length in days (empty for remand)", example="180"),
        Column("custody_type", allowed=CUSTODY_TYPES, description="sentenced, remand or recall", example="sentenced"),
        Column("release_area", pattern=AREA_PATTERN, max_length=60,
               description="Area the person is released to", example="Northgate"),
    ),
)

EXTRACTS: dict[str, Extract] = {
    e.name: e for e in (POLICE_NOMINALS, POLICE_OFFENCES, PROBATION_CASES, PROBATION_EVENTS, PRISON_CUSTODY)
}


_IDENTIFIER_TEXT = {
    "pnc": "PNC id `" + PNC_PATTERN + "` with a valid check letter",
    "cro": "CRO number `" + CRO_PATTERN + "`",
    "nomis": "NOMIS number `" + NOMIS_PATTERN + "`",
    "crn": "CRN `" + CRN_PATTERN + "`",
}


def _rule_text(column: Column) -> str:
    parts = []
    if column.allowed:
        parts.append("one of " + ", ".join(f"`{v}`" for v in column.allowed))
    if column.identifier:
        parts.append(_IDENTIFIER_TEXT[column.identifier])
    elif column.pattern:
        parts.append(f"matches `{column.pattern}`")
    if column.kind is Kind.DATE:
        parts.append("may be after the extract date" if column.may_be_future else "not after the extract date")
    if column.is_date_of_birth:
        parts.append("age 10 to 100 on the extract date")
    if column.minimum is not None or column.maximum is not None:
        parts.append(f"{column.minimum:g} to {column.maximum:g}")
    if column.kind is Kind.TEXT and not (column.allowed or column.identifier):
        parts.append(f"at most {column.max_length} characters")
    return "; ".join(parts).replace("|", "\\|")  # a bare | would end the Markdown table cell


def contract_markdown() -> str:
    """The extract contract as Markdown (docs/extract-contract.md is this text; a test keeps them equal)."""
    lines = [
        "# Extract contract",
        "",
        "Generated from `pipeline/contract.py` by `python -m pipeline.contract > docs/extract-contract.md`;",
        "a test fails when the two differ.",
        "",
        "Each force maps its own column names onto these canonical names in `iom.toml`",
        "(`[extracts.NAME.columns]`, your name = canonical name). Columns named canonically need no mapping.",
        "Extra columns are ignored (and listed in the load report); absent optional columns are empty.",
        "Dates are read with the extract's `date_formats` (ISO `yyyy-mm-dd` always works). Values are",
        "trimmed; an empty value is missing; codes are case-insensitive (`Charged` = `charged`, `m` = `M`).",
        "A coded column in your own words maps in `[extracts.NAME.values.COLUMN]` (your value = canonical",
        "value, e.g. `\"Charged/Summonsed\" = \"charged\"`); `Male`, `Female`, `Unknown` and `Not known`",
        "are read as `M`, `F` and `U` without it.",
        "",
        "A row that breaks a rule is quarantined in the `rejects` table with file, line, column, value,",
        "reason code and message; it is never silently dropped. A later load replaces earlier rows with",
        "the same natural key, so monthly full extracts and deltas both work.",
        "",
        "Reason codes: " + ", ".join(f"`{code.value}`" for code in RejectReason) + ".",
        "",
    ]
    for extract in EXTRACTS.values():
        lines += [
            f"## `{extract.name}` ({extract.agency})",
            "",
            extract.description + f" Natural key: {', '.join(f'`{k}`' for k in extract.key)}"
            + (" (plus occurrence number within a file)." if not extract.has_unique_key else ".")
            + " Date order checked: "
            + (", ".join(f"`{a}` ≥ `{b}`" for a, b in extract.ordered_dates) or "none")
            + ".",
            "",
            "| column | type | required | rules | example | meaning |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for c in extract.columns:
            lines.append(
                f"| `{c.name}` | {c.kind.value} | {'yes' if c.required else 'no'} | {_rule_text(c)} | "
                f"{('`' + c.example + '`') if c.example else ''} | {c.description} |"
            )
        lines += ["", "Example row (CSV, canonical names):", "", "```csv",
                  ",".join(extract.column_names),
                  ",".join(('"' + c.example + '"') if "," in c.example else c.example for c in extract.columns),
                  "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.write(contract_markdown())
