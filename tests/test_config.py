"""Parameter validation, the stage runner's dry run and its restore-on-failure."""

import shutil
from pathlib import Path

import pytest
import yaml

from rlvr_dynamics import pipeline
from rlvr_dynamics.claims import format_error
from rlvr_dynamics.config import GradientGapBanditParams, ParameterError, validate

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_key_is_named_with_allowed_keys():
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['mab_stpes'\].*allowed keys"):
        validate(GradientGapBanditParams, {"mab_stpes": 10})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mab_steps": 0}, r"'mab_steps' = 0 is invalid: allowed values are an integer >= 1"),
        ({"mab_steps": 2.5}, r"'mab_steps' = 2.5 is invalid"),
        ({"mab_step_sizes": [0.1, -1.0]}, r"'mab_step_sizes\[1\]' = -1.0 is invalid: allowed values are a number >= 0.0"),
        ({"x3_lengths": []}, r"'x3_lengths' = \[\] must be a non-empty list"),
        ({"seed": True}, r"'seed' = True is invalid"),
    ],
)
def test_invalid_values_are_named(values, message):
    with pytest.raises(ParameterError, match=message):
        validate(GradientGapBanditParams, values)


def test_every_profile_of_params_yaml_validates():
    params = pipeline.load_params(ROOT / "params.yaml")
    for profile in ("cpu", "gpu", "paper"):
        _, stage_params = pipeline.resolve_stage_params("01_gradient_gap_bandits", params, profile)
        assert isinstance(stage_params, GradientGapBanditParams)


def test_unknown_profile_and_stage_are_refused():
    params = pipeline.load_params(ROOT / "params.yaml")
    with pytest.raises(ParameterError, match=r"'profile' = 'tpu' is invalid: allowed values are \['cpu', 'gpu', 'paper'\]"):
        pipeline.resolve_stage_params("01_gradient_gap_bandits", params, "tpu")
    with pytest.raises(ParameterError, match="unknown stage"):
        pipeline.resolve_stage_params("99_nothing", params)


def test_check_command_dry_run(capsys):
    assert pipeline.main(["check", "--profile", "paper"]) == 0
    assert "01_gradient_gap_bandits [paper]: ok" in capsys.readouterr().out


def test_bad_parameter_stops_before_any_work(tmp_path, capsys):
    params = pipeline.load_params(ROOT / "params.yaml")
    params["gradient_gap_bandits"]["cpu"]["cb_steps"] = -5
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    assert pipeline.main(["run", "01_gradient_gap_bandits", "--params", str(bad)]) == 2
    assert "'cb_steps' = -5 is invalid" in capsys.readouterr().err


def test_failed_stage_restores_previous_results(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    previous = root / "results" / "01_gradient_gap_bandits"
    previous.mkdir(parents=True)
    (previous / "claims.csv").write_text("earlier results\n")
    monkeypatch.setattr(pipeline, "ROOT", root)
    monkeypatch.chdir(root)

    def crash(*args, **kwargs):
        (root / "results" / "01_gradient_gap_bandits" / "partial.ipynb").write_text("half written")
        raise RuntimeError("kernel died")

    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", crash)
    with pytest.raises(RuntimeError, match="kernel died"):
        pipeline.run_stage("01_gradient_gap_bandits", root / "params.yaml")
    assert (previous / "claims.csv").read_text() == "earlier results\n"
    assert not (previous / "partial.ipynb").exists()
    assert not (root / "results" / ".01_gradient_gap_bandits.previous").exists()


def test_format_error_decades():
    assert format_error(3.2e-12) == "<1e-11"
    assert format_error(0.0) == "0"
    assert format_error(1e-9) == "<1e-8"
