"""The eight weighting methods: hand-computed updates, spec N9, bad inputs, and each method through the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlvr_dynamics.multiobjective import methods as M
from rlvr_dynamics.multiobjective.analysis import hypervolume, interference, pareto_front


def batch(rewards, group_size=2, **extra) -> M.ObjectiveBatch:
    rewards = np.asarray(rewards, dtype=float)
    return M.ObjectiveBatch(rewards, group_size, np.ones(len(rewards)), **extra)


# ------------------------------------------------------------------ estimators
def test_reinforce_pp_whitens_over_tokens():
    scores, lengths = np.array([1.0, 0.0, 0.0]), np.array([2.0, 1.0, 1.0])
    mean = 2.0 / 4.0
    variance = (2 * 0.25 + 0.25 + 0.25) / 3.0
    expected = (scores - mean) / math.sqrt(variance + 1e-8)
    np.testing.assert_allclose(M.estimator_advantages(scores, "reinforce_pp", 3, lengths), expected, rtol=1e-12)


def test_grpo_normalises_per_group_with_unbiased_std():
    advantages = M.estimator_advantages(np.array([1.0, 0.0, 2.0, 2.0]), "grpo", 2, np.ones(4))
    np.testing.assert_allclose(advantages, [0.5 / (math.sqrt(0.5) + 1e-6), -0.5 / (math.sqrt(0.5) + 1e-6), 0.0, 0.0])


def test_n9e_whitened_advantages_are_scale_invariant_in_lambda():
    """F15: the advantage of s_{3 lambda} equals that of s_lambda up to the estimators' epsilons."""
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 2, size=(64, 3)).astype(float)
    lam, lengths = np.array([0.2, 0.5, 0.3]), rng.integers(5, 30, 64)
    for estimator, tolerance in (("reinforce_pp", 1e-6), ("grpo", 1e-5)):
        np.testing.assert_allclose(M.estimator_advantages(rewards @ lam, estimator, 8, lengths),
                                   M.estimator_advantages(rewards @ (3 * lam), estimator, 8, lengths), atol=tolerance)


# ------------------------------------------------------------------ N9: CTWA statistic and controller
def test_n9a_single_group_covariance_is_one_half():
    rewards = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=float)
    weights = M.completion_weights(np.array([1.0, -1.0, 1.0, -1.0]), np.zeros((4, 3)), np.ones((4, 3)), 100.0, 100.0)
    np.testing.assert_allclose(weights, [1, -1, 1, -1])
    np.testing.assert_allclose(M.ctwa_covariances(rewards, weights, 4), [0.5, 0.0, 0.0], atol=1e-15)


def test_n9b_grpo_indicator():
    log_ratio = np.log(np.array([[1.3], [0.7], [1.3]]))
    weights = M.completion_weights(np.array([1.0, -1.0, -1.0]), log_ratio, np.ones((3, 1)), 0.2, 0.2)
    np.testing.assert_allclose(weights, [0.0, 0.0, -1.3])


def test_n9c_outlier_is_removed_before_grouping():
    rewards = np.array([[1.0], [0.0], [1.0], [0.0]])
    weights = np.array([1.0, -1.0, 1.0, 1e4])
    kept = M.ctwa_covariances(rewards, weights, 4)
    np.testing.assert_allclose(kept, M.ctwa_covariances(rewards[:3], weights[:3], 3))
    assert not np.allclose(kept, ((rewards[:, 0] - 0.5) * (weights - weights.mean())).mean())


