"""N4-N9 of the gradient-gap spec on the simulator and the experiment runners."""

import numpy as np
import pytest

from rlvr_dynamics import gradient_gap as gg
from rlvr_dynamics.simulator import (
    BigramPolicy,
    LogLinearPolicy,
    TokenLogLinearPolicy,
    enumerate_sequences,
    enumerated_gap,
    group_advantages,
    logit,
    psi1_norm,
    sigmoid,
    softmax,
)


def test_n4_symmetric_mab():
    run = gg.run_mab([0.1, 1.0, 10.0], n_arms=100, steps=10_000)
    J, dmu, M = run["J"], run["dmu"], run["M"]
    assert np.abs(dmu - 100 / 99 * J[:, :-1] * (1 - J[:, :-1])).max() <= 1e-12
    assert np.abs(logit(J) - logit(J[:, :1]) - M).max() <= 1e-9
    assert (np.diff(J, axis=1) > 0).all()
    # Theorem 1's bound sigma(logit J0 + M/2) is a strict lower bound here, not the law itself.
    assert np.abs(logit(J) - logit(J[:, :1]) - M / 2).max() > 1.0
    gap = LogLinearPolicy(n_responses=100).gap(np.zeros(100), np.eye(100)[3]).gap
    assert abs(gap @ gap - 100 / 99) <= 1e-12


def test_n5_two_response_linear_log_odds_and_cor31():
    eta, K = 0.04, 400
    run = gg.run_two_response(eta, K)
    k = np.arange(K + 1)
    assert np.abs(run["log_odds"] - np.sqrt(2) * eta * k).max() <= 1e-12 * K
    assert np.allclose(run["dmu"], np.sqrt(2), atol=1e-12)
    assert (1 - run["J"] <= (1 - run["J"][0]) / run["J"][0] * np.exp(-np.sqrt(2) * eta * k / 2) + 1e-15).all()
    assert run["grad_norm_sq"][run["J"] > 1 - 1e-6].sum() < 1e-8
    reinforce = gg.run_two_response(0.5, 50, normalized=False)
    assert np.allclose(reinforce["dmu"], 2 * reinforce["J"][:-1] * (1 - reinforce["J"][:-1]), atol=1e-14)


@pytest.mark.parametrize("G_o, eta, K", [(1.0, 0.5, 200), (1.0, 0.1, 200), (10.0, 0.05, 2000)])
def test_n6_theorem2_instance(G_o, eta, K):
    run = gg.run_theorem2_instance(G_o, eta, K)
    assert np.abs(run["J"] - run["J_closed_form"]).max() <= 1e-12
    assert (np.diff(run["J"]) < 0).all()
    assert np.abs(run["dmu"] - run["dmu_closed_form"]).max() <= 1e-12
    assert run["dmu"].min() >= run["dmu_lower_bound"]
    assert run["w_norm"].max() <= 1.0
    assert np.allclose(np.diff(run["M"]), eta * run["dmu_closed_form"], atol=1e-12)
    assert run["eta_13a_cap"] < eta


@pytest.mark.parametrize("T", [1, 2, 4, 8])
def test_n7_theorem4_instance(T):
    for eta in (1 / (2 * np.sqrt(T)), 0.05):
        run = gg.run_theorem4_instance(T, 1.0, eta, 200)
        assert (np.diff(run["J"]) < 0).all()
        assert run["dmu"].min() >= run["dmu_lower_bound"]
        if T >= 4:
            assert 35 < T * run["ratio"] < 41


@pytest.mark.parametrize("T", [1, 3, 5])
def test_token_policy_shortcut_matches_enumeration(T):
    rng = np.random.default_rng(T)
    policy = TokenLogLinearPolicy(rng.standard_normal((3, 2)), T)
    theta = rng.standard_normal(2)
    sequences = enumerate_sequences(3, T)
    log_probs, scores = policy.sequence_log_probs_and_scores(theta, sequences)
    reward = (sequences == 0).all(-1).astype(float)
    exact = enumerated_gap(log_probs, scores, reward)
    shortcut = policy.all_correct_gap(theta)
    assert abs(np.exp(log_probs).sum() - 1) <= 1e-12
    assert abs(exact["J"] - shortcut.J) <= 1e-14
    assert np.abs(exact["gap"] - shortcut.gap).max() <= 1e-10


def test_n8_lemma2_token_level_lower_bound():
    rng = np.random.default_rng(7)
    features = rng.standard_normal((3, 2))
    phi_max = np.linalg.norm(features, axis=1).max()
    G_p, L_p = 2 * phi_max, phi_max**2
    for T in (2, 4, 6):
        policy = TokenLogLinearPolicy(features, T)
        sequences = enumerate_sequences(3, T)
        reward = (rng.random(len(sequences)) < 0.3).astype(float)
        T_psi1 = T / np.log(2)
        for _ in range(20):
            theta = rng.standard_normal(2)
            w = rng.standard_normal(2)
            w /= np.linalg.norm(w)
            lp, sc = policy.sequence_log_probs_and_scores(theta, sequences)
            gap = enumerated_gap(lp, sc, reward)
            J, dmu = gap["J"], w @ gap["gap"]
            eta = rng.uniform(0, 1) / np.sqrt(2 * G_p**2 * T_psi1)
            new = policy.sequence_log_probs_and_scores(theta + eta * w, sequences)[0]
            d_logit = logit(np.exp(new) @ reward) - logit(J)
            assert d_logit >= dmu * eta - (L_p * T + G_p**2 * T_psi1 / (1 - J)) * eta**2


