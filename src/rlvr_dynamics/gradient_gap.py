"""Experiments of the gradient-gap paper on the exact simulator (spec E1, E2, E4-E6, X1, X3, X4).

Each function runs one experiment, batched over step sizes / seeds, and returns plain
arrays or a :class:`pandas.DataFrame`; the notebook only plots and checks claims.
Spec: ``shared/papers/gradient_gap.md``; equation numbers are the paper's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from tqdm import tqdm

from rlvr_dynamics.simulator import (
    BigramPolicy,
    ContextualLinearPolicy,
    LogLinearPolicy,
    TokenLogLinearPolicy,
    cumulative_alignment,
    group_advantages,
    logit,
    sigmoid,
    softmax,
)


# ------------------------------------------------------------------------ E2: MAB
def run_mab(step_sizes, n_arms: int = 100, steps: int = 10_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Exact REINFORCE on a tabular softmax MAB (App. I.1, Fig. 4), one run per step size.

    One correct arm ``a*``, zero initial logits (``J(0) = 1 / n_arms``) and
    ``theta <- theta + eta * grad J`` with the closed form ``grad J = J (e_a* - pi)``. The gap
    alignment of the unnormalized direction ``w = grad J`` is
    ``dmu = <grad J, g+ - g-> = ||grad J||^2 / (J (1 - J))`` (Eq. 9). All step sizes advance
    as one (R, n_arms) array. Returns ``J`` (R, K+1), ``dmu`` (R, K), ``M`` (R, K+1).
    """
    eta = np.asarray(step_sizes, dtype=np.float64)[:, None]
    best = np.random.default_rng(seed).integers(n_arms)
    theta = np.zeros((eta.shape[0], n_arms))  # tabular softmax: the parameters are the logits
    J = np.empty((eta.shape[0], steps + 1))
    dmu = np.empty((eta.shape[0], steps))
    for k in range(steps + 1):
        pi = softmax(theta)
        J_k = pi[:, best]
        J[:, k] = J_k
        if k == steps:
            break
        grad_J = pi * -J_k[:, None]
        grad_J[:, best] += J_k
        dmu[:, k] = np.einsum("rn,rn->r", grad_J, grad_J) / (J_k * (1 - J_k))
        theta += eta * grad_J
    M, _ = cumulative_alignment(dmu * eta)
    return {"step_sizes": eta[:, 0], "J": J, "dmu": dmu, "M": M}


