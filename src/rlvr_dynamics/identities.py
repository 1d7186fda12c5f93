"""Numerical checks N1-N3 and N10-N12 of the gradient-gap spec on enumerable toy policies.

Each ``check_*`` function draws a random instance from ``rng`` and returns the measured
error of one identity of the paper; :func:`identity_table` collects them with the spec's
tolerances. Finite differences give ``grad J`` independently of the score algebra.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from rlvr_dynamics.simulator import (
    BigramPolicy,
    LogLinearPolicy,
    clipped_surrogate,
    enumerate_sequences,
    enumerated_gap,
    group_advantages,
    log_odds_decomposition,
    log_softmax,
    monte_carlo_direction,
    population_direction,
    second_order_coefficient,
)


def finite_difference_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central finite differences of a scalar function (float64)."""
    grad = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        grad[i] = (f((x.ravel() + e).reshape(x.shape)) - f((x.ravel() - e).reshape(x.shape))) / (2 * h)
    return grad


def random_log_linear(rng: np.random.Generator, n: int = 12, d: int = 5, n_positive: int = 3):
    """The N1 log-linear instance: n responses, d features, ``n_positive`` correct ones."""
    policy = LogLinearPolicy(rng.standard_normal((n, d)), bias=rng.standard_normal(n))
    reward = np.zeros(n)
    reward[rng.choice(n, n_positive, replace=False)] = 1.0
    return policy, reward, rng.standard_normal(d)


def random_bigram(rng: np.random.Generator, vocab: int = 3, length: int = 4, n_positive: int = 20):
    """The N1/N12 autoregressive instance: bigram policy, all ``vocab**length`` sequences."""
    policy = BigramPolicy(vocab, length)
    sequences = enumerate_sequences(vocab, length)
    reward = np.zeros(len(sequences))
    reward[rng.choice(len(sequences), n_positive, replace=False)] = 1.0
    return policy, sequences, reward, rng.standard_normal((vocab + 1, vocab))


# ------------------------------------------------------------------------------ N1
def check_gap_identity_log_linear(rng: np.random.Generator) -> float:
    """N1, Eq. 9: ``grad J`` (finite differences) vs ``J (1 - J) (g+ - g-)``, log-linear."""
    policy, reward, theta = random_log_linear(rng)
    gap = enumerated_gap(policy.log_probs(theta), policy.scores(theta), reward)
    fd = finite_difference_gradient(lambda t: float(np.exp(policy.log_probs(t)) @ reward), theta)
    return float(np.abs(fd - gap["J"] * (1 - gap["J"]) * gap["gap"]).max())


def check_gap_identity_autoregressive(rng: np.random.Generator) -> float:
    """N1, Eq. 9 on a bigram policy over 81 enumerated sequences (V = 3, T = 4)."""
    policy, sequences, reward, W = random_bigram(rng)
    log_probs, scores = policy.sequence_log_probs_and_scores(W, sequences)
    gap = enumerated_gap(log_probs, scores, reward)
    fd = finite_difference_gradient(lambda w: float(np.exp(policy.sequence_log_probs_and_scores(w, sequences)[0]) @ reward), W)
    return float(np.abs(fd - gap["J"] * (1 - gap["J"]) * gap["gap"]).max())


