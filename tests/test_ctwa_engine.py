"""The weighting methods inside the one engine: every method x estimator trains, statistics are what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvr_dynamics.lm.engine import EngineConfig, train_policy
from rlvr_dynamics.lm.tiny import build_tiny_llama
from rlvr_dynamics.multiobjective.control import ObjectiveControl, gradient_cosines
from rlvr_dynamics.multiobjective.methods import METHODS, make_method


def has_digit(completions, **_):
    return [float(any(ch.isdigit() for ch in c)) for c in completions]


def short(completion_ids, **_):
    return [float(len(ids) <= 3) for ids in completion_ids]


def has_plus(completions, **_):
    return [float("+" in c) for c in completions]


REWARDS = [has_digit, short, has_plus]


def train(tokenizer, dataset, method_name, estimator="reinforce_pp", steps=2, cosines=False, **options):
    model = build_tiny_llama(tokenizer, seed=0)
    method = make_method(method_name, **options)
    control = ObjectiveControl(method, estimator, 100.0 if estimator == "reinforce_pp" else 0.2, gradient_cosines=cosines)
    config = EngineConfig(update_rule="ppo_clip", optimizer="adamw", learning_rate=1e-2, max_steps=2 * steps,
                          prompts_per_step=4, generations=4, max_completion_length=6, ppo_iterations=2,
                          clip_epsilon=100.0 if estimator == "reinforce_pp" else 0.2, beta=method.kl_coefficient,
                          max_grad_norm=1.0, seed=0)
    result = train_policy(model, tokenizer, dataset, REWARDS, config, [control])
    return result, control


@pytest.mark.parametrize("estimator", ["reinforce_pp", "grpo"])
@pytest.mark.parametrize("method_name", list(METHODS))
def test_every_method_trains_through_the_engine(tokenizer, dataset, method_name, estimator):
    result, control = train(tokenizer, dataset, method_name, estimator)
    assert result.outcome == "completed"
    steps = result.steps
    weights = steps.filter(like="weight/").dropna()
    assert len(weights) >= 2 and np.isfinite(weights.to_numpy()).all()
    assert control.trainer.advantage_hook is control


def test_ctwa_updates_after_the_step_and_uses_trl_reward_weights(tokenizer, dataset):
    result, control = train(tokenizer, dataset, "ctwa", steps=3, gate_targets=None)
    steps = result.steps
    log_weights = steps[[f"ctwa/log_weight_{m}" for m in range(3)]].dropna().to_numpy()
    initial = np.log([0.333, 0.333, 0.334])
    np.testing.assert_allclose(log_weights[0], initial)  # the first batch uses lambda(0): statistics follow the update
    assert (log_weights[-1] >= initial - 1e-12).all() and (log_weights[-1] > initial + 1e-6).any()
    np.testing.assert_allclose(control.trainer.reward_weights.numpy(), np.exp(log_weights[-1]), rtol=1e-6)
    assert steps["cost/extra_forward"].dropna().iloc[-1] >= 1 and steps["cost/extra_backward"].dropna().max() == 0


def test_gramian_methods_count_their_backward_passes(tokenizer, dataset):
    result, _ = train(tokenizer, dataset, "mgda")
    assert result.steps["cost/extra_backward"].dropna().max() == 3
    weights = result.steps[[f"weight/{m}" for m in range(3)]].dropna().to_numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)


def test_linear_run_logs_gradient_cosines(tokenizer, dataset):
    result, _ = train(tokenizer, dataset, "linear", cosines=True)
    cosines = result.steps[["grad/cos_0_1", "grad/cos_0_2", "grad/cos_1_2"]].dropna()
    assert len(cosines) >= 2 and (cosines.abs() <= 1 + 1e-9).all().all()


def test_gradient_cosines_of_a_known_gramian():
    g = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    values = gradient_cosines(g @ g.T)
    assert values["grad/cos_0_1"] == pytest.approx(1 / np.sqrt(2))
    assert values["grad/cos_0_2"] == pytest.approx(-1.0)
    assert values["grad/norm_1"] == pytest.approx(np.sqrt(2))


def test_control_refuses_a_trainer_with_other_objective_count(tokenizer, dataset):
    model = build_tiny_llama(tokenizer, seed=0)
    config = EngineConfig(update_rule="ppo_clip", max_steps=1, prompts_per_step=2, generations=2, max_completion_length=2)
    with pytest.raises(ValueError, match="has 3 objectives but the trainer 2 reward functions"):
        train_policy(model, tokenizer, dataset, REWARDS[:2], config, [ObjectiveControl(make_method("linear"))])


def test_pama_advantages_are_per_token(tokenizer, dataset):
    result, control = train(tokenizer, dataset, "pama")
    advantages = control.trainer.last_batch.advantages
    assert advantages.dim() == 2
    assert torch.isfinite(advantages).all() and (advantages >= 0).all()


def test_ctwa_launcher_dry_run_validates(capsys, tmp_path):
    from rlvr_dynamics.multiobjective import training

    assert training.main(["--profile", "paper", "--method", "ctwa", "--dry-run", "--run-dir", str(tmp_path)]) == 0
    assert '"update_rule": "ppo_clip"' in capsys.readouterr().out
    assert training.main(["--profile", "paper", "--method", "ctwax", "--dry-run", "--run-dir", str(tmp_path)]) == 2
    assert "--method 'ctwax' is invalid" in capsys.readouterr().out


def test_math500_split_matches_the_released_code():
    from rlvr_dynamics.multiobjective.training import math500_split

    split = math500_split()
    assert split["train"][:5].tolist() == [345, 3, 337, 498, 404]
    assert split["test"][:4].tolist() == [202, 321, 466, 373]
    assert split["val"][:4].tolist() == [370, 376, 479, 397]
    assert len(set(np.concatenate(list(split.values())))) == 500


def test_math500_task_data_is_the_300_100_split(shared_data):
    from rlvr_dynamics.config import CTWATrainingParams
    from rlvr_dynamics.multiobjective.training import MATH_SUFFIX, math500_split, task_data
    from rlvr_dynamics.tasks import load_math500

    params = CTWATrainingParams(task="math500", base_model="Qwen/Qwen2.5-0.5B-Instruct", data_dir=str(shared_data),
                                train_prompts=300, eval_prompts=100)
    data = task_data(params)
    problems = load_math500(shared_data / "math500")
    test_index = math500_split()["test"]
    assert len(data.train) == 300 and len(data.eval_prompts) == 100
    assert data.eval_prompts[0] == [{"role": "user", "content": problems[test_index[0]].question + MATH_SUFFIX}]
    assert data.eval_targets[:3] == [problems[i].reference for i in test_index[:3]]