# --------------------------------------------------------- E1: contextual bandit
def run_contextual_bandit(
    seeds,
    dim: int = 10,
    n_arms: int = 100,
    pool_size: int = 100,
    n_eval: int = 500,
    step_size: float = 0.1,
    steps: int = 5000,
    record_every: int = 10,
    filter_range: tuple[float, float] = (0.2, 0.8),
) -> dict[str, np.ndarray]:
    """Exact-gradient REINFORCE on the linear contextual bandit of Sec. 6.1 (Fig. 1).

    Per seed: scores ``beta ~ N(0,1)^{d x N}``, 100 pool and 500 fresh eval contexts
    ``~ U[0,1]^d``, ``theta_0 ~ N(0, 0.01^2)``. Each step takes one pool context whose J lies
    in ``filter_range`` (SPEED-RL filter) or, when none qualifies, one uniformly from the
    pool (spec gap 1 default), and applies ``theta += eta * x u^T`` with
    ``u = grad_z J_x`` (the exact gradient). For every eval context x it accumulates
    ``M_x = sum eta [dmu_x]_+``, the signed ``S_x`` and the relative alignment
    ``R_x = sum eta ([dmu_x]_+ - [dmu_{x_k}]_+)``; ``dmu_x = (x . x_k) u_k^T (e_b(x) - pi~_x^-)``.
    Records are paired as ``J(k+1)`` with sums up to ``k`` (spec gap 5). Seeds run batched.
    """
    seeds = list(seeds)
    rngs = [np.random.default_rng(s) for s in seeds]
    beta = np.stack([r.standard_normal((dim, n_arms)) for r in rngs])
    pool = np.stack([r.random((pool_size, dim)) for r in rngs])
    evals = np.stack([r.random((n_eval, dim)) for r in rngs])
    theta = np.stack([0.01 * r.standard_normal((dim, n_arms)) for r in rngs])
    uniforms = np.stack([r.random((steps, pool_size)) for r in rngs])

    def one_hot_best(contexts: np.ndarray) -> np.ndarray:
        scores = ContextualLinearPolicy.logits(beta, contexts)
        return (scores == scores.max(-1, keepdims=True)).astype(np.float64)

    pool_reward, eval_reward = one_hot_best(pool), one_hot_best(evals)
    seed_index = np.arange(len(seeds))
    record_steps = np.unique(np.r_[np.arange(0, steps + 1, record_every), steps])
    shape = (len(seeds), record_steps.size, n_eval)
    J_rec, M_rec, S_rec, R_rec = (np.empty(shape) for _ in range(4))
    M = np.zeros((len(seeds), n_eval))
    S, R = M.copy(), M.copy()
    filter_active = 0
    r = 0
    for k in tqdm(range(steps + 1), desc="contextual bandit", mininterval=5, leave=False):
        eval_stats = ContextualLinearPolicy.gap(theta, evals, eval_reward)
        if k == record_steps[r]:
            J_rec[:, r], M_rec[:, r], S_rec[:, r], R_rec[:, r] = eval_stats.J, M, S, R
            r += 1
        if k == steps:
            break
        pool_stats = ContextualLinearPolicy.gap(theta, pool, pool_reward)
        eligible = (pool_stats.J >= filter_range[0]) & (pool_stats.J <= filter_range[1])
        any_eligible = eligible.any(-1)
        filter_active += int(any_eligible.sum())
        candidates = eligible | ~any_eligible[:, None]
        chosen = np.where(candidates, uniforms[:, k], -1.0).argmax(-1)
        x_k = pool[seed_index, chosen]
        u_k = pool_stats.grad_J[seed_index, chosen]
        gap_k = pool_stats.gap[seed_index, chosen]
        aligned_eval = step_size * np.einsum("sed,sd->se", evals, x_k) * np.einsum("sen,sn->se", eval_stats.gap, u_k)
        aligned_train = step_size * (x_k**2).sum(-1) * (u_k * gap_k).sum(-1)
        M += np.maximum(aligned_eval, 0.0)
        S += aligned_eval
        R += np.maximum(aligned_eval, 0.0) - np.maximum(aligned_train, 0.0)[:, None]
        theta += step_size * x_k[:, :, None] * u_k[:, None, :]
    return {
        "seeds": np.asarray(seeds),
        "steps": record_steps,
        "J": J_rec,
        "M": M_rec,
        "S": S_rec,
        "R": R_rec,
        "filter_active_fraction": filter_active / (steps * len(seeds)),
        "distinct_best_arms": np.array([np.unique(eval_reward[s].argmax(-1)).size for s in seed_index]),
    }


# ------------------------------------------------ E4 / E5: collapse constructions
def _collapse_direction(k: int, delta: float) -> np.ndarray:
    """Hand-built direction of Eq. 53: ``w_k = ((-1)^k 2, -delta) / 3`` (not a policy gradient)."""
    return np.array([2.0 * (-1) ** k, -delta]) / 3.0


def _three_response_features(scale: float) -> np.ndarray:
    """Features of o_1 (positive), o_-1, o_-2: ``scale/2 * (0,1), (1,0), (-1,0)`` (App. F.1)."""
    return 0.5 * scale * np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])


