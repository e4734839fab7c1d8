"""`iom demo`: the whole chain on a generated workspace, one step at a time.

The steps are those an analyst runs in a partnership's first months, in order: generate the
synthetic world (extracts, truth and the past panel decisions of a simulated scheme), ingest and
link, import the past decisions, back-test the ranking, estimate the scheme's impact, train the
advisory model, then two monthly runs (last month's, then this month's with the model beside the
rules) so that the pack shows movement, validity, impact and the model. `demo_steps` yields each
step's result as it finishes, so the CLI can show it at once; the workspace is locked throughout.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from pipeline.config import load_config
from pipeline.lock import workspace_lock

log = logging.getLogger(__name__)

FAULT_RATE = 0.002  # a small share of deliberately broken rows, to show the quarantine at work


@dataclass
class DemoStep:
    # generated, ingested, example_link, decisions, backtest, impact, trained, run
    name: str
    result: object
    config_path: Path


def demo_steps(directory: Path, people: int, seed: int, evidence: bool = True,
               progress: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               today: date | None = None) -> Iterator[DemoStep]:
    """Run the demo, yielding each step's result. `evidence` adds the decisions, back-test,
    impact and model steps; `progress` makes a context giving a progress callback (or None)."""
    from pipeline.workspace import generate_workspace, ingest_workspace

    when = (today or date.today()).replace(day=1)
    data, config_path = generate_workspace(directory, people, seed, when, FAULT_RATE, past_decisions=evidence)
    yield DemoStep("generated", (data, config_path, when), config_path)
    cfg = load_config(config_path)
    with workspace_lock(cfg.warehouse_path, "demo"):
        with progress() as bar:
            yield DemoStep("ingested", ingest_workspace(cfg, bar, evaluate=True), config_path)
        from pipeline.link.review import example_link

        yield DemoStep("example_link", example_link(cfg), config_path)
        model_ref = None
        if evidence:
            for step in _evidence_steps(cfg, config_path):
                yield step
                if step.name == "trained":
                    # shown beside the rules whether or not it became champion: the demo's point is
                    # to show it (a partnership scores with `champion`)
                    model_ref = str(step.result.model_version)
        from pipeline.run import run_period

        last_month = (when - timedelta(days=1)).replace(day=1)
        for as_of in (last_month, when):  # two monthly runs, so the pack shows movement since last month
            with progress() as bar:
                yield DemoStep("run", run_period(cfg, as_of, force=False, progress=bar,
                                                 model=model_ref if as_of == when else None), config_path)


def _evidence_steps(cfg, config_path: Path) -> Iterator[DemoStep]:
    from evaluation.backtest import run_backtest
    from evaluation.impact_run import run_impact
    from models.train import train_model
    from pipeline.decisions import import_decisions

    past = config_path.parent / "decisions" / "past_decisions.csv"
    if past.exists():
        yield DemoStep("decisions", import_decisions(cfg, past), config_path)
    yield DemoStep("backtest", run_backtest(cfg), config_path)
    if past.exists():
        yield DemoStep("impact", run_impact(cfg), config_path)
    yield DemoStep("trained", train_model(cfg), config_path)
