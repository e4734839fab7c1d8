"""What the generator writes: the files' formats, the options that shape the world, the result.

Each extract comes in the shape a partnership really receives: force-specific column names,
different encodings, delimiters and date formats, and one Parquet file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

__all__ = [
    "AREAS",
    "EXTRACT_FORMATS",
    "FAULT_KINDS",
    "GeneratedData",
    "GeneratedExtract",
    "IdentityNoise",
    "PastDecisions",
]

AREAS = ("Northgate", "Eastbridge", "Southmoor", "Westfield", "Central")

FAULT_KINDS = (
    "unparseable_date",
    "future_date",
    "duplicate_id",
    "malformed_identifier",
    "missing_required",
    "out_of_range",
    "enum_violation",
    "unknown_offence_code",
)


@dataclass(frozen=True)
class GeneratedExtract:
    name: str  # canonical extract name, e.g. "police_nominals"
    path: Path  # file written (absolute)
    format: str  # "csv" | "parquet"
    encoding: str  # "utf-8" | "utf-8-sig" | "cp1252"
    delimiter: str  # "," etc (ignored for parquet)
    date_formats: list[str]  # strptime formats used for dates in that file
    column_mapping: dict[str, str]  # the file's own column name -> canonical column name
    rows: int


@dataclass(frozen=True)
class GeneratedData:
    extracts: list[GeneratedExtract]
    extract_date: date
    seed: int
    people: int
    faults: dict[str, int]  # injected faults by kind
    truth_dir: Path | None = None  # the truth files (never read by the pipeline)
    decisions_path: Path | None = None  # past panel decisions, when simulated
    corruptions: dict[str, int] = field(default_factory=dict)  # identity corruptions by source and kind


@dataclass(frozen=True)
class IdentityNoise:
    """How often a probation or prison copy of a person's identity is corrupted (per record).

    Each rate is the share of that agency's people whose copy has the corruption; several can
    apply to one record. Police nominals are the reference copy and are not corrupted here (the
    faults of `fault_rate` are separate: they make rows invalid rather than merely different).
    """

    name_typo: float = 0.03  # one letter changed, dropped, doubled or two swapped, in the surname
    nickname: float = 0.04  # a short form of the first forename (Jon for Jonathan)
    surname_variant: float = 0.03  # a double-barrelled surname recorded as one half, or unhyphenated
    swapped_names: float = 0.01  # forename and surname exchanged
    dob_transposed: float = 0.015  # day and month exchanged (where both are 12 or less)
    dob_digit: float = 0.01  # one digit of the date wrong
    dob_missing: float = 0.02  # no date of birth
    pnc_missing: float = 0.15  # no PNC id on the record
    pnc_mistyped: float = 0.01  # a digit of the PNC id wrong (check letter recomputed: valid but wrong)
    nomis_missing: float = 0.15  # probation only: the prison number not carried

    def scaled(self, factor: float) -> IdentityNoise:
        return IdentityNoise(**{k: min(v * factor, 0.9) for k, v in self.__dict__.items()})


PROBATION_NOISE = IdentityNoise()
PRISON_NOISE = IdentityNoise(name_typo=0.05, nickname=0.06, surname_variant=0.04, swapped_names=0.02,
                             dob_transposed=0.02, dob_digit=0.015, dob_missing=0.01, pnc_missing=0.2,
                             pnc_mistyped=0.015, nomis_missing=0.0)


@dataclass(frozen=True)
class PastDecisions:
    """A simulated IOM scheme over the last `years` of history (see docs/synthetic-data.md).

    At each monthly meeting, in each area, people not in custody and not already managed are
    ranked by the offences the police recorded against them in the previous 12 months (at least
    `min_offences`); the panel reviews the top of the list and accepts until the area's capacity
    (`capacity_per_1000` of the area's people) is full. Accepted people are managed for a
    period (median about nine months); while managed their offending rate is multiplied by
    1 - `treatment_effect` (0: management changes nothing).
    """

    years: int = 3
    capacity_per_1000: float = 8.0
    min_offences: int = 3
    treatment_effect: float = 0.0


@dataclass(frozen=True)
class _Format:
    file_name: str
    format: str
    encoding: str
    delimiter: str
    date_format: str
    columns: dict[str, str] = field(default_factory=dict)  # file column -> canonical column


EXTRACT_FORMATS: dict[str, _Format] = {
    "police_nominals": _Format(
        "police_nominals.csv", "csv", "utf-8", ",", "%d/%m/%Y",
        {
            "PersonID": "police_person_id",
            "PNC": "pnc_id",
            "CRO": "cro_number",
            "Surname": "surname",
            "Forenames": "forenames",
            "DOB": "date_of_birth",
            "Gender": "sex",
            "Ethnicity": "ethnicity",
            "Area": "area",
            "DateOfDeath": "deceased_date",
        },
    ),
    "police_offences": _Format(
        "police_offences.csv", "csv", "utf-8", ",", "%Y-%m-%d",
        {c: c for c in (
            "offence_id", "police_person_id", "offence_date", "recorded_date", "ho_offence_code",
            "offence_description", "outcome", "outcome_date", "area",
        )},
    ),
    "probation_cases": _Format(
        "probation_cases.csv", "csv", "cp1252", ";", "%d/%m/%Y",
        {
            "CRN": "crn",
            "PNC Number": "pnc_id",
            "NOMS Number": "nomis_id",
            "Family Name": "surname",
            "Given Names": "forenames",
            "Date of Birth": "date_of_birth",
            "Gender": "sex",
            "Supervision Type": "supervision_type",
            "Supervision Start": "supervision_start",
            "Supervision End": "supervision_end",
            "Assessment Date": "assessment_date",
            "OGRS3 2yr": "ogrs3_2yr",
            "RoSH": "rosh",
            "MAPPA Level": "mappa_level",
            "Previous Sanctions": "previous_sanctions",
            "First Sanction Date": "first_sanction_date",
            "PDU": "area",
        },
    ),
    "probation_events": _Format(
        "probation_events.parquet", "parquet", "utf-8", ",", "%Y-%m-%d",
        {"CaseRef": "crn", "EventDate": "event_date", "EventType": "event_type"},
    ),
    "prison_custody": _Format(
        "prison_custody.csv", "csv", "utf-8-sig", ",", "%Y-%m-%d",
        {
            "Spell ID": "spell_id",
            "Prison Number": "nomis_id",
            "PNC ID": "pnc_id",
            "Last Name": "surname",
            "First Names": "forenames",
            "Birth Date": "date_of_birth",
            "Sex": "sex",
            "Reception Date": "reception_date",
            "Release Date": "release_date",
            "Expected Release Date": "expected_release_date",
            "Sentence Length (days)": "sentence_days",
            "Custody Type": "custody_type",
            "Release Area": "release_area",
        },
    ),
}
