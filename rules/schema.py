"""Rule files: the typed rule set, and loading and checking a TOML rule file.

A rule set (see `rules/default.toml` and `docs/rules.md`) holds the counted outcomes, the
defaults for unknown offence codes, the eligibility criteria, the scoring components and the
cohort definitions. Changing a weight, band or capacity is an edit to the file, never to code.
Every file is checked fully on load: unknown keys, wrong types and references to a protected
characteristic are refused with the file name and the key path (`components.x.bands[2].points`).

Scoring is `rules.score`, selection `rules.select`.
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

from features.ogrs3 import OFFENCE_TERMS
from pipeline.contract import CUSTODY_TYPES, OUTCOMES, ROSH_LEVELS, SUPERVISION_TYPES
from pipeline.errors import ConfigError

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
_TOP_KEYS = {"ruleset", "counted_outcomes", "unknown_offence", "eligibility", "components", "cohorts", "model_blend"}
_BLEND_KEYS = {"points", "reason"}
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
    | _BLEND_KEYS
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
    # `[model_blend]`: points = round(points x the advisory model's probability), added to the
    # score as the component `model` with its reason, only in a run that uses a model. None: no blend.
    model_blend: dict[str, Any] | None = None

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


def _model_blend(check: _Checker, raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    table = check.table(raw, "model_blend")
    check.only(table, "model_blend", _BLEND_KEYS)
    points = check.whole(check.require(table, "model_blend", "points"), "model_blend.points", lo=1)
    reason = _template(check, table.get("reason", "advisory model: {value}% probability of reoffending"),
                       "model_blend.reason")
    return {"points": points, "reason": reason}


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
        model_blend=_model_blend(check, raw.get("model_blend")),
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
