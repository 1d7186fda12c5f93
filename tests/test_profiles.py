"""The gpu and paper profiles resolve and validate without a GPU (dry run), and scale-out files parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlvr_dynamics import gradient_gap_lm
from rlvr_dynamics.lm.engine import grpo_config
from rlvr_dynamics.pipeline import ROOT, check_stages, load_params, resolve_stage_params


@pytest.mark.parametrize("profile", ["cpu", "gpu", "paper"])
def test_every_stage_validates_on_every_profile(profile, capsys):
    check_stages(ROOT / "params.yaml", profile)
    assert capsys.readouterr().out.count(": ok") >= 3


def test_paper_profile_resolves_to_the_e3a_recipe(tmp_path):
    _, params = resolve_stage_params("02_gradient_gap_grpo", load_params(ROOT / "params.yaml"), "paper")
    engine = gradient_gap_lm.engine_config(params, "grpo", params.main_learning_rate)
    args = grpo_config(engine, tmp_path)
    # spec E3a: 4 prompts x G = 4, lr 5e-6 AdamW, beta 0, completion 256, loss_type grpo, group std, T = 1
    assert (args.per_device_train_batch_size, args.num_generations) == (16, 4)
    assert (args.learning_rate, args.optim, args.beta, args.max_completion_length) == (5e-6, "adamw_torch", 0.0, 256)
    assert (args.loss_type, args.scale_rewards, args.temperature, args.num_iterations) == ("grpo", "group", 1.0, 1)
    assert args.use_vllm and args.max_grad_norm == 1.0 and args.max_steps == 3000
    assert params.task == "gsm8k" and params.base_model == "Qwen/Qwen2.5-Math-7B"


def test_launcher_dry_run_validates_without_training(capsys, tmp_path):
    code = gradient_gap_lm.main(["--profile", "paper", "--dry-run", "--run-dir", str(tmp_path)])
    assert code == 0 and '"use_vllm": true' in capsys.readouterr().out
    assert gradient_gap_lm.main(["--profile", "paper", "--rule", "ppo", "--dry-run", "--run-dir", str(tmp_path)]) == 2
    assert "allowed values" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["deepspeed_zero2", "deepspeed_zero3", "fsdp"])
def test_accelerate_configs_parse(name):
    config = yaml.safe_load((ROOT / "configs" / "accelerate" / f"{name}.yaml").read_text())
    assert config["distributed_type"] in ("DEEPSPEED", "FSDP") and config["num_processes"] >= 1
    if name.startswith("deepspeed"):
        assert config["deepspeed_config"]["zero_stage"] == int(name[-1])
    from accelerate.commands.config.config_args import ClusterConfig

    assert (
        ClusterConfig.from_yaml_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml")).distributed_type.value
        == config["distributed_type"]
    )


def test_real_task_split_is_seeded_80_20(shared_data):
    dataset, prompts, references = gradient_gap_lm.real_task_split("gsm8k", "easy", str(shared_data), 32, seed=0)
    again, _, _ = gradient_gap_lm.real_task_split("gsm8k", "easy", str(shared_data), 32, seed=0)
    assert len(dataset) == int(0.8 * 7473) and dataset[0] == again[0]
    assert len(prompts) == 32 and prompts[0][0]["role"] == "system" and "boxed" in prompts[0][0]["content"]
    assert all(r.replace("-", "").replace(".", "").isdigit() for r in references)


def test_paths_resolve_from_any_directory(monkeypatch, tmp_path):
    from rlvr_dynamics.paths import repo_path

    monkeypatch.chdir(tmp_path)
    assert Path(repo_path("params.yaml")) == ROOT / "params.yaml"
    assert repo_path("Qwen/Qwen2.5-Math-7B") == "Qwen/Qwen2.5-Math-7B"
