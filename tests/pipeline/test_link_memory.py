"""Splink's scratch connection borrows the warehouse connection's memory and gives it back."""

import os
import stat

import duckdb
import pytest

from pipeline.link.probabilistic import WAREHOUSE_LIMIT_WHILE_SPLINK, _splink_con, _warehouse_memory_lent
from pipeline.warehouse import MEMORY_LIMIT


def _limit(con) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_the_warehouse_limit_is_lowered_while_splink_runs_and_restored_after_a_failure():
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")  # as every warehouse connection
    before = _limit(con)
    with pytest.raises(RuntimeError), _warehouse_memory_lent(con):
        assert _limit(con) != before
        assert _limit(con) == duckdb.connect(":memory:", config={"memory_limit": WAREHOUSE_LIMIT_WHILE_SPLINK}) \
            .execute("SELECT current_setting('memory_limit')").fetchone()[0]
        raise RuntimeError("splink failed")
    assert _limit(con) == before


def test_the_scratch_connection_can_spill_to_a_private_folder():
    scratch = _splink_con()
    folder = scratch.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    assert folder
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700  # names may be spilled: owner only
    scratch.close()