def test_n9d_controller_steps(monkeypatch):
    method = M.make_method("ctwa", gate_targets=None)
    empty = batch(np.zeros((4, 3)), completion_weights=np.zeros(4))
    monkeypatch.setattr(M, "ctwa_covariances", lambda *a, **k: np.array([0.05, 0.10, -0.02]))
    method.update(empty)
    np.testing.assert_allclose(method.weights(), [0.333 * math.exp(0.005), 0.333, 0.334 * math.exp(0.005)], rtol=0, atol=1e-12)
    monkeypatch.setattr(M, "ctwa_covariances", lambda *a, **k: np.array([0.25, 0.0, 0.0]))
    method.update(empty)
    np.testing.assert_allclose(method.covariance_ema, [0.07, 0.09, -0.018], atol=1e-12)
    np.testing.assert_allclose(method.deficit, [0.08, 0.0, 0.098], atol=1e-12)
    monkeypatch.setattr(M, "ctwa_covariances", lambda *a, **k: np.zeros(3))
    gated = M.make_method("ctwa")
    clarity_high = batch(np.tile([0.0, 0.0, 0.97], (4, 1)), completion_weights=np.zeros(4))
    gated.update(clarity_high)
    assert gated.deficit[2] == 0.0 and gated.deficit[0] > 0


def test_n9f_population_covariance_bias():
    rng = np.random.default_rng(1)
    p, values = np.array([0.2, 0.5, 0.3]), np.array([1.0, 0.0, 2.0])
    reward = np.array([1.0, 0.0, 0.0])
    draws = rng.choice(3, size=(4000, 4), p=p)
    per_group = np.array([M.ctwa_covariances(reward[d][:, None], values[d], 4)[0] for d in draws])
    cov = (p * (reward - p @ reward) * (values - p @ values)).sum()
    assert abs(per_group.mean() - 0.75 * cov) < 3 * per_group.std() / math.sqrt(len(per_group))


# ------------------------------------------------------------------ other methods, by hand
def test_lagrangian_dual_ascent_then_combined_advantage():
    method = M.make_method("lagrangian")
    b = batch([[1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1]], estimator="grpo")
    weights = method.update(b)
    np.testing.assert_allclose(weights, [1.0, 0.01 * (0.9 - 0.5), 0.01 * (0.9 - 0.5)])
    np.testing.assert_allclose(method.advantages(b), b.objective_advantages() @ weights)


def test_tchebycheff_running_max_reference():
    method = M.make_method("tchebycheff")
    b = batch([[0, 1, 0], [0, 0, 1]])
    method.update(b)
    np.testing.assert_allclose(method.reference, [0, 1, 1])
    np.testing.assert_allclose(method.scores(b.rewards), [-0.334, -0.333])
    method.update(batch([[1, 0, 0], [0, 0, 0]]))
    np.testing.assert_allclose(method.reference, [1, 1, 1])


def test_pama_takes_the_smallest_positive_mass():
    method = M.make_method("pama")
    b = batch([[1, 1, 0], [0, 0, 1]], group_size=2, estimator="grpo", unclipped_fraction=np.array([1.0, 0.5]))
    method.update(b)
    positive = np.maximum(b.objective_advantages(), 0.0)
    per_objective = (positive * np.array([1.0, 0.5])[:, None]).sum(axis=0) / 2.0
    assert method.scalar_advantage == pytest.approx(per_objective.min())
    np.testing.assert_allclose(method.advantages(b), per_objective.min())
    factor = M.pama_token_factor(torch.log(torch.tensor([0.9, 1.1, 1.3])), 0.2)
    np.testing.assert_allclose(factor.numpy(), [0.9, 1.1, 0.0], rtol=1e-6)


def test_mgda_is_the_min_norm_convex_combination():
    g = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    weights = M.make_method("mgda").update(batch(np.zeros((2, 3)), gramian=g @ g.T))
    # closed form for the two extreme gradients e1 and 2 e2: w = (4/5, 1/5), norm^2 = 4/5; the third adds nothing.
    # torchjd's Frank-Wolfe (200 iterations) gets within 0.5 % of it; the code's PGD would reach 1e-6.
    assert weights.sum() == pytest.approx(1.0)
    assert np.linalg.norm(weights @ g) ** 2 == pytest.approx(0.8, rel=5e-3)
    np.testing.assert_allclose(weights, [0.8, 0.2, 0.0], atol=5e-3)


