"""Workspace-level jobs behind the CLI: init, generate, ingest-and-link, the demo."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipeline.config import CONFIG_FILENAME, Config, default_extract_specs, render_config
from pipeline.errors import UsageError
from pipeline.ingest import LoadResult, Progress, ingest
from pipeline.link import LinkSummary, ensure_linked, link_identities
from pipeline.link.evaluate import evaluate_links, truth_path
from pipeline.warehouse import connect, private_file, transaction

log = logging.getLogger(__name__)


def init_workspace(directory: Path, force: bool = False) -> Path:
    """Write a commented iom.toml (and an empty extracts/ folder) into DIR."""
    directory = Path(directory)
    target = directory / CONFIG_FILENAME
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="use --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / "extracts").mkdir(exist_ok=True, mode=0o700)
    target.write_text(render_config(default_extract_specs()), encoding="utf-8")
    private_file(target)
    log.info("wrote %s", target.name)
    return target


# The synthetic world's scheme has a team, so that `iom impact` shows a break-even: the figures
# of docs/impact.md's example, not any real partnership's.
ILLUSTRATIVE_COSTS = """
# The costs of the simulated IOM scheme, for `iom impact`'s break-even (docs/impact.md).
# ILLUSTRATIVE figures for the synthetic world, not a real team's: set your own.
[impact]
intervention_per_person_month = 150.0   # drug, housing, ETE services bought per person managed
fixed_annual = 20000.0                  # premises, systems
[[impact.staff]]
role = "police offender manager"
fte = 4
annual_cost = 52000.0                   # salary and on-costs of one FTE
[[impact.staff]]
role = "probation practitioner"
fte = 3
annual_cost = 48000.0
"""


def generate_workspace(
    directory: Path,
    people: int,
    seed: int,
    extract_date: date,
    fault_rate: float,
    progress=None,
    *,
    past_decisions: bool = True,
    treatment_effect: float = 0.0,
    identity_noise: float = 1.0,
):
    """Write synthetic extracts and a matching iom.toml into DIR; return (GeneratedData, config path).

    The truth (`truth/`) and the simulated panel's past decisions (`decisions/`) go beside the
    extracts; the config does not name them, so the pipeline never reads them."""
    from synthetic import PastDecisions, generate_extracts  # numpy-heavy: import only when generating

    if people < 1:
        raise UsageError("--people must be at least 1")
    if not 0 <= fault_rate < 0.5:
        raise UsageError("--fault-rate must be at least 0 and below 0.5")
    if not 0 <= treatment_effect < 1:
        raise UsageError("--treatment-effect must be at least 0 and below 1")
    if not 0 <= identity_noise <= 5:
        raise UsageError("--identity-noise must be between 0 and 5")
    directory = Path(directory).absolute()
    extracts_dir = directory / "extracts"
    decisions = PastDecisions(treatment_effect=treatment_effect) if past_decisions else None
    try:
        data = generate_extracts(extracts_dir, people=people, seed=seed, extract_date=extract_date,
                                 fault_rate=fault_rate, progress=progress, past_decisions=decisions,
                                 identity_noise=identity_noise)
    except ValueError as exc:  # the generator's own argument checks (e.g. too many people)
        raise UsageError(str(exc)) from exc
    specs = [
        {
            "name": e.name,
            "file": str(e.path.relative_to(directory)),
            "format": e.format,
            "encoding": e.encoding,
            "delimiter": e.delimiter,
            "date_formats": e.date_formats,
            "columns": e.column_mapping,
            "extract_date": extract_date,
        }
        for e in data.extracts
    ]
    config_path = directory / CONFIG_FILENAME
    config_path.write_text(render_config(specs) + (ILLUSTRATIVE_COSTS if past_decisions else ""), encoding="utf-8")
    private_file(config_path)
    return data, config_path


@dataclass
class IngestReport:
    loads: list[LoadResult]
    link: LinkSummary
    reconciliation: list[dict]
    relinked: bool = True  # false when nothing that decides the links changed since the last link
    evaluation: object = None  # precision and recall against a synthetic truth file, when there is one


def ingest_workspace(config: Config, progress: Progress | None = None, evaluate: bool = False) -> IngestReport:
    """Ingest every new extract file, then link identities if the loads (or the linking code)
    changed since the last link; one warehouse transaction each. With `evaluate`, the links are
    also scored against a synthetic truth file beside iom.toml, when there is one."""
    con = connect(config)
    try:
        loads = ingest(config, progress=progress, con=con)
        con.execute("CHECKPOINT")  # settle the batch commits of the ingest before the link rewrites tables
        with transaction(con):
            summary, relinked = ensure_linked(con, config.linking)
        rows = con.execute(
            "SELECT source, count(*) AS files, sum(rows_read) AS rows_read, sum(rows_loaded) AS rows_loaded, "
            "sum(rows_rejected) AS rows_rejected FROM loads GROUP BY source ORDER BY source"
        ).fetchall()
        truth = truth_path(config) if evaluate else None
        evaluation = evaluate_links(con, truth) if truth is not None else None
    finally:
        con.close()
    reconciliation = [
        {"source": r[0], "files": r[1], "rows_read": r[2], "rows_loaded": r[3], "rows_rejected": r[4]} for r in rows
    ]
    return IngestReport(loads, summary, reconciliation, relinked, evaluation)


def relink_workspace(config: Config, reestimate: bool = False) -> LinkSummary:
    """Relink now (`iom links estimate`: with a newly estimated model), in one transaction."""
    con = connect(config)
    try:
        with transaction(con):
            return link_identities(con, config.linking, reestimate=reestimate)
    finally:
        con.close()
