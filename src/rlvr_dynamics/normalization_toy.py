"""Experiments of the normalization paper on the exact prompt bandit (spec E0, E0s; claims C5-C9, G19).

* :func:`run_exact` -- Algorithms 1 (REINFORCE) and 2 (on-policy GRPO) with exact gradients, one
  uniformly drawn prompt per step (F10), many runs at once; it records the per-step inequalities of
  Thms 3.1-3.4 (sign-corrected, spec G17), cross-prompt changes (C5, C9), the Lemma-3.3 ball and C(T).
* :func:`heterogeneity_sweep`, :func:`equal_step_sweep`, :func:`relaxed_interference` -- C8 and C9.
* :func:`run_sampled_groups` -- the sampled-group bridge (E0s): finite G, TRL's group advantages,
  SGD vs Adam and a scale-matched ``no_std`` control (G19).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from rlvr_dynamics.prompt_bandit import (
    PromptBandit,
    log_uniform,
    random_block_bandit,
    shared_correctness_bandit,
    slot_dictionary_bandit,
    tabular_bandit,
)
from rlvr_dynamics.simulator import group_advantages, softmax

THRESHOLDS = (0.5, 0.7, 0.9)
STD_EPS = 1e-4  # TRL's std epsilon (F21)


@dataclass
class ExactRuns:
    """Per-run records of :func:`run_exact` (R runs, T steps)."""

    J: np.ndarray  # (R, T+1) mean success over prompts
    C: np.ndarray  # (R,) C(T) = (8/3) mean over t < T and prompts of sqrt(V_i(theta_t)) (F18)
    gain_margin_min: np.ndarray  # (R,) min_t [J_l(t) - J_l(t-1) - per-step bound], l = i_t
    cross_change_max: np.ndarray  # (R,) max_t max_{l != i_t} |J_l(t) - J_l(t-1)|  (C5)
    cross_decreases: np.ndarray  # (R,) number of (t, l != i_t) with J_l(t) < J_l(t-1) - tol  (C9)
    ball_ratio_max: np.ndarray  # (R,) max_t ||step|| / (sqrt(V) / X_max)  (Lemma 3.3 ball, C4/C7)
    grad_sq_sum: np.ndarray  # (R, n) sum_t ||grad J_l(theta_t)||^2  (Thm 3.1 sum bound, in expectation / n)
    chosen_grad_sq_sum: np.ndarray  # (R, n) the same over the steps with i_t = l only (pathwise bound)
    success0: np.ndarray  # (R, n)
    success: np.ndarray  # (R, n) final
    asm4_violations: np.ndarray  # (R,) relaxed step sizes only: steps where some pair violates Asm. 4

    def steps_to(self, threshold: float) -> np.ndarray:
        """First step with mean J >= threshold, ``nan`` if never reached."""
        reached = self.J >= threshold
        first = reached.argmax(axis=1).astype(float)
        first[~reached.any(axis=1)] = np.nan
        return first


def relaxed_step_sizes(bandit: PromptBandit, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Theorem 3.3/3.4 step sizes from M, R1, R2 computed at the current iterate (F15, F19, F20).

    ``M = max_{i != j} ||X_i grad J_j||^2 / (||X_i||^2 <grad J_i, grad J_j>)``; a pair with
    ``<grad J_i, grad J_j> <= 0`` and ``X_i grad J_j != 0`` violates Asm. 4 (flagged, M = inf).
    Block coordinates are disjoint, so cross terms only involve the shared parts.
    """
    block, shared = bandit.gradient_parts(probs)
    norms = np.sqrt((block**2).sum(-1) + (shared**2).sum(-1))
    inner = np.einsum("ris,rjs->rij", shared, shared)
    cross = np.einsum("iks,rjs->rijk", bandit.shared, shared)  # X_i grad J_j, j != i
    cross_sq = (cross**2).sum(-1) / bandit.x_norms[None, :, None] ** 2
    off = ~np.eye(bandit.n, dtype=bool)[None]
    violating = off & (inner <= 0) & (cross_sq > 1e-300)
    ratio = np.where(off & (inner > 0), cross_sq / np.where(inner > 0, inner, 1.0), 0.0)
    M = np.where(violating.any(axis=(1, 2)), np.inf, ratio.max(axis=(1, 2)))
    success = probs[:, np.arange(bandit.n), bandit.correct]
    std = np.sqrt(success * (1 - success))
    R1 = norms.max(1) / np.maximum(norms.min(1), 1e-300)
    R2 = std.max(1) / np.maximum(std.min(1), 1e-300)
    X2 = bandit.x_max**2
    return {
        "reinforce": 1.0 / (np.maximum(1.0, M / 2) * X2),
        "grpo": 1.0 / (2 * np.maximum(R1, 5 * M / 8) * R2 * X2),
        "M": M, "R1": R1, "R2": R2, "violating": violating.any(axis=(1, 2)),
    }


