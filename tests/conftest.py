"""Shared fixtures; the helpers they use are in `builders.py` (the one workspace builder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import write_workspace


@pytest.fixture
def workspace(tmp_path: Path):
    """Build a tiny workspace in tmp_path: `workspace(rows, overrides)` returns its Config."""
    def build(rows=None, overrides=None):
        return write_workspace(tmp_path, rows, overrides)

    return build
