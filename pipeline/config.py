"""Workspace configuration: `iom.toml` loaded once into a typed object.

Precedence: the file, then environment variables (`IOM_WAREHOUSE`, `IOM_OUTPUTS`, `IOM_RULES`, and
MLflow's `MLFLOW_TRACKING_URI` for `[model] tracking_uri`), then command-line flags (applied by the
caller with `Config.with_overrides`). Relative paths are resolved against the folder holding `iom.toml`,
so a workspace can be moved or run from cron.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.contract import EXTRACTS
from pipeline.errors import ConfigError

CONFIG_FILENAME = "iom.toml"
Format = Literal["csv", "parquet", "xlsx"]
Encoding = Literal["utf-8", "utf-8-sig", "cp1252"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExtractConfig(_Strict):
    file: str = Field(description="path or glob, relative to the folder of iom.toml")
    format: Format | None = None
    encoding: Encoding = "utf-8"
    delimiter: str = ","
    date_formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d"])
    sheet: str | None = None
    header_row: int = Field(default=1, ge=1, le=1000)
    extract_date: date | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    # [extracts.NAME.values.COLUMN]: your value = the canonical value, for a coded column
    values: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if value in ("\\t", "tab"):
            return "\t"
        if len(value) != 1:
            raise ValueError("must be a single character such as ',', ';', '|' or '\\t'")
        return value

    @field_validator("date_formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must list at least one strptime format such as '%d/%m/%Y'")
        for fmt in value:
            if "%" not in fmt:
                raise ValueError(f"'{fmt}' is not a strptime format (e.g. '%Y-%m-%d', '%d/%m/%Y')")
        return value

    def format_for(self, path: Path) -> Format:
        if self.format:
            return self.format
        suffix = path.suffix.lower()
        return {".parquet": "parquet", ".pq": "parquet", ".xlsx": "xlsx", ".xlsm": "xlsx"}.get(suffix, "csv")


class WorkspaceConfig(_Strict):
    warehouse: Path = Path("warehouse.duckdb")
    outputs: Path = Path("outputs")
    rules: str = "default"
    offence_reference: Path | None = None
    period: Literal["month_start", "today"] = "month_start"
    max_rejected_percent: float | None = Field(default=None, ge=0, le=100)
    encryption_key_env: str | None = None
    # Packs sent by email: names and identifiers replaced by keyed pseudonyms in every output.
    pseudonymise: bool = False
    pseudonym_key_env: str = "IOM_PSEUDONYM_KEY"


class LinkingConfig(_Strict):
    """`[linking]`: the probabilistic step after the PNC and NOMIS links (docs/linking.md)."""

    probabilistic: bool = True
    # match probability at or above the upper threshold: linked; from `lower` up to it: the
    # review queue; below `lower`: no link. Two records of different agencies are linked from
    # `upper_threshold`, two of one agency (a duplicate CRN or nominal) from
    # `upper_threshold_within`: within one agency a pair of common names is more often two people
    # (docs/linking.md, "The upper thresholds"). Changes are recorded in CHANGELOG.md.
    upper_threshold: float = Field(default=0.60, gt=0, le=1)
    upper_threshold_within: float = Field(default=0.90, gt=0, le=1)
    lower_threshold: float = Field(default=0.50, gt=0, le=1)
    # also compare two records of the same agency (duplicate CRNs, nominals, prison numbers)
    within_source: bool = True
    # re-estimate the model when the number of records changed by more than this since it was estimated
    reestimate_change_percent: float = Field(default=20.0, ge=0)
    u_sample_pairs: int = Field(default=300_000, ge=1_000)
    # blocking: an extra block (pipeline/link/blocking.py) is used only while the pairs counted for
    # the blocks chosen stay within this many per record (docs/linking.md, "Blocking")
    pair_budget: float = Field(default=2.0, ge=0)
    # ... or this many pairs in all, if that is more: a small extract gets every block
    pair_budget_minimum: int = Field(default=1_000_000, ge=0)
    seed: int = 42

    @model_validator(mode="after")
    def _ordered(self) -> LinkingConfig:
        for key in ("upper_threshold", "upper_threshold_within"):
            if self.lower_threshold > getattr(self, key):
                raise ValueError(f"lower_threshold ({self.lower_threshold}) must not be above {key} "
                                 f"({getattr(self, key)})")
        return self
ModelKind = Literal["logistic", "hist_gradient_boosting"]


class ModelConfig(_Strict):
    """`[model]`: the optional advisory model (models/). Nothing here changes the rules."""

    use: str | None = Field(default=None, description="registered alias or version to score with; none: no model")
    name: str = Field(default="iom-reoffending", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    experiment: str = "iom-cohort"
    tracking_uri: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    kinds: list[ModelKind] = Field(default_factory=lambda: ["logistic", "hist_gradient_boosting"], min_length=1)
    calibration: Literal["isotonic", "sigmoid"] = "isotonic"
    horizon_days: int = Field(default=365, ge=1, le=3650)
    target: Literal["any", "neighbourhood", "violence"] = "any"
    every: str = "1m"
    test_snapshots: int | None = Field(default=None, ge=1)
    test_people_share: float = Field(default=0.3, gt=0, lt=1)
    calibration_people_share: float = Field(default=0.2, gt=0, lt=1)
    embargo: bool = False
    min_positives: int = Field(default=30, ge=1)
    champion_margin: float = Field(default=0.01, ge=-1, le=1)
    # Keep the logistic regression unless another candidate's calibration AUC beats it by this
    # much: it scores several times faster and its contributions are exact (docs/model.md)
    prefer_logistic_within: float = Field(default=0.005, ge=0, le=1)
    exclude_features: list[str] = Field(default_factory=list)
    max_people: int | None = Field(default=None, ge=100)
    seed: int = 20261201
    disagreement_top_percent: float = Field(default=10.0, gt=0, le=50)
    # OpenMP threads for fitting and scoring: one by default, as more spin and stall on a shared machine
    threads: int = Field(default=1, ge=1, le=64)


class StaffCost(_Strict):
    """One role of the IOM team: its full-time equivalents and the annual cost of one FTE (salary and on-costs)."""

    role: str = Field(min_length=1)
    fte: float = Field(ge=0)
    annual_cost: float = Field(ge=0)


class ImpactConfig(_Strict):
    """`[impact]`: the impact analysis and the break-even (evaluation/impact.py, docs/impact.md)."""

    staff: list[StaffCost] = Field(default_factory=list)
    intervention_per_person_month: float = Field(default=0.0, ge=0)
    fixed_annual: float = Field(default=0.0, ge=0)
    # Unit costs by offence group, replacing the shipped table's (evaluation/cost_of_crime.csv), in
    # the prices the table is uprated to.
    unit_costs: dict[str, float] = Field(default_factory=dict)
    # The GDP deflator index at the table's price year (2015/16) and at the target year: enter them
    # from HM Treasury's GDP deflator series; both unset: the table's own 2015/16 prices.
    deflator_base: float | None = Field(default=None, gt=0)
    deflator_target: float | None = Field(default=None, gt=0)
    price_year: str = "2015/16"
    min_cell: int = Field(default=10, ge=1)
    bootstrap_resamples: int = Field(default=200, ge=20, le=5000)
    max_pre_offences: int = Field(default=30, ge=3)  # pre-period counts above this are matched as one stratum
    did_min_pre_offences: int = Field(default=3, ge=1)  # the DiD comparison: non-selected people with at least this
    # The headline compares people from each area's capacity line to this many offences (in the
    # year before) above it: the local design around the cut (docs/impact.md)
    bandwidth: int = Field(default=2, ge=0)
    seed: int = 20261201

    @model_validator(mode="after")
    def _costs_not_negative(self) -> ImpactConfig:
        for group, cost in self.unit_costs.items():
            if cost < 0:
                raise ValueError(f"unit_costs.{group} is {cost}: a unit cost cannot be negative")
        if (self.deflator_base is None) != (self.deflator_target is None):
            raise ValueError("give both deflator_base and deflator_target, or neither")
        return self


def _check_value_mapping(extract: str, column: str, mapping: dict[str, str]) -> None:
    """`[extracts.NAME.values.COLUMN]` must name a coded column and map to its canonical values."""
    coded = {c.name: c for c in EXTRACTS[extract].columns if c.allowed}
    where = f"[extracts.{extract}.values.{column}]"
    if column not in coded:
        raise ValueError(f"{where}: '{column}' is not a coded column of {extract}; coded columns: "
                         f"{', '.join(coded) or 'none'}")
    allowed = coded[column].allowed
    for theirs, ours in mapping.items():
        if ours.strip().lower().replace(" ", "_").replace("-", "_") not in {a.lower() for a in allowed}:
            raise ValueError(f"{where}: \"{theirs}\" maps to '{ours}', which is not a value of {column}; "
                             f"allowed: {', '.join(allowed)}")


class Config(_Strict):
    path: Path
    workspace: WorkspaceConfig = WorkspaceConfig()
    linking: LinkingConfig = LinkingConfig()
    model: ModelConfig = ModelConfig()
    impact: ImpactConfig = ImpactConfig()
    extracts: dict[str, ExtractConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_extracts_and_columns(self) -> Config:
        for name, extract in self.extracts.items():
            if name not in EXTRACTS:
                raise ValueError(
                    f"[extracts.{name}] is not a known extract; allowed: {', '.join(EXTRACTS)}"
                )
            allowed = EXTRACTS[name].column_names
            targets: dict[str, str] = {}
            for source_column, canonical in extract.columns.items():
                if canonical not in allowed:
                    raise ValueError(
                        f"[extracts.{name}.columns] \"{source_column}\" maps to '{canonical}', which is not "
                        f"a column of {name}; allowed: {', '.join(allowed)}"
                    )
                if canonical in targets:
                    raise ValueError(
                        f"[extracts.{name}.columns] both \"{targets[canonical]}\" and \"{source_column}\" "
                        f"map to '{canonical}'; map each canonical column once"
                    )
                targets[canonical] = source_column
            for column, mapping in extract.values.items():
                _check_value_mapping(name, column, mapping)
        return self

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, path: Path | str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def warehouse_path(self) -> Path:
        return self.resolve(self.workspace.warehouse)

    @property
    def outputs_path(self) -> Path:
        return self.resolve(self.workspace.outputs)

    def pseudonym_lookup_path(self, run_id: str) -> Path:
        """The analyst's lookup of a pseudonymised run (outside its folder, which may be sent on)."""
        return self.outputs_path / "pseudonyms" / f"{run_id}.csv"

    def with_overrides(self, **workspace_overrides) -> Config:
        changes = {k: v for k, v in workspace_overrides.items() if v is not None}
        if not changes:
            return self
        return self.model_copy(update={"workspace": self.workspace.model_copy(update=changes)})


