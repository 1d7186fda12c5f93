"""Run a numbered notebook as a DVC stage: validate, execute with papermill, keep old results on failure.

``python -m rlvr_dynamics.pipeline run 01_gradient_gap_bandits`` reads ``params.yaml``,
selects the section of the stage (``gradient_gap_bandits``) and, in it, the block of
the chosen ``profile`` (``cpu`` / ``gpu`` / ``paper``), validates every value against
the notebook's parameter dataclass (:mod:`rlvr_dynamics.config`) *before* any work, and
executes ``notebooks/<stage>.ipynb`` with papermill, injecting the parameters plus
``output_dir=results/<stage>``. It is the same as

    papermill notebooks/<stage>.ipynb results/<stage>/<stage>.ipynb -f <profile block> -p output_dir results/<stage>

The previous ``results/<stage>/`` is moved aside while the notebook runs and put back if
execution fails or is interrupted, so a failed stage never destroys earlier results.

``python -m rlvr_dynamics.pipeline check [--profile paper]`` validates every stage of a
profile without running anything (a dry run).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from rlvr_dynamics.config import NOTEBOOK_PARAMS, ParameterError, check_profile, validate

ROOT = Path(__file__).resolve().parents[2]


def section_name(stage: str) -> str:
    """``01_gradient_gap_bandits`` -> ``gradient_gap_bandits`` (the params.yaml section)."""
    return re.sub(r"^\d+_", "", stage)


def resolve_stage_params(stage: str, params: dict[str, Any], profile: str | None = None) -> tuple[str, Any]:
    """The validated parameter dataclass of ``stage`` for ``profile`` (default: params['profile'])."""
    if stage not in NOTEBOOK_PARAMS:
        raise ParameterError(f"unknown stage {stage!r}; allowed stages are {sorted(NOTEBOOK_PARAMS)}")
    profile = check_profile(profile if profile is not None else params.get("profile", "cpu"))
    section = params.get(section_name(stage))
    if not isinstance(section, dict) or profile not in section:
        raise ParameterError(f"params.yaml has no block {section_name(stage)}.{profile} for stage {stage!r}")
    where = f" in params.yaml block {section_name(stage)}.{profile}"
    return profile, validate(NOTEBOOK_PARAMS[stage], section[profile] or {}, where)


def load_params(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def run_stage(stage: str, params_file: Path) -> None:
    import papermill  # imported here: `check` must not need a Jupyter stack

    profile, stage_params = resolve_stage_params(stage, load_params(params_file))
    output_dir = Path("results") / stage
    backup = Path("results") / f".{stage}.previous"
    os.chdir(ROOT)
    if backup.exists() and not output_dir.exists():  # an earlier run was killed mid-way
        backup.rename(output_dir)
    shutil.rmtree(backup, ignore_errors=True)
    if output_dir.exists():
        output_dir.rename(backup)
    output_dir.mkdir(parents=True)
    parameters = dataclasses.asdict(stage_params) | {"output_dir": str(output_dir), "profile": profile}
    print(f"[{stage}] profile={profile}; papermill notebooks/{stage}.ipynb {output_dir}/{stage}.ipynb", flush=True)
    try:
        papermill.execute_notebook(
            f"notebooks/{stage}.ipynb", str(output_dir / f"{stage}.ipynb"), parameters=parameters, cwd=str(ROOT)
        )
    except BaseException:
        shutil.rmtree(output_dir, ignore_errors=True)
        if backup.exists():
            backup.rename(output_dir)
            print(f"[{stage}] failed: previous results restored in {output_dir}", file=sys.stderr)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def check_stages(params_file: Path, profile: str | None) -> None:
    params = load_params(params_file)
    for stage in sorted(NOTEBOOK_PARAMS):
        chosen, stage_params = resolve_stage_params(stage, params, profile)
        print(f"{stage} [{chosen}]: ok ({len(dataclasses.fields(stage_params))} parameters)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one notebook stage")
    run.add_argument("stage")
    check = sub.add_parser("check", help="validate every stage of a profile without running")
    check.add_argument("--profile", default=None, help="profile to validate (default: the one in params.yaml)")
    for p in (run, check):
        p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run_stage(args.stage, args.params)
        else:
            check_stages(args.params, args.profile)
    except ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