def run_exact(bandit: PromptBandit, theta0: np.ndarray, normalized: np.ndarray, eta: np.ndarray | None,
              steps: int, seed: int, tol: float = 1e-12, progress: bool = False) -> ExactRuns:
    """Algorithm 1 (``normalized=False``) or 2 (``True``) per run, exact gradients (F10).

    ``theta0`` (dim,) or (R, dim). ``eta`` (R,) fixed step sizes, or ``None`` for the relaxed
    theorem step sizes recomputed every step (Thm 3.3 / 3.4). The per-step bound checked is the
    proof's ascent inequality in the sign-corrected form (G17): ``eta ||g||^2 / 2`` for REINFORCE
    (Thm 3.1 with eta = 1/X^2, Thm 3.3), ``(3/8) eta ||g||^2 / sqrt(V)`` for GRPO (Thm 3.2 with
    eta = 1/(2X^2), Thm 3.4); they hold whenever ``eta <= 1/X^2`` resp. ``1/(2X^2)``.
    """
    normalized = np.asarray(normalized, dtype=bool)
    R, n, d_b = len(normalized), bandit.n, bandit.blocks.shape[2]
    theta = np.broadcast_to(theta0, (R, bandit.dim)).astype(np.float64).copy()
    rng = np.random.default_rng(seed)
    runs, x2, onehot = np.arange(R), bandit.x_max**2, np.eye(bandit.K)
    probs = bandit.probs(theta)
    success = probs[:, np.arange(n), bandit.correct]
    out = ExactRuns(
        J=np.empty((R, steps + 1)), C=np.zeros(R), gain_margin_min=np.full(R, np.inf), cross_change_max=np.zeros(R),
        cross_decreases=np.zeros(R, dtype=np.int64), ball_ratio_max=np.zeros(R), grad_sq_sum=np.zeros((R, n)),
        chosen_grad_sq_sum=np.zeros((R, n)),
        success0=success.copy(), success=success, asm4_violations=np.zeros(R, dtype=np.int64),
    )
    out.J[:, 0] = success.mean(1)
    for t in tqdm(range(steps), disable=not progress, desc="exact steps", leave=False):
        block_all, shared_all = bandit.gradient_parts(probs)
        out.grad_sq_sum += (block_all**2).sum(-1) + (shared_all**2).sum(-1)
        out.C += np.sqrt(success * (1 - success)).mean(1)
        if eta is None:
            relaxed = relaxed_step_sizes(bandit, probs)
            step_size = np.where(normalized, relaxed["grpo"], relaxed["reinforce"])
            out.asm4_violations += relaxed["violating"]
        else:
            step_size = np.asarray(eta, dtype=np.float64)
        i = rng.integers(n, size=R)
        star = success[runs, i]
        variance = star * (1 - star)
        h = star[:, None] * (onehot[bandit.correct[i]] - probs[runs, i])
        g_block = np.einsum("rkb,rk->rb", bandit.blocks[i], h)
        g_shared = np.einsum("rks,rk->rs", bandit.shared[i], h)
        g_sq = (g_block**2).sum(-1) + (g_shared**2).sum(-1)
        out.chosen_grad_sq_sum[runs, i] += g_sq
        scale = step_size / np.where(normalized, np.sqrt(np.maximum(variance, 1e-300)), 1.0)
        block_view = theta[:, : n * d_b].reshape(R, n, d_b)
        block_view[runs, i] += scale[:, None] * g_block
        theta[:, n * d_b :] += scale[:, None] * g_shared
        ball = scale * np.sqrt(g_sq) / np.maximum(np.sqrt(variance) / np.sqrt(x2), 1e-300)
        out.ball_ratio_max = np.maximum(out.ball_ratio_max, np.where(normalized, ball, 0.0))

        probs = bandit.probs(theta)
        new_success = probs[:, np.arange(n), bandit.correct]
        change = new_success - success
        bound = np.where(normalized, 0.375 * step_size * g_sq / np.sqrt(np.maximum(variance, 1e-300)),
                         0.5 * step_size * g_sq)
        out.gain_margin_min = np.minimum(out.gain_margin_min, change[runs, i] - bound)
        change[runs, i] = 0.0
        out.cross_change_max = np.maximum(out.cross_change_max, np.abs(change).max(1))
        out.cross_decreases += (change < -tol).sum(1)
        success = new_success
        out.J[:, t + 1] = success.mean(1)
    out.C *= 8.0 / (3.0 * steps)
    out.success = success
    return out


