"""The LM engine on a tiny random Llama: every update rule, hooks, diagnostics, divergence handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlvr_dynamics.lm import diagnostics as diag
from rlvr_dynamics.lm.engine import EngineConfig, train_policy
from rlvr_dynamics.lm.exact import completion_log_probs, exact_success
from rlvr_dynamics.lm.rewards import ExactCompletionReward
from rlvr_dynamics.lm.tiny import build_tiny_llama
from rlvr_dynamics.lm.trainer import UPDATE_RULES
from rlvr_dynamics.simulator import group_advantages

torch.set_num_threads(1)


def odd_length(completions, **_):
    """A reward that splits every group (random policies rarely produce exact answers)."""
    return [float(len(c) % 2) for c in completions]


def has_digit_seven(completions, **_):
    return [float("7" in c) for c in completions]


def tiny(tokenizer, seed=0):
    return build_tiny_llama(tokenizer, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=seed)


def config(**overrides) -> EngineConfig:
    return EngineConfig(
        **(
            {"max_steps": 2, "prompts_per_step": 4, "generations": 4, "max_completion_length": 4, "learning_rate": 0.5}
            | overrides
        )
    )


def test_char_tokenizer_round_trip(tokenizer, tmp_path):
    ids = tokenizer("12+3=\nanswer:15", add_special_tokens=False)["input_ids"]
    assert len(ids) == len("12+3=\nanswer:15")
    assert tokenizer.decode(ids + [tokenizer.eos_token_id]) == "12+3=\nanswer:15<eos>"
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("7*8=", add_special_tokens=False)["input_ids"] == tokenizer("7*8=", add_special_tokens=False)["input_ids"]
    assert reloaded.padding_side == "left"


def test_completion_log_prob_is_the_product_of_next_token_probabilities(tokenizer):
    model = tiny(tokenizer).eval()
    prompt, completion = "3+4=", "7"
    ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    by_hand = sum(float(logits[t - 1, ids[t]]) for t in range(len(prompt), len(ids)))
    batched = completion_log_probs(model, tokenizer, [prompt, "12+30="], [completion, "42"])
    assert float(batched[0].detach()) == pytest.approx(by_hand, abs=1e-5)
    assert float(exact_success(model, tokenizer, [prompt], [completion])[0]) == pytest.approx(math.exp(by_hand), rel=1e-5)


@pytest.mark.parametrize("rule", list(UPDATE_RULES))
def test_every_update_rule_trains_and_logs(rule, tokenizer, dataset):
    model = tiny(tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    result = train_policy(
        model,
        tokenizer,
        dataset,
        [odd_length],
        config(update_rule=rule, max_steps=3 if rule == "ppo_clip" else 2),
        [diag.GradNorms(), diag.GroupStats(), diag.PaperGapEstimator()],
    )
    assert result.outcome == "completed"
    steps = result.steps
    assert list(steps.step) == list(range(len(steps)))
    assert np.isfinite(steps["grad_norms/total_preclip"].dropna()).all()
    assert {"groups/J_mean", "groups/frac_zero_std", "paper/M", "paper/M_inner", "rewards/odd_length/mean"} <= set(steps)
    moved = sum(float((p.detach() - b).abs().sum()) for p, b in zip(result.model.parameters(), before, strict=True))
    assert moved > 0


@pytest.mark.parametrize(("rule", "baseline"), [("grpo", "mean"), ("reinforce", "loo"), ("dr_grpo", "mean"),
                                               ("dr_grpo_std", "mean")])
def test_advantages_match_the_simulator(rule, baseline, tokenizer, dataset):
    result = train_policy(
        tiny(tokenizer), tokenizer, dataset, [odd_length], config(update_rule=rule, baseline=baseline, max_steps=1)
    )
    batch = result.trainer.last_batch
    rewards = batch.rewards.view(-1, batch.num_generations).double().numpy()
    expected = {"grpo": "grpo", "dr_grpo": "dr_grpo", "dr_grpo_std": "grpo", "reinforce": "reinforce"}[rule]
    reference = np.stack([group_advantages(r, expected) for r in rewards]).reshape(-1)
    np.testing.assert_allclose(batch.advantages.numpy(), reference, rtol=1e-5, atol=1e-6)


def test_token_loss_hook_replaces_the_loss(tokenizer, dataset):
    calls = []

    def sequence_sum_loss(trainer, logps, old, advantages, mask, inputs):
        calls.append(logps.shape)
        return -(advantages.unsqueeze(1) * logps * mask).sum() / logps.size(0)

    result = train_policy(tiny(tokenizer), tokenizer, dataset, [odd_length], config(), token_loss=sequence_sum_loss)
    assert len(calls) == 2 and result.outcome == "completed"


def test_reward_weight_schedule_changes_weights_and_logs_each_reward(tokenizer, dataset):
    schedule = diag.RewardWeightSchedule(lambda step, trainer: [1.0, 0.0] if step == 0 else [0.25, 0.75])
    result = train_policy(tiny(tokenizer), tokenizer, dataset, [odd_length, has_digit_seven], config(), [schedule])
    steps = result.steps.set_index("step")
    assert steps.loc[1, "reward_weight/odd_length"] == 1.0 and steps.loc[2, "reward_weight/has_digit_seven"] == 0.75
    assert {"rewards/odd_length/mean", "rewards/has_digit_seven/mean"} <= set(steps.columns)
    assert result.trainer.reward_weights.tolist() == [0.25, 0.75]


def test_exact_gap_starts_at_the_exact_success_and_accumulates(tokenizer, dataset):
    prompts, targets = dataset["prompt"][:16], dataset["target"][:16]
    model = tiny(tokenizer)
    j0 = float(exact_success(model, tokenizer, prompts, targets).mean())
    probe = diag.ProbeGradients(prompts[:3], targets[:3], every=1)
    result = train_policy(
        model,
        tokenizer,
        dataset,
        [ExactCompletionReward(tokenizer), odd_length],
        config(max_steps=3),
        [diag.ExactGap(prompts, targets), probe],
    )
    steps = result.steps
    assert steps["exact/J"].iloc[0] == pytest.approx(j0, rel=1e-6)
    assert (steps["exact/M"].diff().dropna() >= 0).all()
    assert (steps["exact/S"] <= steps["exact/M"] + 1e-12).all()
    assert steps["probe/cos_max"].dropna().between(-1, 1 + 1e-9).all() and len(probe.rows) == 9


def test_divergence_ends_the_run_cleanly(tokenizer, dataset):
    result = train_policy(tiny(tokenizer), tokenizer, dataset, [odd_length], config(learning_rate=1e30, max_steps=5))
    assert result.outcome.startswith(("diverged", "collapsed")), result.outcome
    assert result.steps.step.max() < 5 and (result.steps.outcome == result.outcome).all()


def test_lora_trains_only_adapters(tokenizer, dataset):
    result = train_policy(
        tiny(tokenizer), tokenizer, dataset, [odd_length], config(lora_rank=2, lora_alpha=4), [diag.GradNorms()]
    )
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_run_dir_gets_steps_table_and_dvclive(tokenizer, dataset, tmp_path):
    train_policy(tiny(tokenizer), tokenizer, dataset, [odd_length], config(), [diag.GroupStats()], run_dir=tmp_path)
    assert (tmp_path / "steps.csv").exists() and (tmp_path / "outcome.json").exists()
    assert (tmp_path / "dvclive" / "metrics.json").exists()
    assert any((tmp_path / "dvclive" / "plots" / "metrics").rglob("*.tsv"))


@pytest.mark.parametrize(("field", "value"), [("update_rule", "ppo"), ("optimizer", "lion"), ("generations", 1)])
def test_bad_engine_settings_name_the_parameter(field, value):
    with pytest.raises(ValueError, match=field):
        EngineConfig(**{field: value})


def test_sampled_accuracy_is_seeded_and_keeps_the_global_rng(tokenizer, dataset):
    from rlvr_dynamics.lm.sampled_eval import sampled_accuracy
    from rlvr_dynamics.tasks import math_reward

    model = tiny(tokenizer)
    prompts, references = dataset["prompt"][:6], dataset["target"][:6]
    state = torch.random.get_rng_state()
    first = sampled_accuracy(model, tokenizer, prompts, references, math_reward, samples=3, max_new_tokens=3, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert first == sampled_accuracy(model, tokenizer, prompts, references, math_reward, samples=3, max_new_tokens=3, seed=1)
    assert 0.0 <= first <= 1.0
    always_right = sampled_accuracy(model, tokenizer, prompts, references, lambda c, r: 1.0, samples=2, max_new_tokens=2)
    assert always_right == 1.0
