"""Exact-gradient policy simulator for the gradient-gap theory (float64 numpy).

Notation follows Suk & Duan, "On the Optimization Dynamics of RLVR: Gradient Gap and
Step Size Thresholds" (equation numbers are the paper's):

* ``J_q`` success probability of a prompt (Eq. 2); ``pi_plus``/``pi_minus`` the policy
  conditioned on correct/incorrect responses (Eq. 6a/6b);
* ``g_plus``/``g_minus`` the mean score under them (Eq. 7), the Gradient Gap
  ``g_plus - g_minus`` (Eq. 8), with ``grad J = J (1 - J) (g_plus - g_minus)`` (Eq. 9);
* Gap Alignment ``dmu = <w, g_plus - g_minus>`` (Eq. 10). Following the spec's
  implementation rule under Eq. 3 we always work with the actual step
  ``delta_theta = eta * w`` and its alignment ``<delta_theta, g_plus - g_minus>``.

Every policy class takes parameters with arbitrary leading *run* dimensions, so many
step sizes / seeds advance as one batched array computation.

Policies
--------
* :class:`LogLinearPolicy` -- trajectory-level log-linear policy ``z = Phi theta + b``
  over an enumerated response set; ``features=None`` is the tabular softmax (MAB).
* :class:`ContextualLinearPolicy` -- linear logits ``theta^T x`` over ``N`` arms.
* :class:`TokenLogLinearPolicy` -- i.i.d. tokens of fixed length ``T`` drawn from a
  log-linear softmax (the Theorem 4 / App. F.2 construction).
* :class:`BigramPolicy` -- autoregressive bigram policy ``W[prev] -> next`` with a BOS
  row, enumerable for small ``V**T`` and sampled for Monte Carlo.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

Array = np.ndarray


# --------------------------------------------------------------------------- basics
def log_softmax(logits: Array, axis: int = -1) -> Array:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits: Array, axis: int = -1) -> Array:
    weights = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return weights / weights.sum(axis=axis, keepdims=True)


def logit(p: Array) -> Array:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


@dataclass
class GapStats:
    """Exact per-prompt gap quantities of a softmax over an enumerated response set.

    ``gap`` and ``grad_J`` are expressed in the coordinates of the caller (logit space
    for :func:`softmax_gap`, parameter space for the policy classes).
    """

    J: Array
    gap: Array
    grad_J: Array


def softmax_gap(logits: Array, reward: Array) -> GapStats:
    """Gap quantities in *logit* coordinates of ``pi = softmax(logits)``.

    With ``d log pi(o) / dz = e_o - pi`` one gets ``g_plus - g_minus = pi_plus - pi_minus``
    (the difference of the conditional distributions, Eq. 6-8) and
    ``grad_z J = pi * (r - J) = J (1 - J) (pi_plus - pi_minus)`` (Eq. 9); the gap is
    computed through that identity, which the unit tests check against enumeration.
    ``reward`` is binary and broadcasts against ``logits``.
    """
    pi = softmax(logits)
    weight_pos = pi * reward
    J = weight_pos.sum(-1)[..., None]
    grad_J = weight_pos - pi * J  # pi * (r - J)
    return GapStats(J=J[..., 0], gap=grad_J / (J * (1.0 - J)), grad_J=grad_J)


# ---------------------------------------------------------------- enumerated policies
def enumerated_gap(log_probs: Array, scores: Array, reward: Array) -> dict[str, Array]:
    """Exact J, g+, g-, gap and grad J from an enumerated response set (Eq. 6-9, 25-26).

    ``log_probs`` (..., n), ``scores`` (..., n, p) = grad log pi(o), ``reward`` (n,) binary.
    ``grad_J`` is computed independently as ``E[r * score]`` so that Eq. 9 can be tested.
    """
    pi = np.exp(log_probs)
    reward = np.asarray(reward, dtype=np.float64)
    J = (pi * reward).sum(-1)
    g_plus = np.einsum("...n,...np->...p", pi * reward, scores) / J[..., None]
    g_minus = np.einsum("...n,...np->...p", pi * (1 - reward), scores) / (1 - J)[..., None]
    grad_J = np.einsum("...n,...np->...p", pi * reward, scores)
    return {"J": J, "g_plus": g_plus, "g_minus": g_minus, "gap": g_plus - g_minus, "grad_J": grad_J}


class LogLinearPolicy:
    """Log-linear trajectory policy ``pi(o) = softmax(Phi theta + b)_o`` (App. E, F.1).

    ``features=None`` means the tabular softmax with ``theta`` the logits (MAB, E2).
    Score ``phi(o) - E_pi phi``; Hessian of ``log pi`` is ``-Cov_pi(phi)``.
    """

    def __init__(self, features: Array | None = None, bias: Array | None = None, n_responses: int | None = None):
        self.features = None if features is None else np.asarray(features, dtype=np.float64)
        n = n_responses if self.features is None else self.features.shape[0]
        if n is None:
            raise ValueError("n_responses is required for a tabular policy (features=None)")
        self.n_responses = n
        self.bias = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64)

    def logits(self, theta: Array) -> Array:
        z = theta if self.features is None else theta @ self.features.T
        return z + self.bias

    def to_params(self, logit_vector: Array) -> Array:
        """Chain rule ``(dz/dtheta)^T v`` from logit to parameter coordinates."""
        return logit_vector if self.features is None else logit_vector @ self.features

    def log_probs(self, theta: Array) -> Array:
        return log_softmax(self.logits(theta))

    def scores(self, theta: Array) -> Array:
        phi = np.eye(self.n_responses) if self.features is None else self.features
        mean_phi = softmax(self.logits(theta)) @ phi
        return phi - mean_phi[..., None, :]

    def gap(self, theta: Array, reward: Array) -> GapStats:
        stats = softmax_gap(self.logits(theta), reward)
        return GapStats(stats.J, self.to_params(stats.gap), self.to_params(stats.grad_J))


class ContextualLinearPolicy:
    """Linear-logit contextual bandit ``pi(.|x) = softmax(theta^T x)`` (Sec. 6.1, E1).

    ``theta`` has shape (..., d, N); contexts ``x`` (..., C, d).
    ``grad_theta log pi(y|x) = x (e_y - pi(.|x))^T``, so every parameter-space quantity is
    an outer product ``x v^T`` of the context with a logit-space vector ``v``.
    """

    @staticmethod
    def logits(theta: Array, contexts: Array) -> Array:
        return np.einsum("...cd,...dn->...cn", contexts, theta)

    @classmethod
    def gap(cls, theta: Array, contexts: Array, reward: Array) -> GapStats:
        """Per-context gap in *logit* coordinates; the parameter gap is ``x gap^T``."""
        return softmax_gap(cls.logits(theta, contexts), reward)


def enumerate_sequences(vocab_size: int, length: int) -> Array:
    """All ``vocab_size**length`` token sequences, shape (V**T, T)."""
    return np.array(list(itertools.product(range(vocab_size), repeat=length)), dtype=np.int64).reshape(-1, length)


class TokenLogLinearPolicy:
    """Fixed-length sequences of i.i.d. tokens, ``p = softmax(Phi theta)`` (App. F.2).

    Logits depend only on the candidate token and are shared across positions, so
    ``log pi(o) = sum_t log p(o_t)`` and the score is ``counts(o) Phi - T E_p phi``.
    """

    def __init__(self, features: Array, length: int):
        self.features = np.asarray(features, dtype=np.float64)
        self.length = length

    def token_probs(self, theta: Array) -> Array:
        return softmax(theta @ self.features.T)

    def sequence_log_probs_and_scores(self, theta: Array, sequences: Array) -> tuple[Array, Array]:
        V = self.features.shape[0]
        counts = np.stack([(sequences == v).sum(-1) for v in range(V)], -1).astype(np.float64)
        log_p = log_softmax(theta @ self.features.T)
        log_probs = counts @ log_p[..., :, None]
        mean_phi = self.token_probs(theta) @ self.features
        scores = counts @ self.features - self.length * mean_phi[..., None, :]
        return log_probs[..., 0], scores

    def all_correct_gap(self, theta: Array, token: int = 0) -> GapStats:
        """Exact gap when only the all-``token`` sequence is correct (single-answer shortcut).

        ``J = p_token**T`` and ``g_plus - g_minus = grad log pi(o*) / (1 - J)``.
        """
        p = self.token_probs(theta)
        J = p[..., token] ** self.length
        score_star = self.length * (self.features[token] - p @ self.features)
        return GapStats(J=J, gap=score_star / (1 - J)[..., None], grad_J=J[..., None] * score_star)


class BigramPolicy:
    """Autoregressive bigram policy: ``pi(o_t | o_{t-1}) = softmax(W[o_{t-1}])``.

    ``W`` has shape (..., V + 1, V); row ``V`` is the BOS state. Sequences have a fixed
    length ``T`` (no EOS), which makes ``T_inf = T`` and ``T_psi1 = T / ln 2``.
    """

    def __init__(self, vocab_size: int, length: int):
        self.vocab_size = vocab_size
        self.length = length

    def _prev_tokens(self, sequences: Array) -> Array:
        bos = np.full(sequences.shape[:-1] + (1,), self.vocab_size, dtype=np.int64)
        return np.concatenate([bos, sequences[..., :-1]], -1)

    def transition_counts(self, sequences: Array) -> tuple[Array, Array]:
        """Per-sequence transition counts (n, V+1, V) and visit counts (n, V+1) of (n, T) sequences."""
        n = sequences.shape[0]
        trans = np.zeros((n, self.vocab_size + 1, self.vocab_size))
        np.add.at(trans, (np.arange(n)[:, None], self._prev_tokens(sequences), sequences), 1.0)
        return trans, trans.sum(-1)

    def sequence_log_probs_and_scores(self, W: Array, sequences: Array) -> tuple[Array, Array]:
        """Exact ``log pi(o)`` (..., n) and flattened scores (..., n, (V+1) V).

        ``grad_W log pi(o) = N_trans(o) - N_visit(o)[:, None] * P`` with ``P = softmax(W)``.
        """
        trans, visits = self.transition_counts(sequences)
        log_P = log_softmax(W)
        log_probs = np.einsum("nab,...ab->...n", trans, log_P)
        scores = trans - visits[..., None] * np.exp(log_P)[..., None, :, :]
        return log_probs, scores.reshape(scores.shape[:-2] + (-1,))

    def last_token_success(self, W: Array, target: int = 0) -> Array:
        """Exact ``J = Pr(o_T = target)`` via the Markov chain: ``P_bos P^(T-1)``."""
        P = softmax(W)
        dist = P[..., self.vocab_size, :]
        step = P[..., : self.vocab_size, :]
        for _ in range(self.length - 1):
            dist = np.einsum("...a,...ab->...b", dist, step)
        return dist[..., target]

    def sample(self, W: Array, n_samples: int, rng: np.random.Generator) -> Array:
        """Sample (..., n_samples, T) sequences for every run in ``W`` (..., V+1, V)."""
        run_shape = W.shape[:-2]
        cum = np.cumsum(softmax(W), -1).reshape((-1,) + W.shape[-2:])
        runs = np.arange(cum.shape[0])[:, None]
        state = np.full((cum.shape[0], n_samples), self.vocab_size, dtype=np.int64)
        out = np.empty((cum.shape[0], n_samples, self.length), dtype=np.int64)
        for t in range(self.length):
            u = rng.random((cum.shape[0], n_samples, 1))
            state = np.minimum((cum[runs, state] < u).sum(-1), self.vocab_size - 1)
            out[..., t] = state
        return out.reshape(run_shape + (n_samples, self.length))

    def weighted_score_sum(self, W: Array, sequences: Array, weights: Array) -> Array:
        """``sum_i weights_i grad_W log pi(o_i)`` for sampled groups, shape like ``W``.

        ``sequences`` (..., G, T) and ``weights`` (..., G); uses transition-count
        histograms weighted by the per-sequence coefficients (no per-sequence loop).
        """
        V = self.vocab_size
        run_shape = W.shape[:-2]
        n_runs = int(np.prod(run_shape)) if run_shape else 1
        prev = self._prev_tokens(sequences)
        run_index = np.arange(n_runs).reshape(run_shape + (1, 1)) if run_shape else np.zeros((1, 1), dtype=np.int64)
        flat = (run_index * (V + 1) + prev) * V + sequences
        w = np.broadcast_to(weights[..., None], sequences.shape)
        trans = np.bincount(flat.ravel(), weights=w.ravel(), minlength=n_runs * (V + 1) * V)
        trans = trans.reshape(run_shape + (V + 1, V))
        return trans - trans.sum(-1, keepdims=True) * softmax(W)


# ------------------------------------------------------------------ update directions
UPDATE_RULES = ("reinforce", "grpo", "dr_grpo")


def check_rule(rule: str) -> None:
    if rule not in UPDATE_RULES:
        raise ValueError(f"update rule {rule!r} is not one of {UPDATE_RULES}")


def population_direction(rule: str, log_probs: Array, scores: Array, reward: Array, lengths: Array) -> Array:
    """Exact population update direction of an enumerated policy (ascent direction).

    * ``reinforce`` / ``dr_grpo``: ``E[(r - J) score]`` = grad J (Eq. 4; the paper equates
      Dr. GRPO with REINFORCE using a group-demeaned advantage and a token sum).
    * ``grpo``: ``E[(r - J) / sigma * score / |o|]`` with ``sigma^2 = J (1 - J)`` (Eq. 5).
    """
    check_rule(rule)
    pi = np.exp(log_probs)
    reward = np.asarray(reward, dtype=np.float64)
    J = (pi * reward).sum(-1, keepdims=True)
    coef = pi * (reward - J)
    if rule == "grpo":
        coef = coef / np.sqrt(J * (1 - J)) / np.asarray(lengths, dtype=np.float64)
    return np.einsum("...n,...np->...p", coef, scores)


def group_advantages(rewards: Array, rule: str, std_eps: float = 1e-4) -> Array:
    """Monte-Carlo advantages of a group of ``G`` rewards (last axis).

    * ``grpo``: ``(r - mean) / (std + eps)`` with TRL's unbiased std and ``eps = 1e-4``
      (Eq. 22; spec gap 9 keeps TRL's convention for training);
    * ``dr_grpo``: ``r - mean`` (mean baseline, no std);
    * ``reinforce``: leave-one-out baseline ``r_i - mean_{j != i} r_j`` (unbiased, Eq. 24).
    """
    check_rule(rule)
    rewards = np.asarray(rewards, dtype=np.float64)
    G = rewards.shape[-1]
    mean = rewards.mean(-1, keepdims=True)
    if rule == "reinforce":
        return (rewards - mean) * G / (G - 1)
    centred = rewards - mean
    if rule == "dr_grpo":
        return centred
    return centred / (rewards.std(-1, ddof=1, keepdims=True) + std_eps)


def monte_carlo_direction(advantages: Array, scores: Array, lengths: Array, aggregation: str) -> Array:
    """``1/G sum_i A_i agg_i grad log pi(o_i)`` from sampled responses.

    ``aggregation='seq_mean'`` divides each response by its length (GRPO's 1/|o|),
    ``'token_sum'`` does not (Dr. GRPO / REINFORCE).
    """
    if aggregation not in ("seq_mean", "token_sum"):
        raise ValueError(f"aggregation {aggregation!r} is not one of ('seq_mean', 'token_sum')")
    coef = advantages / advantages.shape[-1]
    if aggregation == "seq_mean":
        coef = coef / lengths
    return np.einsum("...g,...gp->...p", coef, scores)


def clipped_surrogate(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float = 0.2,
    aggregation: str = "grpo",
    max_length: int | None = None,
) -> torch.Tensor:
    """PPO/GRPO clipped surrogate objective of Eq. 23 with beta = 0 (to be *maximised*).

    ``logp_*`` and ``mask`` are per-token (G, T); ``advantages`` per response (G,).
    ``aggregation='grpo'`` averages tokens per response (1/|o|); ``'dr_grpo'`` sums tokens
    and divides by the constant ``max_length`` (TRL's ``loss_type="dr_grpo"``).
    """
    ratio = torch.exp(logp_new - logp_old)
    adv = advantages[:, None]
    per_token = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv) * mask
    if aggregation == "grpo":
        return (per_token.sum(-1) / mask.sum(-1)).mean()
    if aggregation == "dr_grpo":
        return per_token.sum() / (per_token.shape[0] * (max_length or per_token.shape[1]))
    raise ValueError(f"aggregation {aggregation!r} is not one of ('grpo', 'dr_grpo')")


# ---------------------------------------------------------------- log-odds expansions
def log_odds_decomposition(log_probs_old: Array, log_probs_new: Array, reward: Array) -> tuple[Array, Array]:
    """Both sides of Lemma 3 (Eq. 34): the exact change of ``logit J`` over one step.

    Returns ``(logit J_new - logit J_old, log E_{pi+_old} e^dL - log E_{pi-_old} e^dL)``.
    """
    reward = np.asarray(reward, dtype=bool)
    pi_old = np.exp(log_probs_old)
    J_old = pi_old[..., reward].sum(-1)
    J_new = np.exp(log_probs_new)[..., reward].sum(-1)
    delta = log_probs_new - log_probs_old
    plus = np.log((pi_old[..., reward] * np.exp(delta[..., reward])).sum(-1) / J_old)
    minus = np.log((pi_old[..., ~reward] * np.exp(delta[..., ~reward])).sum(-1) / (1 - J_old))
    return logit(J_new) - logit(J_old), plus - minus


def second_order_coefficient(log_probs: Array, scores: Array, reward: Array, direction: Array) -> Array:
    """``(Var+ - Var-) / 2`` of ``w . score`` under ``pi+`` and ``pi-`` (App. F, with the 1/2).

    For log-linear policies ``d logit = eta dmu + eta^2 (Var+ - Var-) / 2 + O(eta^3)``;
    the paper prints the term without the 1/2 (spec gap 15).
    """
    reward = np.asarray(reward, dtype=bool)
    pi = np.exp(log_probs)
    proj = scores @ direction

    def variance(mask: Array) -> Array:
        p = pi * mask
        p = p / p.sum(-1, keepdims=True)
        mean = (p * proj).sum(-1, keepdims=True)
        return (p * (proj - mean) ** 2).sum(-1)

    return 0.5 * (variance(reward) - variance(~reward))


def psi1_norm(lengths: Array, tol: float = 1e-12) -> float:
    """Empirical sub-exponential norm ``inf{a : mean(exp(|l| / a)) <= 2}`` by bisection."""
    lengths = np.abs(np.asarray(lengths, dtype=np.float64))
    lo, hi = 1e-6, 10 * lengths.max() + 1.0
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.mean(np.exp(lengths / mid)) > 2 else (lo, mid)
    return hi


def cumulative_alignment(aligned_steps: Array, axis: int = -1) -> tuple[Array, Array]:
    """``M(K) = sum_{k<K} [dmu eta]_+`` (Eq. 12) and signed ``S(K) = sum_{k<K} dmu eta``.

    The outputs have one more entry than the input along ``axis`` (``M(0) = S(0) = 0``).
    """
    aligned_steps = np.moveaxis(np.asarray(aligned_steps, dtype=np.float64), axis, -1)
    zero = np.zeros(aligned_steps.shape[:-1] + (1,))
    M = np.concatenate([zero, np.cumsum(np.maximum(aligned_steps, 0.0), -1)], -1)
    S = np.concatenate([zero, np.cumsum(aligned_steps, -1)], -1)
    return np.moveaxis(M, -1, axis), np.moveaxis(S, -1, axis)
