"""OGRS3: the Offender Group Reconviction Scale, version 3 (Howard et al., 2009).

P = exp(c + S) / (1 + exp(c + S)), with c = 2.1217 (two-year) or 1.40256 (one-year) and
S = age/gender term + 1.25112 * Copas rate + conviction-status term + offence term, where
Copas rate = ln((1 + previous sanctions) / (10 + age at current sanction - age at first sanction)).
Coefficients as in MoJ's public `hmpps-arns-risk-actuarial-api`, see
`shared/reference/uk-justice-facts.md`. Ages are whole years.

The published formula has a male and a female age table only. Where sex is recorded as
anything other than F (M, X, U or missing) the male table is used; docs/rules.md says so. OGRS3
is shown as context: the default rule set awards it no points.

`ogrs3_probability` is the scalar form (tests, explanations); `ogrs3_percent_expr` is the
vectorised Polars form used by `features.build.compute_features`.
"""

from __future__ import annotations

import math

import polars as pl

INTERCEPT_TWO_YEAR = 2.1217
INTERCEPT_ONE_YEAR = 1.40256
COPAS_WEIGHT = 1.25112
FIRST_TIME_TERM = 0.12614  # total sanctions = 1
REPEAT_TERM = 0.46306
MIN_AGE = 10

# (lowest age of the band, male term, female term); each band runs up to the next one's lowest age.
AGE_GENDER_BANDS: tuple[tuple[int, float, float], ...] = (
    (10, 0.0, 0.785),
    (12, 0.08392, 0.61385),
    (14, 0.07578, 0.66952),
    (16, -0.0616, -0.9592),
    (18, -0.6251, -0.8975),
    (21, -1.0515, -1.0285),
    (25, -1.1667, -1.0528),
    (30, -1.326, -1.1291),
    (35, -1.368, -1.4219),
    (40, -1.4997, -1.5247),
    (50, -2.0253, -2.4498),
)

# Offence term by OGRS3 offence group of the current sanction; violence is the reference (0).
OFFENCE_TERMS: dict[str, float] = {
    "violence": 0.0,
    "domestic_burglary": -0.1239,
    "other_burglary": 0.2406,
    "robbery": -0.6348,
    "theft_from_person": 0.6612,
    "shoplifting": 0.6612,
    "theft_from_vehicle": 0.4272,
    "theft_of_vehicle": 0.3801,
    "aggravated_vehicle_taking": 0.3801,
    "vehicle_interference": 0.2622,
    "criminal_damage": 0.205,
    "drug_possession_supply": 0.0772,
    "drug_import_production": -0.7956,
    "handling": 0.3519,
    "absconding_bail": 0.7334,
    "fraud": 0.1599,
    "public_order": 0.1819,
    "drink_driving": -0.1214,
    "sexual_child": -0.6534,
}

BANDS: tuple[tuple[int, str], ...] = ((90, "very high"), (75, "high"), (50, "medium"), (0, "low"))


def _intercept(years: int) -> float:
    if years == 2:
        return INTERCEPT_TWO_YEAR
    if years == 1:
        return INTERCEPT_ONE_YEAR
    raise ValueError("OGRS3 is defined for one or two years")


def age_gender_term(age: int, sex: str | None) -> float:
    if age < MIN_AGE:
        raise ValueError(f"OGRS3 needs an age of at least {MIN_AGE}")
    female = sex == "F"
    term = None
    for lowest, male_term, female_term in AGE_GENDER_BANDS:
        if age >= lowest:
            term = female_term if female else male_term
    assert term is not None
    return term


def copas_rate(total_sanctions: int, age_at_current: int, age_at_first: int) -> float:
    previous = total_sanctions - 1
    denominator = 10 + age_at_current - age_at_first
    if total_sanctions < 1 or denominator <= 0:
        raise ValueError("OGRS3 needs at least one sanction and a first sanction no later than the current one")
    return math.log((1 + previous) / denominator)


