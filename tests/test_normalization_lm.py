"""Normalization-paper diagnostics on the engine (C11, C12, C15) and the phase analysis of notebook 04."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rlvr_dynamics import grpo_phases as gp
from rlvr_dynamics import phase_analysis as phases
from rlvr_dynamics.lm import diagnostics as diag
from rlvr_dynamics.lm.base_policy import eval_set, rl_dataset
from rlvr_dynamics.lm.engine import EngineConfig, train_policy
from rlvr_dynamics.lm.exact import completion_log_probs
from rlvr_dynamics.lm.probe_diagnostics import (
    CountSketch,
    FisherVariance,
    GradientCosines,
    exact_answer_score,
    m_proxy,
    sequence_log_probs,
)
from rlvr_dynamics.lm.rewards import ExactCompletionReward
from rlvr_dynamics.lm.tiny import build_tiny_llama

torch.set_num_threads(1)


def tiny(tokenizer):
    return build_tiny_llama(tokenizer, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=0)


def odd_length(completions, **_):
    return [float(len(c) % 2) for c in completions]


def run(tokenizer, diagnostics, steps=4, rule="dr_grpo_std"):
    config = EngineConfig(update_rule=rule, optimizer="adamw", learning_rate=1e-3, max_steps=steps, prompts_per_step=4,
                          generations=4, max_completion_length=4, max_grad_norm=1.0)
    return train_policy(tiny(tokenizer), tokenizer, rl_dataset("easy", 64), [odd_length], config, diagnostics)


def test_gain_factor_is_the_running_mean_of_sigma_bar(tokenizer):
    steps = run(tokenizer, [diag.GainFactor()]).steps.dropna(subset=["variance/C_hat"])
    expected = phases.running_gain_factor(steps["variance/sigma_mean"])
    np.testing.assert_allclose(steps["variance/C_hat"], expected, rtol=1e-6)
    assert (steps["variance/p_var_mean"] <= 0.25).all()
    assert (steps["variance/sigma_unbiased_mean"] >= steps["variance/sigma_mean"] - 1e-12).all()


def test_sequence_log_probs_match_teacher_forcing(tokenizer):
    model = tiny(tokenizer)
    prompts, targets = eval_set("easy", 3)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in targets]
    expected = completion_log_probs(model, tokenizer, prompts, targets)
    measured = torch.stack([sequence_log_probs(model, tokenizer, p, [c, c[:1]])[0] for p, c in zip(prompts, ids, strict=True)])
    torch.testing.assert_close(measured, expected, rtol=1e-5, atol=1e-5)


def test_probe_diagnostics_record_checkpoints_and_leave_training_unchanged(tokenizer):
    prompts, targets = eval_set("easy", 6)
    score = lambda ids, reference: float(len(ids) % 2)  # noqa: E731  (splits groups of a random policy)
    cosines = GradientCosines(prompts, targets, score, samples=4, every=2, max_new_tokens=4)
    fisher = FisherVariance(prompts, targets, score, variance_samples=4, fisher_samples=2, every=2, max_new_tokens=4)
    probed = run(tokenizer, [cosines, fisher])
    plain = run(tokenizer, [])
    np.testing.assert_array_equal(probed.steps["reward"].to_numpy(), plain.steps["reward"].to_numpy())
    assert [row["step"] for row in cosines.rows] == [0, 2, 4]  # every 2 steps and the final checkpoint
    row = cosines.rows[0]
    live = 6 - int(row["degenerate"])  # degenerate prompts have g_i = 0: their pairs are dropped
    assert row["pairs"] == live * (live - 1) // 2 and -1 <= row["score_mean"] <= 1
    assert len(cosines.score_cosines[0]) == 15  # all 6 * 5 / 2 pairs of the always-defined score variant
    frame = pd.DataFrame(fisher.rows)
    assert set(frame.step) == {0, 2, 4} and (frame.F > 0).all() and frame.V.between(0, 0.25).all()
    assert "cos/std" in probed.steps and "fisher/r" in probed.steps


def test_count_sketch_preserves_inner_products_on_average():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5000, generator=gen, dtype=torch.float64), torch.randn(5000, generator=gen, dtype=torch.float64)
    b = b + a  # cos(a, b) ~ 0.7
    estimates = [float(CountSketch(5000, 512, seed)(a) @ CountSketch(5000, 512, seed)(b)) for seed in range(40)]
    assert np.mean(estimates) == pytest.approx(float(a @ b), rel=0.05)


def test_m_proxy_hand_example():
    gradients = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.2]], dtype=torch.float64)
    unit = gradients / gradients.norm(dim=1, keepdim=True)
    cos = (unit @ unit.T)[np.triu_indices(3, k=1)].numpy()
    result = m_proxy(gradients, cos)
    # only pair (0, 1) is positive: cos = 1/sqrt 2, norms 1 and sqrt 2 -> ratios 2 and 1
    assert result["M_proxy_max"] == pytest.approx(2.0)
    assert result["frac_negative"] == pytest.approx(2 / 3)


def test_fisher_correlations_separate_same_and_mismatched_iterations():
    rng = np.random.default_rng(0)
    rows = []
    for step in range(4):
        V = rng.uniform(0, 0.25, 60)
        rows += [{"step": step, "prompt": i, "V": v, "F": 2 * v + 0.02 * rng.standard_normal(), "length": 3.0}
                 for i, v in enumerate(V)]
    result = gp.fisher_correlations(pd.DataFrame(rows))
    assert result["same_r"] > 0.9 and result["same_p"] < 0.01
    assert abs(result["mismatched_r"]) < 0.2 and abs(result["shuffled_r"]) < 0.2


def test_gap_curves_and_phase_table():
    steps = np.arange(100)
    rows = []
    for seed in range(3):
        for arm, shift in (("standard", 0.05), ("no_std", 0.0)):
            acc = 0.5 + np.where(steps >= 20, shift * np.minimum(steps - 20, 40) / 40, 0.0)
            rows.append(pd.DataFrame({"split": "hard", "arm": arm, "seed": seed, "step": steps, "ema": acc}))
    gaps = gp.gap_curves(pd.concat(rows))
    table = gp.phase_table(gaps, 100).set_index("phase")
    assert table.loc["I", "mean_delta"] == pytest.approx(0.0)
    assert table.loc["II", "slope"] > 0 and table.loc["III", "mean_delta"] == pytest.approx(0.05)
    assert table.loc["III", "positive_seeds"] == 1.0


def test_split_and_arm_validation():
    with pytest.raises(ValueError, match="splits"):
        gp.check_splits("gsm8k", ["medium"])
    gp.check_splits("arithmetic", ["easy", "hard"])
    assert gp.update_rule("standard", "dr_grpo") == "dr_grpo_std" and gp.update_rule("no_std", "grpo") == "no_std"
    with pytest.raises(ValueError, match="loss_aggregation"):
        gp.update_rule("standard", "bnpo")


def test_exact_answer_score(tokenizer):
    score = exact_answer_score(tokenizer)
    ids = tokenizer("12", add_special_tokens=False)["input_ids"]
    assert score(ids + [tokenizer.eos_token_id], "12") == 1.0
    assert score(ids, "12") == 0.0
    assert ExactCompletionReward(tokenizer)([ids + [tokenizer.eos_token_id]], ["12"]) == [1.0]