# ------------------------------------------------------------------------------ C8
def heterogeneity_sweep(levels: list[tuple[float, float]], n: int, K: int, seeds: int, steps: int, seed: int,
                        features: str = "tabular", progress: bool = False, curves: list | None = None) -> pd.DataFrame:
    """REINFORCE (eta = 1/X^2) vs GRPO (eta = 1/(2X^2)) per p0 range and seed (C6-C8, spec check 10).

    One row per (level, seed, method) with ``t_0.5/0.7/0.9``, C(T), the final J, the worst per-step
    margin, and Thm 3.1's sum bound in its pathwise form: summing the per-step gain over the steps
    that pick l gives ``sum_{t: i_t = l} ||grad J_l||^2 <= 2 X^2 (1 - pi*_0(l))`` on every trajectory
    (``sum_bound_ratio_max``, REINFORCE; taking expectations gives the printed
    ``sum_t E||grad J_l||^2 <= 2n (1 - pi*_0(l)) X^2``, whose one-trajectory estimate is
    ``sum_bound_ratio_all``, which may exceed 1 by sampling noise). With a
    ``curves`` list, mean-J trajectories (about 400 points per run) are appended to it as rows.
    """
    rows = []
    thin = max(1, steps // 400)
    for low, high in tqdm(levels, disable=not progress, desc="p0 ranges"):
        starts = []
        for s in range(seeds):  # tabular features are shared by all seeds: only theta_0 differs
            rng = np.random.default_rng([seed, s])
            starts.append(build_bandit(features, log_uniform(rng, low, high, n), K, rng))
        groups = [([s for s in range(seeds)], starts[0][0])] if features == "tabular" else \
            [([s], starts[s][0]) for s in range(seeds)]
        for members, bandit in groups:
            x2 = bandit.x_max**2
            theta0 = np.repeat(np.stack([starts[s][1] for s in members]), 2, axis=0)
            normalized = np.tile([False, True], len(members))
            runs = run_exact(bandit, theta0, normalized, np.where(normalized, 1 / (2 * x2), 1 / x2), steps,
                             seed=seed + members[0])
            bound = 2 * (1 - runs.success0) * x2
            if curves is not None:
                for r in range(len(normalized)):
                    curves += [{"level": f"[{low:g}, {high:g}]", "seed": members[r // 2],
                                "method": "grpo" if normalized[r] else "reinforce", "step": t, "J": runs.J[r, t]}
                               for t in range(0, steps + 1, thin)]
            for r in range(len(normalized)):
                rows.append({
                    "p0_low": low, "p0_high": high, "level": f"[{low:g}, {high:g}]", "seed": members[r // 2],
                    "method": "grpo" if normalized[r] else "reinforce",
                    **{f"t_{thr}": runs.steps_to(thr)[r] for thr in THRESHOLDS},
                    "C_T": runs.C[r], "J_final": runs.J[r, -1], "gain_margin_min": runs.gain_margin_min[r],
                    "cross_change_max": runs.cross_change_max[r], "ball_ratio_max": runs.ball_ratio_max[r],
                    "sum_bound_ratio_max": float((runs.chosen_grad_sq_sum[r] / bound[r]).max()),
                    "sum_bound_ratio_all": float((runs.grad_sq_sum[r] / (n * bound[r])).max()),
                })
    return pd.DataFrame(rows)


def build_bandit(features: str, p0: np.ndarray, K: int, rng: np.random.Generator) -> tuple[PromptBandit, np.ndarray]:
    if features == "tabular":
        return tabular_bandit(p0, K)
    if features == "random_block":
        return random_block_bandit(p0, K, K, rng)
    raise ValueError(f"features = {features!r} is invalid: allowed values are ['tabular', 'random_block']")


def equal_step_sweep(multipliers: list[float], level: tuple[float, float], n: int, K: int, seeds: int, steps: int,
                     seed: int) -> pd.DataFrame:
    """Both methods at the same eta = c / X^2 (spec E0 equal-eta sweep): a tuned REINFORCE can be fast."""
    c = np.asarray(multipliers, dtype=np.float64)
    starts = [tabular_bandit(log_uniform(np.random.default_rng([seed, s]), *level, n), K) for s in range(seeds)]
    bandit = starts[0][0]
    grid = pd.DataFrame([(s, m, ci) for s in range(seeds) for m in (False, True) for ci in c],
                        columns=["seed", "normalized", "c"])
    theta0 = np.stack([starts[s][1] for s in grid.seed])
    runs = run_exact(bandit, theta0, grid.normalized.to_numpy(), grid.c.to_numpy() / bandit.x_max**2, steps, seed=seed)
    rows = grid.assign(method=np.where(grid.normalized, "grpo", "reinforce"), t_09=runs.steps_to(0.9),
                       J_final=runs.J[:, -1])
    return rows.drop(columns="normalized").rename(columns={"t_09": "t_0.9"})
    return pd.DataFrame(rows)


def relaxed_interference(variant: str, n: int, K: int, steps: int, seed: int, level: tuple[float, float],
                         strength: float) -> pd.DataFrame:
    """C9: theorem step sizes from M, R1, R2 (Thms 3.3, 3.4); count cross-prompt decreases.

    ``variant='shared_correctness'`` satisfies Asm. 4 (the theorem predicts 0 decreases);
    ``'slot_dictionary'`` violates it for some pairs, so M is infinite and the relaxed step sizes
    vanish; it runs at the orthogonal-case step sizes 1/X^2 and 1/(2X^2) to show what interference
    does without the assumption (no guarantee; decreases may appear).
    """
    rng = np.random.default_rng(seed)
    p0 = log_uniform(rng, *level, n)
    if variant == "shared_correctness":
        bandit, theta0 = shared_correctness_bandit(p0, K, rng, strength=strength)
    elif variant == "slot_dictionary":
        bandit, theta0 = slot_dictionary_bandit(p0, K, rng, strength=strength)
    else:
        raise ValueError(f"variant = {variant!r} is invalid: allowed values are ['shared_correctness', 'slot_dictionary']")
    x2 = bandit.x_max**2
    eta = None if variant == "shared_correctness" else np.array([1 / x2, 1 / (2 * x2)])
    runs = run_exact(bandit, theta0, [False, True], eta, steps, seed=seed, tol=1e-13)
    return pd.DataFrame({
        "variant": variant, "strength": strength, "method": ["reinforce", "grpo"],
        "cross_decreases": runs.cross_decreases, "asm4_violation_steps": runs.asm4_violations,
        "gain_margin_min": runs.gain_margin_min, "J0": runs.J[:, 0], "J_final": runs.J[:, -1],
    })


# ------------------------------------------------------------------------ E0s, G19
@dataclass(frozen=True)
class SampledArm:
    """One arm of the sampled-group toy: advantage, optimizer, learning rate, scale matching."""

    normalized: bool
    optimizer: str
    lr: float
    scale_matched: bool = False

    @property
    def label(self) -> str:
        name = "standard" if self.normalized else ("no_std x mean(1/sigma)" if self.scale_matched else "no_std")
        return f"{name} ({self.optimizer} {self.lr:g})"


def run_sampled_groups(arms: list[SampledArm], p0: np.ndarray, K: int, prompts_per_step: int, generations: int,
                       steps: int, seed: int) -> dict[str, np.ndarray]:
    """E0s: tabular log-linear policy, B prompts x G sampled outputs per step, TRL's group advantages (F21).

    Gradient (ascent) of prompt i: ``(1/(BG)) sum_k A_k (e_{o_k} - pi_i)`` (score of the tabular softmax).
    ``standard``: ``A = (r - mean) / (std_unbiased + 1e-4)``; ``no_std``: ``A = r - mean``. The
    scale-matched control multiplies ``no_std``'s learning rate by the running mean of ``1/(sigma_hat + eps)``
    over the non-degenerate groups it has seen (G19). Adam is ``torch.optim.Adam`` per run (per-coordinate,
    so batching runs is exact). Returns the exact mean J per step (R, T+1) and the degenerate-group fraction.
    """
    for arm in arms:
        if arm.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer = {arm.optimizer!r} is invalid: allowed values are ['sgd', 'adam']")
    R, n = len(arms), len(p0)
    bandit, theta0 = tabular_bandit(p0, K)
    params = [torch.nn.Parameter(torch.tensor(theta0.reshape(n, K), dtype=torch.float64)) for _ in range(R)]
    adam = torch.optim.Adam([{"params": [p], "lr": a.lr} for p, a in zip(params, arms, strict=True)])
    rng = np.random.default_rng(seed)
    runs = np.arange(R)[:, None]
    weight_sum, weight_count = np.zeros(R), np.zeros(R)
    J = np.empty((R, steps + 1))
    degenerate = np.empty((R, steps))
    is_normalized = np.array([a.normalized for a in arms])
    for t in range(steps + 1):
        logits = torch.stack([p.detach() for p in params]).numpy()
        pi = softmax(logits)
        J[:, t] = pi[:, :, 0].mean(1)
        if t == steps:
            break
        chosen = np.argsort(rng.random((R, n)), axis=1)[:, :prompts_per_step]
        cdf = np.cumsum(pi[runs, chosen], -1)  # (R, B, K)
        u = rng.random((R, prompts_per_step, generations, 1))
        outputs = np.minimum((cdf[:, :, None, :] < u).sum(-1), K - 1)  # (R, B, G)
        rewards = (outputs == bandit.correct[chosen][..., None]).astype(np.float64)
        centred = group_advantages(rewards, "dr_grpo")
        std = rewards.std(-1, ddof=1)
        advantages = np.where(is_normalized[:, None, None], centred / (std[..., None] + STD_EPS), centred)
        live = std > 0
        degenerate[:, t] = 1 - live.mean(1)
        weight_sum += np.where(live, 1 / (std + STD_EPS), 0).sum(1)
        weight_count += live.sum(1)
        counts = np.einsum("rbg,rbgk->rbk", advantages, np.eye(K)[outputs])
        grad_chosen = (counts - advantages.sum(-1, keepdims=True) * pi[runs, chosen]) / (prompts_per_step * generations)
        grad = np.zeros((R, n, K))
        np.add.at(grad, (runs, chosen), grad_chosen)
        scale = np.where([a.scale_matched for a in arms], weight_sum / np.maximum(weight_count, 1), 1.0)
        for r, (p, arm) in enumerate(zip(params, arms, strict=True)):
            if arm.optimizer == "sgd":
                with torch.no_grad():
                    p += arm.lr * scale[r] * torch.from_numpy(grad[r])
            else:
                p.grad = -torch.from_numpy(grad[r])
        if any(a.optimizer == "adam" for a in arms):
            for group, arm in zip(adam.param_groups, arms, strict=True):
                if arm.optimizer == "sgd":
                    group["params"][0].grad = None
            adam.step()
    return {"J": J, "degenerate": degenerate}