def check_gap_identity_batch(rng: np.random.Generator) -> float:
    """N1, Lemma 8 / Eq. 66: batch ``grad J = J (1 - J) (g+ - g-)`` over (prompt, response) pairs.

    Two prompts with their own features share ``theta``; ``P_Q`` is uniform.
    """
    prompts = [random_log_linear(rng) for _ in range(2)]
    theta = prompts[0][2]

    def joint(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log_probs = np.concatenate([np.log(0.5) + p.log_probs(t) for p, _, _ in prompts])
        scores = np.concatenate([p.scores(t) for p, _, _ in prompts])
        return log_probs, scores, np.concatenate([r for _, r, _ in prompts])

    gap = enumerated_gap(*joint(theta))
    fd = finite_difference_gradient(lambda t: float(np.exp(joint(t)[0]) @ joint(t)[2]), theta)
    return float(np.abs(fd - gap["J"] * (1 - gap["J"]) * gap["gap"]).max())


def check_mean_zero(rng: np.random.Generator) -> float:
    """N1: ``J g+ + (1 - J) g- = E[score] = 0`` (Eq. 25-26)."""
    policy, reward, theta = random_log_linear(rng)
    gap = enumerated_gap(policy.log_probs(theta), policy.scores(theta), reward)
    return float(np.abs(gap["J"] * gap["g_plus"] + (1 - gap["J"]) * gap["g_minus"]).max())


# ------------------------------------------------------------------------------ N2, N3
def check_lemma3(rng: np.random.Generator, step_norm: float = 2.0) -> float:
    """N2, Lemma 3 (Eq. 34): exact log-odds change for an arbitrary step of norm 2."""
    policy, reward, theta = random_log_linear(rng)
    step = rng.standard_normal(theta.size)
    step *= step_norm / np.linalg.norm(step)
    lhs, rhs = log_odds_decomposition(policy.log_probs(theta), policy.log_probs(theta + step), reward)
    return float(abs(lhs - rhs))


def second_order_errors(rng: np.random.Generator, step_sizes=(1e-1, 3e-2, 1e-2, 3e-3, 1e-3)) -> dict[str, float]:
    """N3: first- and second-order expansion of ``logit J`` along a random unit direction.

    Returns the log-log slope of ``|e(eta)|`` (expected 2), the relative error of
    ``e / eta^2`` against ``(Var+ - Var-)/2`` at the smallest eta, the largest
    ``|e - eta^2 (Var+ - Var-)/2| / eta^3``, and the largest ratio of ``|e|`` to the
    Lemma 1 bound ``(L_o + 8 G_o^2) eta^2`` (with the log-linear bounds
    ``G_o = 2 max ||phi||``, ``L_o = max ||phi||^2``).
    """
    policy, reward, theta = random_log_linear(rng)
    w = rng.standard_normal(theta.size)
    w /= np.linalg.norm(w)
    log_probs, scores = policy.log_probs(theta), policy.scores(theta)
    dmu = w @ enumerated_gap(log_probs, scores, reward)["gap"]
    coef = second_order_coefficient(log_probs, scores, reward, w)
    eta = np.asarray(step_sizes)
    errors = np.array([log_odds_decomposition(log_probs, policy.log_probs(theta + e * w), reward)[0] - e * dmu for e in eta])
    phi_max = np.linalg.norm(policy.features, axis=1).max()
    G_o, L_o = 2 * phi_max, phi_max**2
    allowed = eta <= 1 / (2 * np.sqrt(L_o))
    return {
        "slope": float(np.polyfit(np.log(eta), np.log(np.abs(errors)), 1)[0]),
        "second_order_relative_error": float(abs(errors[-1] / eta[-1] ** 2 - coef) / abs(coef)),
        "third_order_remainder": float(np.max(np.abs(errors - coef * eta**2) / eta**3)),
        "lemma1_ratio": float(np.max(np.abs(errors[allowed]) / ((L_o + 8 * G_o**2) * eta[allowed] ** 2))),
    }


# ------------------------------------------------------------------------------ N10
def check_grpo_population_identity(rng: np.random.Generator) -> dict[str, float]:
    """N10: fixed length T, ``g_GRPO = T^-1 sqrt(J(1-J)) (g+ - g-)``; ``g_Dr = J (1 - J) (g+ - g-)``."""
    policy, sequences, reward, W = random_bigram(rng)
    log_probs, scores = policy.sequence_log_probs_and_scores(W, sequences)
    gap = enumerated_gap(log_probs, scores, reward)
    J, T = gap["J"], policy.length
    lengths = np.full(len(sequences), T)
    grpo = population_direction("grpo", log_probs, scores, reward, lengths)
    dr = population_direction("dr_grpo", log_probs, scores, reward, lengths)
    return {
        "grpo": float(np.abs(grpo - np.sqrt(J * (1 - J)) / T * gap["gap"]).max()),
        "dr_grpo": float(np.abs(dr - J * (1 - J) * gap["gap"]).max()),
    }


def monte_carlo_baseline_ratios(rng: np.random.Generator, group_size: int = 4, n_groups: int = 200_000) -> dict[str, float]:
    """N10 Monte Carlo: mean estimator / grad J for the leave-one-out and group-mean baselines.

    Projects each group's estimate on ``grad J``; returns the mean ratio and its standard
    error for both (expected 1 and ``(G - 1)/G``).
    """
    policy, reward, theta = random_log_linear(rng)
    log_probs, scores = policy.log_probs(theta), policy.scores(theta)
    grad_J = enumerated_gap(log_probs, scores, reward)["grad_J"]
    responses = rng.choice(len(reward), size=(n_groups, group_size), p=np.exp(log_probs))
    rewards = reward[responses]
    out = {}
    for name, rule in (("leave_one_out", "reinforce"), ("group_mean", "dr_grpo")):
        estimates = monte_carlo_direction(group_advantages(rewards, rule), scores[responses], np.ones(1), "token_sum")
        projection = estimates @ grad_J / (grad_J @ grad_J)
        out[name] = float(projection.mean())
        out[f"{name}_se"] = float(projection.std(ddof=1) / np.sqrt(n_groups))
    return out


# ------------------------------------------------------------------------------ N11
def check_clipped_surrogate_at_old(rng: np.random.Generator, group_size: int = 6) -> dict[str, float]:
    """N11: autograd of the clipped surrogate (Eq. 23, beta = 0) at theta = theta_old.

    Sampled bigram responses with different lengths (masked tails); the gradient must equal
    ``1/G sum_i A_i / |o_i| grad log pi(o_i)`` ("grpo") or ``1/(G T_max) sum_i A_i grad log pi(o_i)``
    ("dr_grpo").
    """
    vocab, T = 3, 5
    policy = BigramPolicy(vocab, T)
    W = rng.standard_normal((vocab + 1, vocab))
    sequences = policy.sample(W, group_size, rng)
    lengths = rng.integers(1, T + 1, size=group_size)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float64)
    advantages = rng.standard_normal(group_size)
    prev = np.concatenate([np.full((group_size, 1), vocab), sequences[:, :-1]], 1)

    P = np.exp(log_softmax(W))
    scores = np.zeros((group_size,) + W.shape)  # scores of the truncated responses
    for i in range(group_size):
        for t in range(lengths[i]):
            scores[i, prev[i, t], sequences[i, t]] += 1.0
            scores[i, prev[i, t]] -= P[prev[i, t]]

    W_t = torch.tensor(W, requires_grad=True)
    token_logp = torch.log_softmax(W_t, -1)[torch.as_tensor(prev), torch.as_tensor(sequences)]
    errors = {}
    for aggregation, norm in (("grpo", lengths), ("dr_grpo", np.full(group_size, T))):
        W_t.grad = None
        objective = clipped_surrogate(
            token_logp,
            token_logp.detach(),
            torch.as_tensor(advantages),
            torch.as_tensor(mask),
            aggregation=aggregation,
            max_length=T,
        )
        objective.backward(retain_graph=True)
        expected = np.einsum("g,gab->ab", advantages / norm / group_size, scores)
        errors[aggregation] = float(np.abs(W_t.grad.numpy() - expected).max())
    return errors