def ogrs3_probability(
    *,
    age: int,
    sex: str | None,
    total_sanctions: int,
    age_at_current: int,
    age_at_first: int,
    offence_group: str,
    years: int = 2,
) -> float:
    """Probability (0 to 1) of proven reoffending within `years` (1 or 2).

    age: whole years at the start of follow-up; total_sanctions: including the current one;
    ages at the current and first sanction in whole years; offence_group: a key of OFFENCE_TERMS.
    """
    if offence_group not in OFFENCE_TERMS:
        raise ValueError(f"unknown OGRS3 offence group {offence_group!r}")
    if age_at_current < MIN_AGE or age_at_first < MIN_AGE:
        raise ValueError(f"OGRS3 needs sanction ages of at least {MIN_AGE}")
    status = FIRST_TIME_TERM if total_sanctions == 1 else REPEAT_TERM
    s = (
        age_gender_term(age, sex)
        + COPAS_WEIGHT * copas_rate(total_sanctions, age_at_current, age_at_first)
        + status
        + OFFENCE_TERMS[offence_group]
    )
    x = _intercept(years) + s
    return math.exp(x) / (1 + math.exp(x))


_AGE_TERM_KEYS = [age * 2 + female for age in range(MIN_AGE, AGE_GENDER_BANDS[-1][0] + 1) for female in (0, 1)]
_AGE_TERM_VALUES = [age_gender_term(key // 2, "F" if key % 2 else "M") for key in _AGE_TERM_KEYS]


def ogrs3_band(percent: float | None) -> str | None:
    """Risk band of a two-year percentage: 0-49 low, 50-74 medium, 75-89 high, 90+ very high.

    Bands are on whole percentage points (the percentage is floored first), as in MoJ's code.
    """
    if percent is None or math.isnan(percent):
        return None
    whole = math.floor(percent)
    for lowest, label in BANDS:
        if whole >= lowest:
            return label
    return None


def ogrs3_band_expr(percent: pl.Expr) -> pl.Expr:
    whole = percent.floor()
    expr = pl.when(whole >= BANDS[0][0]).then(pl.lit(BANDS[0][1]))
    for lowest, label in BANDS[1:]:
        expr = expr.when(whole >= lowest).then(pl.lit(label))
    return expr.otherwise(None)


def ogrs3_percent_expr(
    age: pl.Expr,
    sex: pl.Expr,
    total_sanctions: pl.Expr,
    age_at_current: pl.Expr,
    age_at_first: pl.Expr,
    offence_group: pl.Expr,
    years: int = 2,
) -> pl.Expr:
    """Vectorised OGRS3 as a percentage (0-100); null where the inputs do not allow it."""
    female = (sex.fill_null("") == "F").cast(pl.Int64)
    # One lookup on (age, sex) rather than a chain of conditions: ages from the top band's
    # lowest up share its term, ages under MIN_AGE have none.
    top = AGE_GENDER_BANDS[-1][0]
    age_term = (age.clip(upper_bound=top) * 2 + female).replace_strict(
        _AGE_TERM_KEYS, _AGE_TERM_VALUES, default=None, return_dtype=pl.Float64
    )
    denominator = (10 + age_at_current - age_at_first).cast(pl.Float64)
    copas = (total_sanctions.cast(pl.Float64) / denominator).log()
    status = pl.when(total_sanctions == 1).then(pl.lit(FIRST_TIME_TERM)).otherwise(pl.lit(REPEAT_TERM))
    offence_term = offence_group.replace_strict(OFFENCE_TERMS, default=None, return_dtype=pl.Float64)
    x = _intercept(years) + age_term + COPAS_WEIGHT * copas + status + offence_term
    valid = (
        (total_sanctions >= 1)
        & (denominator > 0)
        & (age_at_current >= MIN_AGE)
        & (age_at_first >= MIN_AGE)
        & (age >= MIN_AGE)
    )
    # The logistic as 1 / (1 + e^-x): one exponential per row, the same value as e^x / (1 + e^x).
    return pl.when(valid.fill_null(False)).then(100 / (1 + (-x).exp())).otherwise(None)
