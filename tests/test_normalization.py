"""Exact identities and bounds of "Why GRPO Needs Normalization" (C1-C9) on the prompt bandit.

The printed Theorems 3.1-3.4 have a wrong sign ("<= -...") and Thm 3.2/3.4 a wrong form (spec G17);
these tests check the corrected statements the appendix proofs establish, and some tests show that
the checks do fail on a wrong sign or constant.
"""

from __future__ import annotations

import numpy as np
import pytest

from rlvr_dynamics import normalization_checks as checks
from rlvr_dynamics import normalization_toy as toy
from rlvr_dynamics import phase_analysis as phases
from rlvr_dynamics.prompt_bandit import (
    PromptBandit,
    initial_logit,
    log_uniform,
    random_block_bandit,
    shared_correctness_bandit,
    tabular_bandit,
)


def test_initial_success_matches_p0():
    rng = np.random.default_rng(0)
    p0 = log_uniform(rng, 0.005, 0.6, 20)
    for bandit, theta0 in (tabular_bandit(p0, 10), random_block_bandit(p0, 10, 12, rng)):
        np.testing.assert_allclose(bandit.success(theta0[None])[0], p0, rtol=1e-10)
    np.testing.assert_allclose(initial_logit(0.1, 2), np.log(1 / 9))


def test_gradient_and_hessian_formulas():  # checks 1-2 (F8, F11)
    rng = np.random.default_rng(1)
    errors = checks.check_gradient(rng, instances=20)
    assert errors["finite_differences"] < 1e-7
    assert errors["component_form"] < 1e-12
    assert checks.check_hessian(rng, instances=20) < 1e-6


def test_curvature_and_lipschitz_bounds():  # C2-C4, checks 3-6
    ratios = checks.curvature_ratios(np.random.default_rng(2), instances=300, ball_points=5)
    assert ratios["lemma_3_1"] <= 2 * np.sqrt(2) + 1  # proof constant (statement: 4)
    assert ratios["lemma_3_2"] <= np.sqrt(2) + 1e-12  # tighter than the printed 2
    assert ratios["lemma_3_2"] > 1.0  # the bound is nearly tight: a constant of 1 would fail
    assert ratios["lemma_3_3"] <= 2.5
    assert ratios["step_in_ball"] <= 1 + 1e-9


def test_lemma_3_3_scalar_function():  # check 5 (F14)
    scalar = checks.lemma_3_3_scalar(grid=20_000)
    assert scalar["max"] == pytest.approx(2.5, abs=1e-6)
    assert abs(scalar["argmax"] - 0.1) < 1e-3
    assert scalar["closed_form_gap"] < 1e-4


def test_std_normalization_is_an_adaptive_step():  # C1, check 7 (Eq. 5, F9)
    errors = checks.check_adaptive_step_identity(np.random.default_rng(3))
    assert errors["surrogate"] < 1e-10
    assert errors["closed_form"] < 1e-10
    assert errors["hand_case"] < 1e-12


def test_per_group_gradient_scaling_float32():  # C1, check 13 (F22)
    errors = checks.check_per_group_scaling(seed=0)
    assert errors["per_group"] < 1e-5
    assert errors["batch_sum"] < 1e-5
    assert errors["weight_ratio"] < 1e-4


def test_group_advantages_baseline_bias_and_fisher():  # checks 12, 14, 15
    assert checks.check_advantage_table() < 5e-5
    assert checks.check_baseline_bias(np.random.default_rng(4)) < 1e-12
    assert checks.check_fisher_estimator(np.random.default_rng(5)) < 1e-12


@pytest.mark.parametrize("features", ["tabular", "random_block"])
def test_decoupling_and_per_step_ascent(features):  # C5-C7, checks 8-9, >= 10^4 steps
    rng = np.random.default_rng(6)
    p0 = log_uniform(rng, 0.005, 0.6, 30)
    bandit, theta0 = toy.build_bandit(features, p0, 10, rng)
    grads = bandit.grad_J(theta0[None])[0]
    gram = grads @ grads.T
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-12
    x2 = bandit.x_max**2
    runs = toy.run_exact(bandit, theta0, [False, True], np.array([1 / x2, 1 / (2 * x2)]), 10_000, seed=0)
    assert (runs.gain_margin_min >= -1e-12).all()  # Thm 3.1 / 3.2 per-step gains (sign corrected)
    assert (runs.cross_change_max < 1e-12).all()  # other prompts untouched
    assert runs.ball_ratio_max[1] <= 1 + 1e-9  # GRPO step inside the Lemma 3.3 ball
    assert (runs.J[:, -1] > runs.J[:, 0]).all()


def test_ascent_check_fails_on_descent():
    """The per-step check is not vacuous: a descent step (the printed sign) violates it."""
    bandit, theta0 = tabular_bandit(np.array([0.3, 0.5]), 4)
    runs = toy.run_exact(bandit, theta0, [False, True], np.array([-1.0, -0.5]), 20, seed=0)
    assert (runs.gain_margin_min < 0).all()


def test_reinforce_sum_bound():
    """Thm 3.1 pathwise: sum over the steps that pick l of ||grad J_l||^2 <= 2 X^2 (1 - pi*_0(l))."""
    table = toy.heterogeneity_sweep([(0.05, 0.6)], n=20, K=6, seeds=2, steps=4000, seed=0)
    ratio = table[table.method == "reinforce"].sum_bound_ratio_max
    assert (ratio <= 1).all() and (ratio > 0.3).all()  # holds, and is not vacuous