# ------------------------------------------------------------------------------ N12
def check_single_answer_shortcut(rng: np.random.Generator) -> float:
    """N12: with a unique correct string, ``g+ - g- = grad log pi(o*) / (1 - pi(o*))``."""
    policy, sequences, _, W = random_bigram(rng)
    star = rng.integers(len(sequences))
    reward = np.zeros(len(sequences))
    reward[star] = 1.0
    log_probs, scores = policy.sequence_log_probs_and_scores(W, sequences)
    gap = enumerated_gap(log_probs, scores, reward)["gap"]
    shortcut = scores[star] / (1 - np.exp(log_probs[star]))
    return float(np.abs(gap - shortcut).max())


def identity_table(seed: int) -> pd.DataFrame:
    """All identity checks with the spec's tolerances, one row each."""
    rng = np.random.default_rng(seed)
    order = second_order_errors(rng)
    grpo = check_grpo_population_identity(rng)
    mc = monte_carlo_baseline_ratios(rng)
    clipped = check_clipped_surrogate_at_old(rng)
    rows = [
        ("C1", "N1", "Eq. 9, log-linear (finite differences)", check_gap_identity_log_linear(rng), 1e-8),
        ("C1", "N1", "Eq. 9, autoregressive V=3 T=4", check_gap_identity_autoregressive(rng), 1e-8),
        ("C1", "N1", "Eq. 66, 2-prompt batch", check_gap_identity_batch(rng), 1e-8),
        ("C1", "N1", "J g+ + (1-J) g- = 0", check_mean_zero(rng), 1e-12),
        ("C2", "N2", "Lemma 3 exact, ||step|| = 2", check_lemma3(rng), 1e-12),
        ("C2", "N3", "|slope of log|e| vs log eta - 2|", abs(order["slope"] - 2), 0.1),
        ("C2", "N3", "e/eta^2 vs (Var+ - Var-)/2, relative", order["second_order_relative_error"], 0.02),
        ("C2", "N3", "|e| / Lemma 1 bound", order["lemma1_ratio"], 1.0),
        ("C14", "N10", "population GRPO = T^-1 sqrt(J(1-J)) gap", grpo["grpo"], 1e-12),
        ("C14", "N10", "population Dr. GRPO = J(1-J) gap", grpo["dr_grpo"], 1e-12),
        ("C14", "N10", "leave-one-out mean / grad J - 1, in SE", abs(mc["leave_one_out"] - 1) / mc["leave_one_out_se"], 4.0),
        ("C14", "N10", "group-mean mean / grad J - 3/4, in SE", abs(mc["group_mean"] - 0.75) / mc["group_mean_se"], 4.0),
        ("C14", "N11", "clipped surrogate grad at theta_old (grpo)", clipped["grpo"], 1e-12),
        ("C14", "N11", "clipped surrogate grad at theta_old (dr_grpo)", clipped["dr_grpo"], 1e-12),
        ("C1", "N12", "single-answer shortcut", check_single_answer_shortcut(rng), 1e-10),
    ]
    table = pd.DataFrame(rows, columns=["claim", "check", "identity", "error", "tolerance"])
    table["holds"] = table["error"] <= table["tolerance"]
    return table
