"""Figure style and saving shared by the notebooks (seaborn, paper-like panels)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns


def set_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 130, "savefig.bbox": "tight"})


def save(fig: plt.Figure, output_dir: Path | None, name: str) -> None:
    """Save ``fig`` as ``<output_dir>/figures/<name>.png`` (skipped when output_dir is None)."""
    if output_dir is not None:
        path = Path(output_dir) / "figures"
        path.mkdir(parents=True, exist_ok=True)
        fig.savefig(path / f"{name}.png")
