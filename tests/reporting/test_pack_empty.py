"""A run that proposes nobody still gets a pack and a workbook that say so."""

from __future__ import annotations

from datetime import date

import openpyxl
import pytest
from builders import example_row

from pipeline.run import run_period


@pytest.mark.slow
def test_a_run_with_nobody_proposed_writes_a_pack_and_a_workbook(workspace):
    config = workspace({"police_nominals": [example_row("police_nominals")],
                        "police_offences": [example_row("police_offences")]})
    result = run_period(config, date(2026, 11, 1))
    assert result.status == "completed"
    html = (result.output_dir / "pack.html").read_text(encoding="utf-8")
    assert '<tr data-key=' not in html and '<article class="card"' not in html
    assert "No members in either cohort." in html and "This is the first run" in html
    book = openpyxl.load_workbook(result.output_dir / "pack.xlsx")
    assert book["decisions"].max_row == 1  # the header alone
