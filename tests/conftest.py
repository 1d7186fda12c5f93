"""Shared test fixtures: the local dataset root (tests and CI point it at ../shared/data), the character
tokenizer and a small arithmetic RL dataset of the engine tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RLVR_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"no local datasets at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer():
    from rlvr_dynamics.lm.tiny import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="session")
def dataset():
    from rlvr_dynamics.lm.base_policy import rl_dataset

    return rl_dataset("easy", 64)