def run_theorem2_instance(G_o: float, eta: float, steps: int) -> dict[str, np.ndarray | float]:
    """Trajectory-level overshoot instance of Theorem 2 (App. F.1, Eq. 51-54).

    ``theta_0 = eta/3 (-1, 0)``, ``delta = eta G_o / 15``, constant step ``eta`` along the
    direction of Eq. 53. Returns the simulated J and dmu next to their closed forms
    ``J_k = 1 / (1 + 2 cosh(eta G_o / 6) e^{delta eta G_o k / 6})`` and
    ``dmu = G_o / 6 (2 tanh(eta G_o / 6) - delta)``.
    """
    policy = LogLinearPolicy(_three_response_features(G_o))
    reward = np.array([1.0, 0.0, 0.0])
    delta = eta * G_o / 15
    theta = eta / 3 * np.array([-1.0, 0.0])
    J, dmu, w_norm = np.empty(steps + 1), np.empty(steps), np.empty(steps)
    for k in range(steps + 1):
        stats = policy.gap(theta, reward)
        J[k] = stats.J
        if k == steps:
            break
        w = _collapse_direction(k, delta)
        dmu[k] = w @ stats.gap
        w_norm[k] = np.linalg.norm(w)
        theta = theta + eta * w
    k = np.arange(steps + 1)
    M, _ = cumulative_alignment(eta * dmu)
    L_o = G_o**2 / 4  # sup ||Cov phi|| (spec gap 16; the paper states L_o = 0)
    return {
        "J": J,
        "J_closed_form": 1 / (1 + 2 * np.cosh(eta * G_o / 6) * np.exp(delta * eta * G_o * k / 6)),
        "dmu": dmu,
        "dmu_closed_form": G_o / 6 * (2 * np.tanh(eta * G_o / 6) - delta),
        "dmu_lower_bound": eta * G_o**2 / 30,
        "w_norm": w_norm,
        "M": M,
        "eta_13a_cap": dmu.min() / (2 * (L_o + 8 * G_o**2)),
    }


def run_theorem4_instance(length: int, G_p: float, eta: float, steps: int) -> dict[str, np.ndarray | float]:
    """Token-level overshoot instance of Theorem 4 (App. F.2): i.i.d. tokens, length ``T``.

    Only the all-``o_1`` sequence is correct, so ``J_k = p_1(k)^T``; ``delta = eta G_p / 10``;
    same initialization and direction as Theorem 2. The gap is exact (single-answer
    shortcut, checked against full enumeration in the unit tests).
    """
    policy = TokenLogLinearPolicy(_three_response_features(G_p), length)
    delta = eta * G_p / 10
    theta = eta / 3 * np.array([-1.0, 0.0])
    J, dmu = np.empty(steps + 1), np.empty(steps)
    for k in range(steps + 1):
        stats = policy.all_correct_gap(theta)
        J[k] = stats.J
        if k == steps:
            break
        w = _collapse_direction(k, delta)
        dmu[k] = w @ stats.gap
        theta = theta + eta * w
    return {"J": J, "dmu": dmu, "dmu_lower_bound": length * eta * G_p**2 / 60, "ratio": eta / dmu.min()}


# ------------------------------------------------------- E6: two-response softmax
def run_two_response(step_size: float, steps: int, theta0=(0.0, 0.0), normalized: bool = True) -> dict[str, np.ndarray]:
    """Two-response softmax of App. E: ``J = sigma(theta+ - theta-)``, ``g+ - g- = (1, -1)``.

    ``normalized=True`` steps along ``w = (1, -1)/sqrt(2)`` (``dmu = sqrt(2)``, logit J
    linear in k); otherwise along the REINFORCE direction ``w = grad J``. ``log_odds`` is
    ``logit J`` computed stably as ``log pi(o+) - log pi(o-)`` (``logit(J)`` from J itself
    loses all precision once ``1 - J`` nears machine epsilon).
    """
    policy = LogLinearPolicy(n_responses=2)
    reward = np.array([1.0, 0.0])
    theta = np.asarray(theta0, dtype=np.float64)
    J, log_odds, dmu, grad_norm_sq = np.empty(steps + 1), np.empty(steps + 1), np.empty(steps), np.empty(steps + 1)
    for k in range(steps + 1):
        stats = policy.gap(theta, reward)
        log_probs = policy.log_probs(theta)
        J[k], log_odds[k], grad_norm_sq[k] = stats.J, log_probs[0] - log_probs[1], stats.grad_J @ stats.grad_J
        if k == steps:
            break
        w = np.array([1.0, -1.0]) / np.sqrt(2) if normalized else stats.grad_J
        dmu[k] = w @ stats.gap
        theta = theta + step_size * w
    return {"J": J, "log_odds": log_odds, "dmu": dmu, "grad_norm_sq": grad_norm_sq}


