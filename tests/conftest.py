"""Shared test fixtures: paths to the real third-party data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data set (JMA telegrams, CAP, geo). Never edited."""
    if not (SHARED_DATA / "jma").is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}; set SHARED_DATA to ../shared/data")
    return SHARED_DATA
