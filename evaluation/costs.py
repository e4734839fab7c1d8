"""The cost of crime by offence group: the shipped reference (evaluation/cost_of_crime.csv), the
config's overrides, and the uprating to a stated price year with the GDP deflator.

Source of the shipped figures: Home Office, "The economic and social costs of crime", second
edition (Heeks, Reed, Tafsiri and Prince, July 2018, Research Report 99), Table 1, 2015/16
prices. The figures marked `reported` agree with the table as a press report reproduced it
(South Wales Echo, 2 August 2019); the report's own table could not be read here. Groups the
report has no figure for carry a documented proxy, flagged `proxy` (docs/impact.md). No GDP
deflator values are shipped: uprating needs the two indices from one HM Treasury release.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.config import ImpactConfig
from pipeline.errors import ConfigError

COST_TABLE = Path(__file__).with_name("cost_of_crime.csv")
SOURCE = ('Home Office, "The economic and social costs of crime", second edition (Heeks, Reed, Tafsiri and '
          "Prince, July 2018, Research Report 99), Table 1, 2015/16 prices")
CAVEAT = ("Home Office figures as a press report reproduced Table 1 (South Wales Echo, 2 August 2019), not read "
          "from the report itself; rows marked proxy are not Home Office figures; 2015/16 prices unless uprated")
BASE_PRICE_YEAR = "2015/16"


def uprate(cost: float, deflator_base: float | None, deflator_target: float | None) -> float:
    """A cost at the base year's prices in the target year's: times target index / base index."""
    if deflator_base is None or deflator_target is None:
        return cost
    return cost * deflator_target / deflator_base


def unit_costs(settings: ImpactConfig, known_groups: set[str] | None = None) -> pl.DataFrame:
    """[one offence group]: offence_group, unit_cost (uprated; an override as given), status,
    ho_category, note. ConfigError for an override naming a group nobody knows."""
    table = pl.read_csv(COST_TABLE, schema_overrides={"unit_cost": pl.Float64, "ho_category": pl.Utf8})
    groups = set(table["offence_group"]) | (known_groups or set())
    unknown = sorted(set(settings.unit_costs) - groups)
    if unknown:
        raise ConfigError(f"[impact.unit_costs] names unknown offence group(s): {', '.join(unknown)}",
                          hint=f"allowed: {', '.join(sorted(groups))}")
    factor = uprate(1.0, settings.deflator_base, settings.deflator_target)
    table = table.with_columns(pl.col("unit_cost") * factor)
    if settings.unit_costs:
        override = pl.DataFrame({"offence_group": list(settings.unit_costs),
                                 "override": [float(v) for v in settings.unit_costs.values()]})
        table = (table.join(override, on="offence_group", how="full", coalesce=True)
                 .with_columns(pl.col("unit_cost").fill_null(0.0))
                 .with_columns(
                     pl.when(pl.col("override").is_not_null()).then(pl.lit("config")).otherwise(pl.col("status"))
                     .alias("status"),
                     pl.when(pl.col("override").is_not_null()).then(pl.lit("set in [impact.unit_costs]"))
                     .otherwise(pl.col("note")).alias("note"),
                     pl.coalesce("override", "unit_cost").alias("unit_cost"))
                 .drop("override"))
    return table.sort("offence_group")