# ------------------------------------------- X1: sharp step-size threshold (REINFORCE)
def run_rare_negative_threshold(step_sizes, steps: int = 20_000) -> dict[str, np.ndarray]:
    """Exact REINFORCE on the rare-negative toy of spec X1, one run per step size.

    Responses o+ (phi = (1,0)), common negative n_0 (0,0), rare negative n_r (3,-1) with a
    fixed prior ``b = (0, 0, -8)`` so ``J(0) = 0.4999``; ``theta += eta grad J``.
    """
    policy = LogLinearPolicy(np.array([[1.0, 0.0], [0.0, 0.0], [3.0, -1.0]]), bias=np.array([0.0, 0.0, -8.0]))
    reward = np.array([1.0, 0.0, 0.0])
    eta = np.asarray(step_sizes, dtype=np.float64)[:, None]
    theta = np.zeros((eta.shape[0], 2))
    M = np.zeros(eta.shape[0])
    for _ in range(steps):
        stats = policy.gap(theta, reward)
        M += np.maximum(eta[:, 0] * (stats.grad_J * stats.gap).sum(-1), 0.0)
        theta += eta * stats.grad_J
    return {"step_sizes": eta[:, 0], "J0": policy.gap(np.zeros(2), reward).J, "J_final": policy.gap(theta, reward).J, "M": M}


def threshold_band(step_sizes: np.ndarray, converged: np.ndarray, collapsed: np.ndarray) -> tuple[float, float]:
    """Largest eta below which every run converged; smallest eta above which every run collapsed."""
    order = np.argsort(step_sizes)
    eta, conv, coll = step_sizes[order], converged[order], collapsed[order]
    first_failure = np.argmin(conv) if not conv.all() else eta.size
    last_survivor = eta.size - np.argmin(coll[::-1]) if not coll.all() else 0
    below = eta[first_failure - 1] if first_failure > 0 else np.nan
    above = eta[last_survivor] if last_survivor < eta.size else np.nan
    return float(below), float(above)


# ------------------------------------------- X3 / X4: sampled GRPO on a bigram policy
def train_bigram_last_token(
    rules: tuple[str, ...],
    step_sizes,
    n_seeds: int,
    length: int,
    steps: int,
    vocab_size: int = 8,
    group_size: int = 8,
    seed: int = 0,
    record_every: int = 0,
) -> dict[str, np.ndarray]:
    """Sampled group updates on the bigram toy of spec X3 (reward 1 iff the last token is 0).

    All runs -- rules x step sizes x seeds -- advance as one batch from uniform logits
    (``J_0 = 1 / V``) with plain SGD ``W += alpha * g``:

    * ``dr_grpo``: ``g = 1/G sum_i (r_i - mean r) sum_t grad log pi`` (token sum);
    * ``grpo``: ``g = 1/G sum_i (r_i - mean r) / (std + 1e-4) * 1/T sum_t grad log pi``.

    Returns ``J_final`` with shape (rules, step sizes, seeds) and, if ``record_every``,
    the exact J trajectory ``J`` (rules, step sizes, seeds, records).
    """
    policy = BigramPolicy(vocab_size, length)
    alpha = np.asarray(step_sizes, dtype=np.float64)
    shape = (len(rules), alpha.size, n_seeds)
    W = np.zeros(shape + (vocab_size + 1, vocab_size))
    rng = np.random.default_rng([seed, length])
    seq_scale = np.array([1.0 / length if rule == "grpo" else 1.0 for rule in rules])[:, None, None, None]
    records = []
    for k in tqdm(range(steps), desc=f"bigram T={length}", mininterval=5, leave=False):
        if record_every and k % record_every == 0:
            records.append(policy.last_token_success(W))
        sequences = policy.sample(W, group_size, rng)
        rewards = (sequences[..., -1] == 0).astype(np.float64)
        advantages = np.stack([group_advantages(rewards[i], rule) for i, rule in enumerate(rules)])
        grad = policy.weighted_score_sum(W, sequences, advantages * seq_scale / group_size)
        W += alpha[None, :, None, None, None] * grad
    out = {"step_sizes": alpha, "J_final": policy.last_token_success(W)}
    if record_every:
        records.append(out["J_final"])
        out["J"] = np.stack(records, -1)
    return out