def test_gradnorm_moves_weight_towards_the_slow_objective():
    method = M.make_method("gradnorm")
    gramian = np.diag([1.0, 4.0, 1.0])
    method.update(batch(np.zeros((2, 3)), gramian=gramian, losses=np.array([1.0, 1.0, 1.0])))
    weights = method.update(batch(np.zeros((2, 3)), gramian=gramian, losses=np.array([1.0, 0.5, 0.5])))
    # G = (1, 2, 1); objective 0's loss ratio is the largest, objective 1 has the largest weighted norm
    assert weights.sum() == pytest.approx(3.0)
    assert weights[1] < 1.0 < weights[0]


def test_dynamic_weights_stay_on_the_simplex():
    method = M.make_method("dynamic", regularization_factor=1.0)
    gramian = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.1]])
    weights = method.update(batch(np.zeros((2, 3)), gramian=gramian, learning_rate=0.1))
    change = 0.1 * 0.1 * gramian.sum(axis=1)
    expected = np.exp(np.log(M.PAPER_WEIGHTS) + change)
    np.testing.assert_allclose(weights, expected / expected.sum())


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(("name", "options", "message"), [
    ("ctwa", {"targets": (0.1, 0.1)}, "targets has 2 entries but there are 3 objectives"),
    ("ctwa", {"targets": (0.1, -0.1, 0.1)}, "allowed values are numbers >= 0"),
    ("ctwa", {"initial_weights": (0.5, 0.0, 0.5)}, "allowed values are numbers > 0"),
    ("linear", {"initial_weights": (1.0, 1.0)}, "initial_weights has 2 entries"),
    ("lagrangian", {"constraint_targets": (0.9,)}, "constraint_targets has 1 entries but there are 2 objectives"),
    ("ctwa", {"tau": 0.0}, "tau = 0.0 is invalid"),
    ("ctwa", {"bogus": 1}, "options ['bogus'] are unknown"),
    ("softmax", {}, "method = 'softmax' is invalid: allowed values are"),
])
def test_bad_options_name_the_field(name, options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        M.make_method(name, **options)


def test_mismatched_objectives_and_missing_statistics():
    with pytest.raises(ValueError, match="the batch has 2 objectives, the method 3"):
        M.make_method("linear").update(batch(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="needs \\['gramian'\\]"):
        M.make_method("mgda").update(batch(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="estimator = 'ppo' is invalid"):
        batch(np.zeros((2, 3)), estimator="ppo")


# ------------------------------------------------------------------ analysis
def test_interference_fires_only_on_a_trade_off():
    steps = np.arange(0, 60, 5)
    trade = {"step": steps, "accuracy": 0.5 - 0.002 * steps, "length": 400 - 2.0 * steps, "clarity": 0.2 + 0.0 * steps}
    balanced = {"step": steps, "accuracy": 0.5 + 0.002 * steps, "length": 400 - 2.0 * steps, "clarity": 0.2 + 0.0 * steps}
    import pandas as pd

    assert interference(pd.DataFrame(trade))["interference"]
    result = interference(pd.DataFrame(balanced))
    assert not result["interference"] and result["score"] == pytest.approx(0.0, abs=1e-9)


def test_pareto_and_hypervolume():
    import pandas as pd

    points = pd.DataFrame({"accuracy": [1.0, 0.5, 0.4], "length": [1.0, 0.5, 0.4], "clarity": [0.0, 1.0, 0.9]})
    assert pareto_front(points).tolist() == [True, True, False]
    assert hypervolume(np.array([[1, 1, 1], [2, 0.5, 0.5]]), np.zeros(3)) == pytest.approx(1.25)
    assert hypervolume(np.array([[1, -1, 1]]), np.zeros(3)) == 0.0