def test_n9_theorem1_logistic_lower_bound():
    rng = np.random.default_rng(3)
    features = rng.standard_normal((6, 3))
    policy = LogLinearPolicy(features)
    reward = np.array([1.0, 0, 0, 1, 0, 0])
    phi_max = np.linalg.norm(features, axis=1).max()
    G_o, L_o = 2 * phi_max, phi_max**2
    theta = rng.standard_normal(3)
    J0, M = policy.gap(theta, reward).J, 0.0
    for _ in range(3000):
        stats = policy.gap(theta, reward)
        if 1 - stats.J < 1e-9:  # converged to float precision: the gap is no longer defined
            break
        assert stats.J >= sigmoid(logit(J0) + M / 2) - 1e-12
        w = stats.gap / np.linalg.norm(stats.gap)
        dmu = w @ stats.gap
        eta = min(max(dmu, 0) / (2 * (L_o + 8 * G_o**2)), 1 / (2 * np.sqrt(L_o)))
        theta = theta + eta * w
        M += max(dmu, 0) * eta
    assert M > 0.1


def test_psi1_norm_of_fixed_length():
    assert abs(psi1_norm(np.full(10, 8.0)) - 8 / np.log(2)) < 1e-9


def test_bigram_sampling_matches_probabilities():
    rng = np.random.default_rng(0)
    policy = BigramPolicy(3, 2)
    W = rng.standard_normal((4, 3))
    samples = policy.sample(W[None], 200_000, rng)[0]
    sequences = enumerate_sequences(3, 2)
    probs = np.exp(policy.sequence_log_probs_and_scores(W, sequences)[0])
    freq = np.array([((samples == s).all(-1)).mean() for s in sequences])
    assert np.abs(freq - probs).max() < 4 * np.sqrt(probs.max() / 200_000) + 1e-3


def test_bigram_weighted_score_sum_equals_enumerated_scores():
    rng = np.random.default_rng(1)
    policy = BigramPolicy(3, 4)
    W = rng.standard_normal((2, 5, 4, 3))
    sequences = policy.sample(W, 6, rng)
    weights = rng.standard_normal((2, 5, 6))
    fast = policy.weighted_score_sum(W, sequences, weights)
    for i in range(2):
        for j in range(5):
            _, scores = policy.sequence_log_probs_and_scores(W[i, j], sequences[i, j])
            assert np.abs(fast[i, j] - (weights[i, j] @ scores).reshape(4, 3)).max() <= 1e-12


def test_last_token_success_matches_enumeration():
    rng = np.random.default_rng(2)
    policy = BigramPolicy(3, 4)
    W = rng.standard_normal((4, 3))
    sequences = enumerate_sequences(3, 4)
    probs = np.exp(policy.sequence_log_probs_and_scores(W, sequences)[0])
    assert abs(policy.last_token_success(W) - probs[sequences[:, -1] == 0].sum()) <= 1e-14


def test_group_advantages():
    rewards = np.array([[1.0, 0, 0, 0], [1, 1, 1, 1]])
    assert np.allclose(group_advantages(rewards, "dr_grpo")[0], [0.75, -0.25, -0.25, -0.25])
    assert np.allclose(group_advantages(rewards, "reinforce")[0], [1.0, -1 / 3, -1 / 3, -1 / 3])
    grpo = group_advantages(rewards, "grpo")
    assert np.allclose(grpo[0], np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-4))
    assert np.all(grpo[1] == 0)
    with pytest.raises(ValueError, match="not one of"):
        group_advantages(rewards, "ppo")


def test_softmax_is_normalised_for_extreme_logits():
    p = softmax(np.array([[1000.0, 0.0, -1000.0]]))
    assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-15


def test_rare_negative_threshold_band():
    run = gg.run_rare_negative_threshold(np.array([1.0, 20.0, 38.0, 60.0, 100.0, 200.0]))
    assert (run["J_final"][:3] >= 0.99).all()
    assert (run["J_final"][3:] < 1e-6).all()
    below, above = gg.threshold_band(run["step_sizes"], run["J_final"] >= 0.99, run["J_final"] < 1e-6)
    assert (below, above) == (38.0, 60.0)


def test_fit_collapse_step_recovers_a_known_curve():
    alpha = np.logspace(0, 3, 13)
    fraction = sigmoid(3 * (np.log(alpha) - np.log(50.0)))
    assert abs(gg.fit_collapse_step(alpha, np.round(fraction * 1000) / 1000, 1000) - 50) < 2
    assert np.isnan(gg.fit_collapse_step(alpha, np.zeros_like(alpha), 16))


def test_softmax_gap_matches_conditional_distributions():
    from rlvr_dynamics.simulator import softmax_gap

    rng = np.random.default_rng(5)
    logits, reward = rng.standard_normal((4, 7)), (rng.random(7) < 0.4).astype(float)
    reward[0] = 1.0
    reward[1] = 0.0
    stats = softmax_gap(logits, reward)
    pi = softmax(logits)
    pi_plus = pi * reward / (pi * reward).sum(-1, keepdims=True)
    pi_minus = pi * (1 - reward) / (pi * (1 - reward)).sum(-1, keepdims=True)
    assert np.abs(stats.gap - (pi_plus - pi_minus)).max() <= 1e-12
    assert np.abs(stats.J - (pi * reward).sum(-1)).max() <= 1e-15