def length_sweep(
    lengths,
    step_sizes,
    n_seeds: int,
    steps: int,
    collapse_below: float = 0.02,
    seed: int = 0,
    rules: tuple[str, ...] = ("dr_grpo", "grpo"),
) -> pd.DataFrame:
    """X3: collapse fraction (final J < ``collapse_below``) per rule, response length, step size."""
    rows = []
    for T in tqdm(list(lengths), desc="length sweep"):
        res = train_bigram_last_token(rules, step_sizes, n_seeds, T, steps, seed=seed)
        for i, rule in enumerate(rules):
            for j, a in enumerate(res["step_sizes"]):
                final = res["J_final"][i, j]
                rows.append(
                    {
                        "rule": rule,
                        "T": T,
                        "alpha": a,
                        "collapse_fraction": float((final < collapse_below).mean()),
                        "median_final_J": float(np.median(final)),
                    }
                )
    return pd.DataFrame(rows)


def fit_collapse_step(alpha: np.ndarray, fraction: np.ndarray, n_seeds: int, level: float = 0.5) -> float:
    """Step size where the collapse fraction reaches ``level``, from a binomial logistic fit
    ``f = sigma(a + b log alpha)`` (``level=0.5`` gives the spec's alpha_50).

    Returns NaN when the fitted slope is not positive or the 50% point lies outside the
    sampled range (no extrapolation).
    """
    x = np.log(alpha)
    k = np.round(fraction * n_seeds)

    def nll(params: np.ndarray) -> float:
        z = params[0] + params[1] * (x - x.mean())
        return float(np.sum(n_seeds * np.logaddexp(0.0, z) - k * z))

    a, b = minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10}).x
    if b <= 0:
        return float("nan")
    x_level = x.mean() + (np.log(level / (1 - level)) - a) / b
    return float(np.exp(x_level)) if x.min() <= x_level <= x.max() else float("nan")


def collapse_step_table(sweep: pd.DataFrame, n_seeds: int, levels=(0.25, 0.5)) -> pd.DataFrame:
    """Per rule and length, the fitted step sizes of 25% (onset) and 50% collapse."""
    rows = []
    for (rule, T), g in sweep.groupby(["rule", "T"]):
        alpha, fraction = g["alpha"].to_numpy(), g["collapse_fraction"].to_numpy()
        fitted = {f"alpha{round(100 * q)}": fit_collapse_step(alpha, fraction, n_seeds, q) for q in levels}
        rows.append({"rule": rule, "T": T} | fitted)
    return pd.DataFrame(rows)


def log_log_slope(table: pd.DataFrame, column: str = "alpha50") -> dict[str, float]:
    """Slope of log ``column`` against log T per rule (NaN if fewer than two finite points)."""
    slopes = {}
    for rule, g in table.groupby("rule"):
        g = g[np.isfinite(g[column])]
        slopes[rule] = float(np.polyfit(np.log(g["T"]), np.log(g[column]), 1)[0]) if len(g) >= 2 else float("nan")
    return slopes


def matched_grpo_step(dr_grpo_step: np.ndarray, length: int, J0: float) -> np.ndarray:
    """GRPO step size with the same effective step as Dr. GRPO at ``J0`` (Eq. 17).

    GRPO: ``eta = alpha dmu T^-1 sqrt(J (1 - J))``; Dr. GRPO: ``eta = alpha dmu J (1 - J)``.
    """
    return np.asarray(dr_grpo_step) * length * np.sqrt(J0 * (1 - J0))


def logistic_prediction(J0: np.ndarray, signed_alignment: np.ndarray) -> np.ndarray:
    """``sigma(logit J(0) + S)``: the first-order logistic law of C3."""
    return sigmoid(logit(J0) + signed_alignment)
