"""Paths relative to the repository root, so notebooks resolve them the same from any working directory."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def repo_path(path: str | Path) -> str:
    """``path`` itself if absolute, existing from here, or not a repository path (a hub id); else ROOT/path."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return str(path)
    rooted = ROOT / candidate
    return str(rooted) if rooted.exists() or str(path).startswith(("results", "data", "models")) else str(path)
