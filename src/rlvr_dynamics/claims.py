"""Claim rows: ``claim, criterion, measured, reproduced`` printed by notebooks and saved as CSV.

Measured values are printed in a rounded, deterministic form so that nbval can compare
the cells that print them: errors as the decade that bounds them (``<1e-11``), other
numbers to three significant digits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd


def format_error(value: float) -> str:
    """Decade upper bound of a non-negative error, e.g. ``3.2e-12 -> '<1e-11'``."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    return f"<1e{math.floor(math.log10(value)) + 1}"


def format_number(value: float, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}g}" if math.isfinite(value) else str(value)


@dataclass
class Claim:
    claim: str
    criterion: str
    measured: str
    reproduced: str


class ClaimTable:
    """Accumulates claim rows; :meth:`check` records one row and prints it."""

    def __init__(self) -> None:
        self.rows: list[Claim] = []

    def check(self, claim: str, criterion: str, measured: str | float, passed: bool) -> Claim:
        text = measured if isinstance(measured, str) else format_number(measured)
        row = Claim(claim, criterion, text, "yes" if passed else "no")
        self.rows = [r for r in self.rows if (r.claim, r.criterion) != (claim, criterion)] + [row]
        print(pd.DataFrame([asdict(row)]).to_string(index=False))
        return row

    def untestable(self, claim: str, criterion: str, why: str) -> Claim:
        """Record a claim this run cannot test (e.g. a dataset the profile does not use)."""
        row = Claim(claim, criterion, why, "not testable here")
        self.rows = [r for r in self.rows if (r.claim, r.criterion) != (claim, criterion)] + [row]
        print(pd.DataFrame([asdict(row)]).to_string(index=False))
        return row

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows], columns=["claim", "criterion", "measured", "reproduced"])

    def write_csv(self, path: str | Path) -> None:
        self.frame().to_csv(path, index=False)