def test_grpo_faster_on_heterogeneous_prompts():  # C8 (check 10, reduced T)
    table = toy.heterogeneity_sweep([(0.3, 0.6), (0.005, 0.6)], n=50, K=10, seeds=2, steps=12_000, seed=0)
    t90 = table.pivot_table(index=["level", "seed"], columns="method", values="t_0.9")
    speedup = (t90.reinforce / t90.grpo).groupby(level="level").mean()
    assert speedup["[0.005, 0.6]"] >= 1.5
    assert speedup["[0.005, 0.6]"] > speedup["[0.3, 0.6]"]
    assert (table[table.method == "grpo"].C_T < 1).all()


def test_relaxed_step_sizes_keep_interference_non_negative():  # C9 (check 11)
    table = toy.relaxed_interference("shared_correctness", n=20, K=6, steps=1000, seed=0, level=(0.05, 0.6),
                                     strength=0.7)
    assert (table.asm4_violation_steps == 0).all()
    assert (table.cross_decreases == 0).all()
    assert (table.gain_margin_min >= -1e-12).all()


def test_shared_direction_satisfies_assumption_4():
    rng = np.random.default_rng(7)
    bandit, theta0 = shared_correctness_bandit(log_uniform(rng, 0.05, 0.6, 5), 4, rng)
    sizes = toy.relaxed_step_sizes(bandit, bandit.probs(theta0[None]))
    assert not sizes["violating"][0] and np.isfinite(sizes["M"][0])
    assert sizes["grpo"][0] <= 1 / (2 * bandit.x_max**2)


def test_sampled_groups_sgd_gain_and_adam_parity():  # E0s / G19
    p0 = log_uniform(np.random.default_rng(0), 0.005, 0.6, 50)
    arms = [toy.SampledArm(True, "sgd", 16.0), toy.SampledArm(False, "sgd", 16.0),
            toy.SampledArm(True, "adam", 0.1), toy.SampledArm(False, "adam", 0.1)]
    J = toy.run_sampled_groups(arms, p0, K=10, prompts_per_step=16, generations=8, steps=400, seed=0)["J"]
    assert J[0, -1] > J[1, -1]  # standard ahead under SGD at equal lr
    assert abs(J[2, -1] - J[3, -1]) < 0.02  # Adam adapts per coordinate already (tabular)


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="p0 range"):
        log_uniform(np.random.default_rng(0), 0.0, 0.5, 3)
    with pytest.raises(ValueError, match="block_width"):
        random_block_bandit(np.array([0.2]), 10, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="optimizer"):
        toy.run_sampled_groups([toy.SampledArm(True, "rmsprop", 1.0)], np.array([0.5]), 3, 1, 4, 1, 0)


def test_hessian_of_tabular_prompt_is_symmetric():
    bandit = PromptBandit(np.eye(3)[None], np.zeros((1, 3, 0)), np.array([1]))
    hess = bandit.hessian_J(np.array([0.2, -0.1, 0.3]), 0)
    np.testing.assert_allclose(hess, hess.T, atol=1e-15)


# ----------------------------------------------------------------- phase analysis
def test_ema_and_gain_factor():  # checks 17-18
    np.testing.assert_allclose(phases.ema([0.0, 1.0, 1.0]), [0.0, 0.18, 0.3276])
    assert phases.gain_factor(np.full((5, 7), 0.5)) == pytest.approx(4 / 3)
    assert phases.gain_factor(np.full((5, 7), 0.375)) == pytest.approx(1.0)
    np.testing.assert_allclose(phases.running_gain_factor([0.375, 0.375, 0.0]), [1.0, 1.0, 2 / 3])


def test_phase_windows_and_gaps():
    steps = np.arange(500)
    assert list(phases.phase_of([0, 99, 100, 299, 300, 499], 500)) == ["I", "I", "II", "II", "III", "III"]
    delta = np.where(steps < 100, 0.0, np.minimum(steps - 100, 200) * 1e-4)
    table = phases.phase_gaps(steps, delta, 500).set_index("phase")
    assert table.loc["I", "mean_delta"] == 0
    assert table.loc["II", "slope"] == pytest.approx(1e-4)
    assert table.loc["III", "slope"] == pytest.approx(0.0, abs=1e-12)
    assert phases.delta_at(steps, delta, 0.6, 500) == pytest.approx(0.02)


def test_data_driven_phases():
    import pandas as pd

    cos = pd.DataFrame({"step": [0, 50, 100, 150], "mean": [0.0, 0.01, 0.03, 0.05], "std": [0.05, 0.06, 0.08, 0.11]})
    assert phases.data_driven_phases(cos) == {"phase_I_end": 100.0, "phase_III_start": 150.0}


def test_pearson_matches_spec_reference():  # F29: r = 0.342 with ~58 prompts gives p ~ 0.008
    rng = np.random.default_rng(0)
    x = rng.standard_normal(58)
    y = 0.342 * (x - x.mean()) / x.std() + np.sqrt(1 - 0.342**2) * rng.standard_normal(58)
    r, p = phases.pearson(x, y)
    t = r * np.sqrt(56) / np.sqrt(1 - r**2)
    from scipy import stats

    assert p == pytest.approx(2 * stats.t.sf(abs(t), 56))
    from scipy.stats import t as student

    assert 2 * student.sf(0.342 * np.sqrt(56) / np.sqrt(1 - 0.342**2), 56) == pytest.approx(0.0086, abs=1e-3)
    pooled = phases.pooled_correlation([0.3, 0.4, 0.35, 0.5])
    assert pooled["mean_r"] == pytest.approx(0.3875) and pooled["p_value"] < 0.01
    assert np.isnan(phases.pearson([1, 1, 1], [1, 2, 3])[0])
