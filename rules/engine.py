"""Rules as data: load and check a TOML rule set, score people, propose the cohorts.

A rule set (see `rules/default.toml` and `docs/rules.md`) holds the counted outcomes, the
defaults for unknown offence codes, the eligibility criteria, the scoring components and the
cohort definitions. Changing a weight, band or capacity is an edit to the file, never to code.
Every file is checked fully on load: unknown keys, wrong types and references to a protected
characteristic are refused with the file name and the key path (`components.x.bands[2].points`).

Scoring and selection are vectorised Polars expressions; no Python loop runs per person.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from features.ogrs3 import OFFENCE_TERMS
from pipeline.contract import CUSTODY_TYPES, OUTCOMES, ROSH_LEVELS, SUPERVISION_TYPES
from pipeline.errors import ConfigError
from pipeline.identifiers import PERSON_KEY_PATTERN

log = logging.getLogger(__name__)

RULES_DIR = Path(__file__).resolve().parent
DEFAULT_RULES = RULES_DIR / "default.toml"
MAX_POINTS = 1000

# Features a scoring rule may name, with their kind. Identity, dates and free text are left out;
# `age` is a protected characteristic (it is used only by the eligibility minimum age).
NUMERIC_FEATURES: tuple[str, ...] = (
    "offences_3m", "offences_12m", "offences_36m", "offences_total", "days_since_last_offence",
    "neighbourhood_12m", "violence_12m", "distinct_groups_36m", "seriousness_sum_36m",
    "seriousness_max_36m", "trend_12m", "prev_12m", "days_until_release", "days_since_release",
    "short_sentences_36m", "ogrs3_2yr", "mappa_level", "breaches_12m", "recalls_12m",
    "missed_appointments_12m", "positive_drug_tests_12m", "unknown_offences_36m",
    "sanctions_total", "career_years", "copas_rate",  # criminal history (features.history)
)
BOOLEAN_FEATURES: tuple[str, ...] = (
    "in_custody", "release_due_90d", "under_supervision", "in_police", "in_probation", "in_prison",
)
CATEGORY_FEATURES: dict[str, tuple[str, ...]] = {
    "supervision_type": SUPERVISION_TYPES,
    "rosh": ROSH_LEVELS,
    "custody_type_at_d": CUSTODY_TYPES,
}
SCORABLE = set(NUMERIC_FEATURES) | set(BOOLEAN_FEATURES) | set(CATEGORY_FEATURES)

# Protected characteristics (Equality Act 2010) and their usual column names: no rule may name them.
PROTECTED = frozenset({
    "age", "date_of_birth", "dob", "birth_date", "sex", "gender", "gender_reassignment", "ethnicity",
    "ethnic", "ethnic_group", "ethnic_origin", "race", "nationality", "national_origin", "religion",
    "belief", "religion_or_belief", "disability", "disabled", "pregnancy", "maternity",
    "sexual_orientation", "orientation", "marriage", "civil_partnership", "marital_status",
})
# Keys whose values are free text or labels, not references to data about a person.
_FREE_TEXT = {"name", "version", "description", "title", "reason", "offence_group", "ogrs3_group"}

_RULESET_KEYS = {"name", "version", "description"}
_TOP_KEYS = {"ruleset", "counted_outcomes", "unknown_offence", "eligibility", "components", "cohorts"}
_UNKNOWN_KEYS = {"offence_group", "gravity", "neighbourhood_crime", "violence", "ogrs3_group"}
_ELIGIBILITY_KEYS = {
    "min_age", "areas", "exclude_deceased", "exclude_mappa_levels", "exclude_long_custody", "release_window_days",
}
_TERM_KEYS = {"feature", "bands", "per", "cap", "points", "min", "max", "by_value", "reason"}
_COMPONENT_KEYS = _TERM_KEYS | {"title", "combine", "plus"}
_COHORT_KEYS = {"priority", "super_prolific", "cohort_type"}
_PRIORITY_KEYS = {"default_capacity", "capacity", "min_score"}
_SCHEMA_KEYS = (
    _RULESET_KEYS | _TOP_KEYS | _UNKNOWN_KEYS | _ELIGIBILITY_KEYS | _COMPONENT_KEYS | _COHORT_KEYS | _PRIORITY_KEYS
    | {"min_offences_12m", "fixed_min_neighbourhood_12m"}
)
_PLACEHOLDERS = {"value", "s", "es"}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_WORD_RE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")


# --- typed rule set ------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    bound: float  # `min` (value >= bound) or `max` (value <= bound), as the term's `band_key`
    points: int


@dataclass(frozen=True)
class Term:
    """One way a component awards points, with the reason sentence shown to the panel."""

    key: str  # key path in the file, for messages
    feature: str
    kind: str  # "bands", "per", "flag" or "by_value"
    reason: str
    bands: tuple[Band, ...] = ()
    band_key: str = "min"
    per: int | None = None
    cap: int | None = None
    points: int | None = None
    min: float | None = None
    max: float | None = None
    by_value: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Component:
    name: str
    title: str
    combine: str  # "sum": every term adds; "max": only the largest term counts
    terms: tuple[Term, ...]


@dataclass(frozen=True)
class Eligibility:
    min_age: int | None = 18
    areas: tuple[str, ...] = ()
    exclude_deceased: bool = True
    exclude_mappa_levels: tuple[int, ...] = (2, 3)
    exclude_long_custody: bool = True
    release_window_days: int = 90


@dataclass(frozen=True)
class Cohorts:
    min_score: int
    default_capacity: int
    capacity: dict[str, int]
    super_prolific_min_offences_12m: int = 10
    fixed_min_neighbourhood_12m: int = 1

    def capacity_of(self, area: str | None) -> int:
        return self.capacity.get(area, self.default_capacity) if area is not None else self.default_capacity


@dataclass(frozen=True)
class RuleSet:
    name: str
    version: str
    description: str
    sha256: str
    path: Path
    counted_outcomes: tuple[str, ...]
    unknown_offence: dict[str, Any]
    eligibility: Eligibility
    components: tuple[Component, ...]
    cohorts: Cohorts
    content: dict = field(repr=False, default_factory=dict)  # the parsed TOML, as written

    @property
    def component_names(self) -> list[str]:
        return [c.name for c in self.components]


# --- loading and checking ----------------------------------------------------------------


class _Checker:
    """Reads values out of the parsed TOML, raising ConfigError with file and key path."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(
            f"{self.path.name}: {key}: {message}",
            hint=f"edit {self.path} (docs/rules.md describes every key)",
        )

    def table(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table (got {_show(value)})")
        return value

    def only(self, table: dict, key: str, allowed: set[str]) -> None:
        for name in table:
            if name not in allowed:
                where = f"{key}.{name}" if key else name
                raise self.fail(where, f"unknown key; allowed: {', '.join(sorted(allowed))}")

    def require(self, table: dict, key: str, name: str) -> Any:
        if name not in table:
            raise self.fail(f"{key}.{name}" if key else name, "is required")
        return table[name]

    def text(self, value: Any, key: str, empty_ok: bool = False) -> str:
        if not isinstance(value, str) or (not empty_ok and not value.strip()):
            raise self.fail(key, f"must be a non-empty string (got {_show(value)})")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false (got {_show(value)})")
        return value

    def whole(self, value: Any, key: str, lo: int = 0, hi: int = MAX_POINTS) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number from {lo} to {hi} (got {_show(value)})")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be a whole number from {lo} to {hi} (got {value})")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"must be a number (got {_show(value)})")
        return float(value)

    def array(self, value: Any, key: str) -> list:
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list (got {_show(value)})")
        return value


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _refuse_protected(check: _Checker, node: Any, key: str) -> None:
    """Refuse any key or data value naming a protected characteristic, anywhere in the file."""
    if isinstance(node, dict):
        for name, value in node.items():
            where = f"{key}.{name}" if key else name
            # Keys of the schema (min_age...) are fine; capacity keys are area names.
            if name not in _SCHEMA_KEYS and key != "cohorts.priority.capacity":
                _refuse_word(check, name, where)
            if name in _FREE_TEXT or (key == "eligibility" and name == "areas"):
                continue
            _refuse_protected(check, value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _refuse_protected(check, value, f"{key}[{index}]")
    elif isinstance(node, str):
        _refuse_word(check, node, key)


def _refuse_word(check: _Checker, text: str, key: str) -> None:
    lowered = text.lower()
    candidates = {lowered, *(_WORD_RE.findall(lowered))}
    candidates |= {part for word in list(candidates) for part in word.split("_")}
    named = sorted(candidates & PROTECTED)
    if named:
        raise check.fail(
            key,
            f"refers to '{named[0]}', a protected characteristic; no rule may use sex, age, ethnicity or "
            "any other protected characteristic (they are used only to monitor outcomes)",
        )


def _template(check: _Checker, value: Any, key: str) -> str:
    text = check.text(value, key)
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise check.fail(key, f"is not a valid reason template ({exc}); use {{value}}, {{s}} and {{es}}") from None
    for name in fields:
        if name not in _PLACEHOLDERS:
            raise check.fail(key, f"placeholder {{{name}}} is not allowed; allowed: {{value}}, {{s}}, {{es}}")
    return text


def _term(check: _Checker, table: dict, key: str, allowed: set[str]) -> Term:
    check.only(table, key, allowed)
    feature = check.text(check.require(table, key, "feature"), f"{key}.feature")
    if feature not in SCORABLE:
        raise check.fail(
            f"{key}.feature", f"{feature!r} is not a scoring feature; allowed: {', '.join(sorted(SCORABLE))}"
        )
    reason = _template(check, check.require(table, key, "reason"), f"{key}.reason")
    kinds = [k for k in ("bands", "per", "points", "by_value") if k in table]
    if len(kinds) != 1:
        raise check.fail(key, "needs exactly one of bands, per, points or by_value")
    kind = kinds[0]
    if kind != "points":
        for extra in ("min", "max"):
            if extra in table:
                raise check.fail(f"{key}.{extra}", f"is only used with points (a condition), not with {kind}")
    if "cap" in table and kind != "per":
        raise check.fail(f"{key}.cap", "is only used with per")
    numeric_only = kind in ("bands", "per")
    if numeric_only and feature not in NUMERIC_FEATURES:
        raise check.fail(f"{key}.feature", f"{kind} needs a numeric feature; {feature!r} is not one")

    if kind == "bands":
        bands_raw = check.array(table["bands"], f"{key}.bands")
        if not bands_raw:
            raise check.fail(f"{key}.bands", "must list at least one band")
        bands: list[Band] = []
        band_key = None
        for i, band in enumerate(bands_raw):
            where = f"{key}.bands[{i}]"
            check.table(band, where)
            bound_keys = [k for k in ("min", "max") if k in band]
            check.only(band, where, {"min", "max", "points"})
            if len(bound_keys) != 1:
                raise check.fail(where, "needs exactly one of min or max, and points")
            if band_key is None:
                band_key = bound_keys[0]
            elif bound_keys[0] != band_key:
                raise check.fail(where, f"mixes min and max; every band of a list uses {band_key}")
            bound = check.number(band[band_key], f"{where}.{band_key}")
            points = check.whole(check.require(band, where, "points"), f"{where}.points")
            if bands and bound <= bands[-1].bound:
                raise check.fail(f"{where}.{band_key}", f"must be greater than the previous band's {band_key}")
            bands.append(Band(bound, points))
        return Term(key, feature, "bands", reason, bands=tuple(bands), band_key=band_key or "min")
    if kind == "per":
        per = check.whole(table["per"], f"{key}.per")
        cap = check.whole(table["cap"], f"{key}.cap") if "cap" in table else None
        return Term(key, feature, "per", reason, per=per, cap=cap)
    if kind == "points":
        points = check.whole(table["points"], f"{key}.points")
        lo = check.number(table["min"], f"{key}.min") if "min" in table else None
        hi = check.number(table["max"], f"{key}.max") if "max" in table else None
        if feature in BOOLEAN_FEATURES and (lo is not None or hi is not None):
            raise check.fail(key, f"{feature!r} is true or false: give points only, without min or max")
        if feature in NUMERIC_FEATURES and lo is None and hi is None:
            raise check.fail(key, f"points on the number {feature!r} need a condition: min, max or both")
        if feature in CATEGORY_FEATURES:
            raise check.fail(f"{key}.points", f"{feature!r} is a category: use by_value = {{...}}")
        if lo is not None and hi is not None and lo > hi:
            raise check.fail(f"{key}.min", "must not be greater than max")
        return Term(key, feature, "flag", reason, points=points, min=lo, max=hi)
    values = check.table(table["by_value"], f"{key}.by_value")
    if feature not in CATEGORY_FEATURES:
        raise check.fail(f"{key}.by_value", f"needs a category feature ({', '.join(CATEGORY_FEATURES)})")
    allowed_values = CATEGORY_FEATURES[feature]
    mapping = {}
    for name, points in values.items():
        if name not in allowed_values:
            raise check.fail(f"{key}.by_value.{name}", f"is not a value of {feature}; allowed: {', '.join(allowed_values)}")
        mapping[name] = check.whole(points, f"{key}.by_value.{name}")
    if not mapping:
        raise check.fail(f"{key}.by_value", "must give points for at least one value")
    return Term(key, feature, "by_value", reason, by_value=mapping)


def _components(check: _Checker, raw: Any) -> tuple[Component, ...]:
    table = check.table(raw, "components")
    if not table:
        raise check.fail("components", "must define at least one component")
    components = []
    for name, body in table.items():
        key = f"components.{name}"
        if not _NAME_RE.match(name):
            raise check.fail(key, "component names are lower-case letters, digits and _ (used as points_<name>)")
        body = check.table(body, key)
        check.only(body, key, _COMPONENT_KEYS)
        title = check.text(body.get("title", name.replace("_", " ").capitalize()), f"{key}.title")
        combine = body.get("combine", "sum")
        if combine not in ("sum", "max"):
            raise check.fail(f"{key}.combine", f"must be 'sum' or 'max' (got {_show(combine)})")
        main = {k: v for k, v in body.items() if k not in ("title", "combine", "plus")}
        terms = [_term(check, main, key, _TERM_KEYS)]
        for i, extra in enumerate(check.array(body.get("plus", []), f"{key}.plus")):
            where = f"{key}.plus[{i}]"
            terms.append(_term(check, check.table(extra, where), where, _TERM_KEYS))
        components.append(Component(name, title, combine, tuple(terms)))
    return tuple(components)


def _eligibility(check: _Checker, raw: Any) -> Eligibility:
    table = check.table(raw, "eligibility")
    check.only(table, "eligibility", _ELIGIBILITY_KEYS)
    base = Eligibility()
    min_age = base.min_age
    if "min_age" in table:
        min_age = check.whole(table["min_age"], "eligibility.min_age", 10, 100)
    areas = tuple(
        check.text(a, f"eligibility.areas[{i}]")
        for i, a in enumerate(check.array(table.get("areas", []), "eligibility.areas"))
    )
    levels = tuple(
        check.whole(v, f"eligibility.exclude_mappa_levels[{i}]", 0, 3)
        for i, v in enumerate(check.array(table.get("exclude_mappa_levels", [2, 3]), "eligibility.exclude_mappa_levels"))
    )
    return Eligibility(
        min_age=min_age,
        areas=areas,
        exclude_deceased=check.boolean(table.get("exclude_deceased", True), "eligibility.exclude_deceased"),
        exclude_mappa_levels=levels,
        exclude_long_custody=check.boolean(table.get("exclude_long_custody", True), "eligibility.exclude_long_custody"),
        release_window_days=check.whole(
            table.get("release_window_days", 90), "eligibility.release_window_days", 0, 3650
        ),
    )


def _cohorts(check: _Checker, raw: Any) -> Cohorts:
    table = check.table(raw, "cohorts")
    check.only(table, "cohorts", _COHORT_KEYS)
    priority = check.table(check.require(table, "cohorts", "priority"), "cohorts.priority")
    check.only(priority, "cohorts.priority", _PRIORITY_KEYS)
    default_capacity = check.whole(
        check.require(priority, "cohorts.priority", "default_capacity"), "cohorts.priority.default_capacity", 0, 1_000_000
    )
    capacity = {
        str(area): check.whole(n, f"cohorts.priority.capacity.{area}", 0, 1_000_000)
        for area, n in check.table(priority.get("capacity", {}), "cohorts.priority.capacity").items()
    }
    min_score = check.whole(check.require(priority, "cohorts.priority", "min_score"), "cohorts.priority.min_score", 0, 100_000)
    sp = check.table(table.get("super_prolific", {}), "cohorts.super_prolific")
    check.only(sp, "cohorts.super_prolific", {"min_offences_12m"})
    ct = check.table(table.get("cohort_type", {}), "cohorts.cohort_type")
    check.only(ct, "cohorts.cohort_type", {"fixed_min_neighbourhood_12m"})
    return Cohorts(
        min_score=min_score,
        default_capacity=default_capacity,
        capacity=capacity,
        super_prolific_min_offences_12m=check.whole(
            sp.get("min_offences_12m", 10), "cohorts.super_prolific.min_offences_12m", 1, 10_000
        ),
        fixed_min_neighbourhood_12m=check.whole(
            ct.get("fixed_min_neighbourhood_12m", 1), "cohorts.cohort_type.fixed_min_neighbourhood_12m", 0, 10_000
        ),
    )


def _unknown_offence(check: _Checker, raw: Any) -> dict[str, Any]:
    table = check.table(raw, "unknown_offence")
    check.only(table, "unknown_offence", _UNKNOWN_KEYS)
    group = check.text(check.require(table, "unknown_offence", "offence_group"), "unknown_offence.offence_group")
    if not _NAME_RE.match(group):
        raise check.fail("unknown_offence.offence_group", "must be lower-case letters, digits and _")
    ogrs3_group = check.text(check.require(table, "unknown_offence", "ogrs3_group"), "unknown_offence.ogrs3_group")
    if ogrs3_group not in OFFENCE_TERMS:
        raise check.fail("unknown_offence.ogrs3_group", f"must be an OGRS3 group; allowed: {', '.join(OFFENCE_TERMS)}")
    return {
        "offence_group": group,
        "gravity": check.whole(check.require(table, "unknown_offence", "gravity"), "unknown_offence.gravity", 1, 4),
        "neighbourhood_crime": check.boolean(
            check.require(table, "unknown_offence", "neighbourhood_crime"), "unknown_offence.neighbourhood_crime"
        ),
        "violence": check.boolean(check.require(table, "unknown_offence", "violence"), "unknown_offence.violence"),
        "ogrs3_group": ogrs3_group,
    }


def parse_rules(data: bytes, path: Path) -> RuleSet:
    """Check and type the bytes of a rule file (the path is used for messages and the record)."""
    check = _Checker(path)
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise check.fail("(file)", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from None
    check.only(raw, "", _TOP_KEYS)
    _refuse_protected(check, raw, "")
    ruleset = check.table(check.require(raw, "", "ruleset"), "ruleset")
    check.only(ruleset, "ruleset", _RULESET_KEYS)
    outcomes = check.array(check.require(raw, "", "counted_outcomes"), "counted_outcomes")
    for i, outcome in enumerate(outcomes):
        if outcome not in OUTCOMES:
            raise check.fail(f"counted_outcomes[{i}]", f"{_show(outcome)} is not an outcome; allowed: {', '.join(OUTCOMES)}")
    rules = RuleSet(
        name=check.text(check.require(ruleset, "ruleset", "name"), "ruleset.name"),
        version=check.text(check.require(ruleset, "ruleset", "version"), "ruleset.version"),
        description=check.text(ruleset.get("description", ""), "ruleset.description", empty_ok=True),
        sha256=hashlib.sha256(data).hexdigest(),
        path=path,
        counted_outcomes=tuple(dict.fromkeys(outcomes)),
        unknown_offence=_unknown_offence(check, check.require(raw, "", "unknown_offence")),
        eligibility=_eligibility(check, raw.get("eligibility", {})),
        components=_components(check, check.require(raw, "", "components")),
        cohorts=_cohorts(check, check.require(raw, "", "cohorts")),
        content=raw,
    )
    if any(t.feature == "ogrs3_2yr" for c in rules.components for t in c.terms):
        log.warning("rule set %s scores OGRS3, whose formula uses sex and age: see docs/rules.md", rules.name)
    return rules


def load_rules(name_or_path: str) -> RuleSet:
    """"default" (the shipped rules/default.toml) or a path to a TOML rule file."""
    if name_or_path == "default":
        path = DEFAULT_RULES
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists() and not path.suffix and (RULES_DIR / f"{name_or_path}.toml").is_file():
            path = RULES_DIR / f"{name_or_path}.toml"  # another shipped rule set, by name
    if not path.is_file():
        raise ConfigError(
            f"rule file not found: {path}",
            hint='use "default" for the shipped rules or the path of a TOML rule file',
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    rules = parse_rules(data, path)
    log.info("rule set %s %s (sha256 %s)", rules.name, rules.version, rules.sha256[:12])
    return rules


# --- scoring -------------------------------------------------------------------------------


def _value_text(term: Term) -> pl.Expr:
    column = pl.col(term.feature)
    if term.feature in CATEGORY_FEATURES:
        return column.str.replace_all("_", " ")
    if term.feature in BOOLEAN_FEATURES:
        return pl.when(column).then(pl.lit("yes")).otherwise(pl.lit("no"))
    if term.feature == "ogrs3_2yr":
        return column.round(1).cast(pl.Utf8)
    if term.feature == "copas_rate":
        return column.round(2).cast(pl.Utf8)
    return column.cast(pl.Int64).cast(pl.Utf8)


def _reason_expr(term: Term, points: pl.Expr) -> pl.Expr:
    """The term's sentence with its points ("4 offences in the last 12 months: +20"), null at 0."""
    parts: list[pl.Expr] = []
    for literal, name, _spec, _conv in string.Formatter().parse(term.reason):
        if literal:
            parts.append(pl.lit(literal))
        if name == "value":
            parts.append(_value_text(term))
        elif name in ("s", "es"):
            parts.append(pl.when(pl.col(term.feature) == 1).then(pl.lit("")).otherwise(pl.lit(name)))
    parts.append(pl.lit(": +"))
    parts.append(points.cast(pl.Utf8))
    return pl.when(points > 0).then(pl.concat_str(parts)).otherwise(None)


_DENSE_VALUES = 100_000


def _reason_lookup(features: pl.DataFrame, term: Term) -> pl.Expr:
    """The term's reason per person, built once per distinct feature value and looked up:
    a line depends only on the value, and distinct values are few (a count, a type)."""
    column = features.get_column(term.feature)
    low, high = (column.min(), column.max()) if column.dtype.is_integer() else (None, None)
    if low is not None and high - low <= _DENSE_VALUES:  # a range of counts: no pass to find the distinct ones
        values = pl.DataFrame({term.feature: pl.int_range(low, high + 1, eager=True, dtype=column.dtype)})
    else:
        values = features.select(pl.col(term.feature).unique().drop_nulls())
    lines = values.with_columns(_reason_expr(term, _term_points(term)).alias("_line")).drop_nulls("_line")
    if lines.height == 0:
        return pl.lit(None, dtype=pl.Utf8)
    return pl.col(term.feature).replace_strict(
        lines.get_column(term.feature), lines.get_column("_line"), default=None, return_dtype=pl.Utf8
    )


def _term_points(term: Term) -> pl.Expr:
    value = pl.col(term.feature)
    if term.kind == "bands":
        expr = None
        if term.band_key == "min":
            ordered = sorted(term.bands, key=lambda b: -b.bound)  # highest min first
            for band in ordered:
                cond = value >= band.bound
                expr = pl.when(cond).then(pl.lit(band.points)) if expr is None else expr.when(cond).then(pl.lit(band.points))
        else:
            for band in term.bands:  # smallest max first
                cond = value <= band.bound
                expr = pl.when(cond).then(pl.lit(band.points)) if expr is None else expr.when(cond).then(pl.lit(band.points))
        result = expr.otherwise(pl.lit(0))
    elif term.kind == "per":
        result = value.cast(pl.Int64).clip(lower_bound=0) * term.per
        if term.cap is not None:
            result = result.clip(upper_bound=term.cap)
    elif term.kind == "flag":
        if term.feature in BOOLEAN_FEATURES:
            cond = value
        else:
            cond = pl.lit(True)
            if term.min is not None:
                cond = cond & (value >= term.min)
            if term.max is not None:
                cond = cond & (value <= term.max)
        result = pl.when(cond).then(pl.lit(term.points)).otherwise(pl.lit(0))
    else:
        result = value.replace_strict(term.by_value, default=0, return_dtype=pl.Int64)
    return result.fill_null(0).cast(pl.Int64)


def _eligibility_exprs(rules: RuleSet) -> tuple[pl.Expr, pl.Expr]:
    rule = rules.eligibility
    checks: list[tuple[pl.Expr, pl.Expr]] = []
    if rule.exclude_deceased:
        checks.append((pl.col("deceased").fill_null(False), pl.lit("deceased")))
    if rule.min_age is not None:
        # Unknown age is not excluded: the panel sees it (the police extract requires a date of birth).
        checks.append((pl.col("age") < rule.min_age, pl.lit(f"under {rule.min_age}")))
    if rule.exclude_mappa_levels:
        checks.append((
            pl.col("mappa_level").is_in(list(rule.exclude_mappa_levels)),
            pl.lit("MAPPA level ") + pl.col("mappa_level").cast(pl.Utf8),
        ))
    if rule.exclude_long_custody:
        due = pl.col("days_until_release") <= rule.release_window_days
        checks.append((
            pl.col("in_custody") & ~due.fill_null(False),
            pl.lit(f"in custody, release not due within {rule.release_window_days} days"),
        ))
    if rule.areas:
        checks.append((~pl.col("area").is_in(list(rule.areas)).fill_null(False), pl.lit("area not in scope")))
    if not checks:
        return pl.lit(True), pl.lit(None, dtype=pl.Utf8)
    reason = pl.when(checks[0][0].fill_null(False)).then(checks[0][1])
    for cond, text in checks[1:]:
        reason = reason.when(cond.fill_null(False)).then(text)
    reason = reason.otherwise(pl.lit(None, dtype=pl.Utf8))
    return reason.is_null(), reason


def score(features: pl.DataFrame, rules: RuleSet) -> pl.DataFrame:
    """Features plus eligible, ineligible_reason, points_<component> (one per component), score, reasons."""
    missing = sorted({t.feature for c in rules.components for t in c.terms} - set(features.columns))
    if missing:
        raise ConfigError(f"{rules.path.name}: features missing for scoring: {', '.join(missing)}")
    point_columns: list[pl.Expr] = []
    reason_columns: list[pl.Expr] = []
    for component in rules.components:
        term_points = [_term_points(t) for t in component.terms]
        reasons = [_reason_lookup(features, t) for t in component.terms]
        if component.combine == "sum" or len(term_points) == 1:
            total = pl.sum_horizontal(term_points)
            reason_columns.extend(reasons)
        else:
            total = pl.max_horizontal(term_points)
            # Only the first term reaching the maximum explains the points.
            chosen = pl.when(term_points[0] == total).then(reasons[0])
            for points, reason in zip(term_points[1:], reasons[1:], strict=True):
                chosen = chosen.when(points == total).then(reason)
            reason_columns.append(chosen.otherwise(None))
        point_columns.append(total.cast(pl.Int64).alias(f"points_{component.name}"))
    eligible, reason = _eligibility_exprs(rules)
    scored = features.with_columns(
        eligible.alias("eligible"),
        reason.alias("ineligible_reason"),
        *point_columns,
        pl.concat_str(reason_columns, separator="\n", ignore_nulls=True).alias("reasons"),
    )
    return scored.with_columns(
        pl.sum_horizontal([f"points_{c.name}" for c in rules.components]).cast(pl.Int64).alias("score")
    ).select([*features.columns, "eligible", "ineligible_reason", *[f"points_{c.name}" for c in rules.components],
              "score", "reasons"])


# --- selection -----------------------------------------------------------------------------


@dataclass
class Selection:
    ranked: pl.DataFrame  # every scored person, in rank order, with the selection columns
    release_watch: pl.DataFrame  # in custody, release due, would reach min_score on release
    stats: dict


RANK_ORDER = ["score", "offences_12m", "days_since_last_offence", "person_key"]
RANK_DESCENDING = [True, True, False, False]
NO_AREA = "(no area)"


def _capacity_expr(rules: RuleSet) -> pl.Expr:
    cohorts = rules.cohorts
    if not cohorts.capacity:
        return pl.lit(cohorts.default_capacity, dtype=pl.Int64)
    return pl.col("area").replace_strict(cohorts.capacity, default=cohorts.default_capacity, return_dtype=pl.Int64)


# Bit budgets of the packed rank key; larger values fall back to a plain multi-column sort.
_SCORE_BITS, _OFFENCE_BITS, _DAY_BITS = 21, 20, 20


def _person_ordinal(keys: pl.DataFrame) -> pl.Expr:
    """person_key as an integer of the same order: the row number when the frame is already in
    person_key order (compute_features' default); else the key's 12 hex digits as a number when
    every key has the linker's form (PERSON_KEY_PATTERN), far cheaper than ranking the text;
    else the ordinal rank of the text."""
    person_key = keys.get_column("person_key")
    if person_key.is_sorted():
        return pl.col("_row").cast(pl.Int64).alias("_person_ordinal")
    if person_key.null_count() == 0 and person_key.str.contains(PERSON_KEY_PATTERN).all():
        return pl.col("person_key").str.slice(1).str.to_integer(base=16).alias("_person_ordinal")
    return pl.col("person_key").rank("ordinal").cast(pl.Int64).alias("_person_ordinal")


def _rank_sort_keys(keys: pl.DataFrame) -> list[pl.Expr]:
    """Ascending sort keys for: eligible first, score desc, offences_12m desc,
    days_since_last_offence asc (unknown last), person_key asc; the ineligible by person_key
    alone (they have no rank; the panel looks them up by key).

    Integer keys sort far faster than several columns, so the first four are packed into one
    Int64 when their values fit the bit budgets (they always do in practice); else plain keys.
    """
    def bounds(column: str) -> tuple[int, int]:
        values = keys.get_column(column)
        return int(values.min() or 0), int(values.max() or 0)

    score_lo, score_hi = bounds("score")
    offences_lo, offences_hi = bounds("offences_12m")
    days_lo, days_hi = bounds("days_since_last_offence")
    fits = (
        score_lo >= 0 and score_hi < 2**_SCORE_BITS
        and offences_lo >= 0 and offences_hi < 2**_OFFENCE_BITS
        and days_lo >= 0 and days_hi < 2**_DAY_BITS - 1  # the top value stands for "no offence"
    )
    if not fits:
        when_eligible = pl.when(pl.col("eligible"))
        return [
            ~pl.col("eligible"), when_eligible.then(-pl.col("score")), when_eligible.then(-pl.col("offences_12m")),
            when_eligible.then(pl.col("days_since_last_offence").fill_null(2**62)), pl.col("_person_ordinal"),
        ]
    packed = (
        pl.when(pl.col("eligible"))
        .then(
            (2**_SCORE_BITS - 1 - pl.col("score")) * 2 ** (_OFFENCE_BITS + _DAY_BITS)
            + (2**_OFFENCE_BITS - 1 - pl.col("offences_12m")) * 2**_DAY_BITS
            + pl.col("days_since_last_offence").fill_null(2**_DAY_BITS - 1)
        )
        .otherwise(2 ** (_SCORE_BITS + _OFFENCE_BITS + _DAY_BITS))
    )
    return [packed, pl.col("_person_ordinal")]


def _rank(scored: pl.DataFrame, rules: RuleSet) -> pl.DataFrame:
    cohorts = rules.cohorts
    # Order and selection are worked out on the few columns they need, then the wide frame is
    # gathered once in rank order.
    keys = scored.select("eligible", *RANK_ORDER, "area", "neighbourhood_12m", "ineligible_reason").with_row_index(
        "_row"
    )
    keys = keys.with_columns(_person_ordinal(keys)).sort(_rank_sort_keys(keys), descending=False)
    area_key = pl.col("area").fill_null(NO_AREA)
    eligible = pl.col("eligible")
    keys = keys.with_columns(
        pl.when(eligible).then(eligible.cast(pl.Int64).cum_sum()).otherwise(None).alias("rank"),
        pl.when(eligible).then(eligible.cast(pl.Int64).cum_sum().over(area_key)).otherwise(None).alias("area_rank"),
        _capacity_expr(rules).alias("_capacity"),
    )
    priority = eligible & (pl.col("score") >= cohorts.min_score) & (pl.col("area_rank") <= pl.col("_capacity"))
    keys = keys.with_columns(
        priority.fill_null(False).alias("priority"),
        (eligible & (pl.col("offences_12m") >= cohorts.super_prolific_min_offences_12m)).fill_null(False)
        .alias("super_prolific"),
    )
    member = pl.col("priority") | pl.col("super_prolific")
    note = (
        pl.when(~eligible).then(pl.lit("not eligible: ") + pl.col("ineligible_reason"))
        .when(pl.col("priority")).then(pl.lit(None, dtype=pl.Utf8))
        .when(pl.col("score") < cohorts.min_score).then(pl.lit(f"below minimum score {cohorts.min_score}"))
        .otherwise(pl.lit("area capacity ") + pl.col("_capacity").cast(pl.Utf8) + pl.lit(" reached"))
    )
    keys = keys.with_columns(
        pl.when(member)
        .then(pl.when(pl.col("neighbourhood_12m") >= cohorts.fixed_min_neighbourhood_12m)
              .then(pl.lit("Fixed")).otherwise(pl.lit("Flex")))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
        .alias("cohort_type"),
        note.alias("selection_note"),
    )
    added = keys.select("rank", "area_rank", "priority", "super_prolific", "cohort_type", "selection_note")
    return scored[keys.get_column("_row")].hstack(added)


def _release_watch(scored: pl.DataFrame, rules: RuleSet) -> pl.DataFrame:
    due = scored.filter(pl.col("in_custody") & pl.col("release_due_90d"))
    columns = ["person_key", "area", "custody_type_at_d", "expected_release_date", "days_until_release",
               "score", "score_if_released", "reasons_if_released"]
    if due.height == 0:
        return pl.DataFrame(schema={
            "person_key": pl.Utf8, "area": pl.Utf8, "custody_type_at_d": pl.Utf8, "expected_release_date": pl.Date,
            "days_until_release": pl.Int64, "score": pl.Int64, "score_if_released": pl.Int64,
            "reasons_if_released": pl.Utf8,
        })
    feature_columns = [c for c in due.columns if c not in _SCORE_COLUMNS and not c.startswith("points_")]
    # As if released at D: out of custody, released today.
    released = due.select(feature_columns).with_columns(
        pl.lit(False).alias("in_custody"),
        pl.lit(False).alias("release_due_90d"),
        pl.lit(None, dtype=pl.Utf8).alias("custody_type_at_d"),
        pl.lit(None, dtype=pl.Date).alias("expected_release_date"),
        pl.lit(None, dtype=pl.Int64).alias("days_until_release"),
        pl.lit(0, dtype=pl.Int64).alias("days_since_release"),
    )
    rescored = score(released, rules).select(
        "person_key", "eligible", pl.col("score").alias("score_if_released"),
        pl.col("reasons").alias("reasons_if_released"),
    )
    watch = (
        due.select("person_key", "area", "custody_type_at_d", "expected_release_date", "days_until_release", "score")
        .join(rescored, on="person_key", how="inner")
        .filter(pl.col("eligible") & (pl.col("score_if_released") >= rules.cohorts.min_score))
    )
    return watch.sort(["score_if_released", "person_key"], descending=[True, False]).select(columns)


_SCORE_COLUMNS = {"eligible", "ineligible_reason", "score", "reasons"}


def _stats(ranked: pl.DataFrame, watch: pl.DataFrame, rules: RuleSet) -> dict:
    cohorts = rules.cohorts
    eligible = ranked.filter(pl.col("eligible"))
    area_key = pl.col("area").fill_null(NO_AREA)
    per_area = (
        eligible.group_by(area_key.alias("area"))
        .agg(
            pl.len().alias("eligible"),
            (pl.col("score") >= cohorts.min_score).sum().alias("reaching_min_score"),
            pl.col("priority").sum().alias("selected"),
            pl.col("super_prolific").sum().alias("super_prolific"),
        )
        .sort("area")
    )
    priority_by_area = {
        row["area"]: {
            "selected": int(row["selected"]),
            "capacity": cohorts.capacity_of(None if row["area"] == NO_AREA else row["area"]),
            "eligible": int(row["eligible"]),
            "reaching_min_score": int(row["reaching_min_score"]),
            "super_prolific": int(row["super_prolific"]),
        }
        for row in per_area.iter_rows(named=True)
    }
    ineligible = (
        ranked.filter(~pl.col("eligible")).group_by("ineligible_reason").len().sort("ineligible_reason")
    )
    total_12m = int(ranked.get_column("offences_12m").sum() or 0)
    sp_12m = int(ranked.filter(pl.col("super_prolific")).get_column("offences_12m").sum() or 0)
    return {
        "assessed": ranked.height,
        "eligible": eligible.height,
        "ineligible": {r: int(n) for r, n in ineligible.iter_rows()},
        "priority": int(ranked.get_column("priority").sum()),
        "priority_by_area": priority_by_area,
        "min_score": cohorts.min_score,
        "super_prolific": int(ranked.get_column("super_prolific").sum()),
        "super_prolific_offences_12m": sp_12m,
        "offences_12m": total_12m,
        "super_prolific_offence_share": (sp_12m / total_12m) if total_12m else None,
        "release_watch": watch.height,
    }


def select_cohorts(scored: pl.DataFrame, rules: RuleSet) -> Selection:
    """Rank eligible people, fill each area's priority cohort up to its capacity, flag the
    super-prolific, type members Fixed or Flex, and list custody leavers worth preparing for."""
    ranked = _rank(scored, rules)
    watch = _release_watch(scored, rules)
    stats = _stats(ranked, watch, rules)
    log.info(
        "selected %d priority and %d super-prolific of %d eligible", stats["priority"], stats["super_prolific"],
        stats["eligible"],
    )
    return Selection(ranked, watch, stats)