def _describe(error: ValidationError, path: Path) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"] if part != "__root__")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see `iom init` for a commented template)"
        elif item["type"] == "literal_error" and "expected" in item.get("ctx", {}):
            message = f"got {item['input']!r}; allowed: {item['ctx']['expected']}"
        lines.append(f"{path}: {key or '(top level)'}: {message}")
    return "\n".join(lines)


def load_config(path: Path | str | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read `iom.toml`; raise ConfigError naming the file, the key and what is allowed."""
    path = Path(path or CONFIG_FILENAME).expanduser().absolute()
    env = os.environ if environ is None else environ
    if path.is_dir():
        path = path / CONFIG_FILENAME
    if not path.is_file():
        raise ConfigError(
            f"config file not found: {path}",
            hint="run `iom init DIR` to write a commented iom.toml, or pass --config PATH",
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None

    workspace = dict(raw.get("workspace", {}))
    for key, variable in (("warehouse", "IOM_WAREHOUSE"), ("outputs", "IOM_OUTPUTS"), ("rules", "IOM_RULES")):
        if env.get(variable):
            workspace[key] = env[variable]
    raw["workspace"] = workspace
    if env.get("MLFLOW_TRACKING_URI"):  # MLflow's own variable, so a shared store is set once per machine
        raw["model"] = {**raw.get("model", {}), "tracking_uri": env["MLFLOW_TRACKING_URI"]}
    try:
        return Config(path=path, **raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --- writing a commented iom.toml ------------------------------------------------------------

_HEADER = """\
# IOM Cohort workspace configuration.
# Paths are relative to the folder holding this file. Every command takes --config PATH.
# Environment variables IOM_WAREHOUSE, IOM_OUTPUTS and IOM_RULES override the [workspace] keys.

[workspace]
# The DuckDB warehouse file: loads, rejects, people, runs, scores, cohorts, decisions.
warehouse = "{warehouse}"
# Each run writes its outputs to OUTPUTS/RUN_ID/.
outputs = "{outputs}"
# Rule set: "default" (the shipped rules/default.toml) or a path to your own TOML rule file.
rules = "default"
# Offence reference table (Home Office code -> group, flags, gravity). Empty: the shipped table.
# offence_reference = "offence_reference.csv"
# The as-of date of `iom run` without --as-of: "month_start" (first day of this month) or "today".
period = "month_start"
# Fail the run (exit 5) when any source rejects more than this percentage of its rows.
# max_rejected_percent = 5.0
# Encrypt the warehouse at rest: name an environment variable that holds the key.
# encryption_key_env = "IOM_WAREHOUSE_KEY"
# Pseudonymised outputs (packs sent by email): names and identifiers replaced by keyed HMAC
# pseudonyms in every output; the key is read from the named environment variable and the
# analyst's lookup is written to OUTPUTS/pseudonyms/RUN_ID.csv (owner-only).
# pseudonymise = true
# pseudonym_key_env = "IOM_PSEUDONYM_KEY"

[linking]
# After the PNC and NOMIS links, records without a shared identifier are compared with Splink
# (names, date of birth, sex, area); see docs/linking.md. Match probability at or above the
# upper threshold: linked (upper_threshold for two records of different agencies,
# upper_threshold_within for two of one agency); from lower_threshold up to it: the clerical
# review queue (`iom links review`); below: no link. Two different PNC ids are never merged.
probabilistic = true
upper_threshold = 0.60
upper_threshold_within = 0.90
lower_threshold = 0.50
# also look for duplicates within one agency (two CRNs or two nominals of one person)
within_source = true
# the model is re-estimated by `iom links estimate`, or when the records change by more than this
reestimate_change_percent = 20.0
# blocking: extra blocks (a name and the date both corrupted) are used while the pairs they
# generate stay within this many per record (docs/linking.md, "Blocking")
pair_budget = 2.0
pair_budget_minimum = 1000000
# The optional advisory model (`iom train`, docs/model.md): shown beside the rules, never instead.
# Uncomment [model] and the keys you set.
# [model]
# Score with a registered model in every `iom run` (or pass `iom run --model champion`):
# use = "champion"
# MLflow tracking store; default an embedded one in this folder (mlflow/mlflow.db). A plain path is
# an SQLite store (share one between workspaces); MLFLOW_TRACKING_URI overrides this key.
# tracking_uri = "/srv/iom/mlflow/mlflow.db"
# Pin the artefact: refuse any model file whose sha256 differs (the hash `iom train` prints).
# sha256 = "..."
# Features the model may not read (e.g. the age-derived ones; see the model card):
# exclude_features = ["first_sanction_age", "career_years", "copas_rate", "ogrs3_2yr"]
# Move the alias `champion` only when the model's test AUC beats the rules score's by this much:
# champion_margin = 0.01
# Candidates; the logistic regression is kept unless another beats its calibration AUC by
# prefer_logistic_within (gradient boosting costs several times as much to score in a run):
# kinds = ["logistic", "hist_gradient_boosting"]
# prefer_logistic_within = 0.005
"""

_EXTRACT = """\

[extracts.{name}]
# {description}
file = "{file}"            # a path or a glob such as "police/offences_*.csv"
format = "{format}"        # csv, parquet or xlsx (inferred from the file name when left out)
encoding = "{encoding}"    # utf-8, utf-8-sig (with BOM) or cp1252 (Windows Excel exports)
delimiter = "{delimiter}"  # CSV only
date_formats = [{date_formats}]  # tried in order; ISO yyyy-mm-dd is always accepted
# extract_date = 2026-11-01  # dates after this are rejected; default: the day of the ingest
# sheet = "Sheet1"           # XLSX only; default the first sheet
# header_row = 1             # XLSX/CSV: the row holding the column names (for title rows above it)

[extracts.{name}.columns]
# Your column name = canonical column name. Canonical columns of {name}:
# {canonical}
# (required: {required})
{mapping}{values}"""


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'


def _values_example(contract) -> str:
    """A commented `[extracts.NAME.values.COLUMN]` for the extract's first coded column (sex is read
    in words already, so another one when there is one)."""
    coded = [c for c in contract.columns if c.allowed and c.name != "sex"] or [c for c in contract.columns if c.allowed]
    if not coded:
        return ""
    column = coded[0]
    return (f"\n# Coded values in your system's own words: your value = canonical value. Allowed for {column.name}:\n"
            f"# {', '.join(column.allowed)}\n# [extracts.{contract.name}.values.{column.name}]\n"
            f"# \"Your value\" = \"{column.allowed[0]}\"\n")


def render_config(
    extracts: Iterable[dict],
    warehouse: str = "warehouse.duckdb",
    outputs: str = "outputs",
) -> str:
    """Render a commented iom.toml. Each extract dict has name, file, and optionally format,
    encoding, delimiter, date_formats, columns (source -> canonical), extract_date."""
    parts = [_HEADER.format(warehouse=warehouse, outputs=outputs)]
    for spec in extracts:
        contract = EXTRACTS[spec["name"]]
        mapping = spec.get("columns") or {c: c for c in contract.column_names}
        body = _EXTRACT.format(
            name=contract.name,
            description=contract.description,
            file=spec["file"],
            format=spec.get("format", "csv"),
            encoding=spec.get("encoding", "utf-8"),
            delimiter=spec.get("delimiter", ",").replace("\t", "\\t"),
            date_formats=", ".join(_toml_string(f) for f in spec.get("date_formats", ["%Y-%m-%d"])),
            canonical=", ".join(contract.column_names),
            required=", ".join(contract.required_columns),
            mapping="\n".join(f"{_toml_string(k)} = {_toml_string(v)}" for k, v in mapping.items()) + "\n",
            values=_values_example(contract),
        )
        if spec.get("extract_date"):
            body = body.replace(
                "# extract_date = 2026-11-01  # dates after this are rejected; default: the day of the ingest",
                f"extract_date = {spec['extract_date'].isoformat()}  # dates after this are rejected",
            )
        parts.append(body)
    return "".join(parts)


def default_extract_specs() -> list[dict]:
    return [{"name": name, "file": f"extracts/{name}.csv"} for name in EXTRACTS]
