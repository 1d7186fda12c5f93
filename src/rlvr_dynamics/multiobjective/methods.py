"""The eight weighting methods of the CTWA paper behind one interface (spec E8, F11-F16, Table 1).

A method is told what one batch showed (:class:`ObjectiveBatch`: per-objective rewards and, where it
needs them, per-objective gradient inner products, surrogate losses, CTWA's post-update completion
weights or PAMA's reference-ratio counts) through :meth:`Method.update`, which returns the weights of
the next update; :meth:`Method.advantages` turns the batch's rewards into the per-sample advantages
that update ascends. ``Method.timing`` says when the statistics exist: ``before`` the policy update on
the same batch (Lagrangian, Tchebycheff, PAMA, MGDA, GradNorm, Dynamic) or ``after`` it (CTWA, whose
statistic uses the updated policy, F12, so its weights apply from the next batch, F16).

How the weights enter the update (``Method.combine``):

* ``scores``: advantage of one scalar score, ``s = sum_m lambda_m r_m`` (Linear, Dynamic, CTWA; F11) or
  Tchebycheff's ``s = -max_m w_m (z_m - r_m)`` (sequence-level, the spec's default of gap 10);
* ``advantages``: ``A = sum_m w_m A^(m)`` with ``A^(m)`` the estimator on ``r_m`` alone (Lagrangian,
  E8-3; and MGDA/GradNorm, whose applied gradient ``sum_m w_m g_m`` is the gradient of that
  advantage because the surrogate is linear in A, E8-6/7);
* ``pama``: one non-negative scalar ``s* = min_m a_m`` on every token (E8-5), multiplied per token by
  :func:`pama_token_factor` (the ratio to the frozen initial policy, zero above 1 + eps).

Estimators (``ESTIMATORS``): ``reinforce_pp`` whitens scores over all valid tokens of the batch
(REINFORCE++ as in verl, token-weighted mean and unbiased variance); ``grpo`` normalises per prompt
group with the unbiased std + 1e-6.

MGDA's min-norm weights come from ``torchjd`` (``MGDAWeighting``, Frank-Wolfe on the Gramian) instead of
the authors' projected gradient descent: same problem, a maintained solver; with 200 iterations its
squared norm is within 0.5 % of the minimum on the unit test's instance (PGD would reach 1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torchjd.aggregation import MGDAWeighting

ESTIMATORS = ("reinforce_pp", "grpo")
PAPER_WEIGHTS = (0.333, 0.333, 0.334)  # Table 1: initial lambda (CTWA, Linear, Dynamic), Tchebycheff w
CTWA_TARGETS = (0.15, 0.08, 0.08)  # Table 1: c*
CTWA_GATES = (1.0, 0.95, 0.95)  # [code] obj_targets of gate_by_obj_targets


# --------------------------------------------------------------------------- estimators
def estimator_advantages(scores: np.ndarray, estimator: str, group_size: int, lengths: np.ndarray) -> np.ndarray:
    """Per-sample advantages of ``scores`` (N,) under REINFORCE++ batch whitening or GRPO groups (spec E0)."""
    scores = np.asarray(scores, dtype=np.float64)
    if estimator == "reinforce_pp":
        tokens = np.asarray(lengths, dtype=np.float64)
        total = tokens.sum()
        mean = (tokens * scores).sum() / total
        variance = (tokens * (scores - mean) ** 2).sum() / max(total - 1.0, 1.0)
        return (scores - mean) / math.sqrt(variance + 1e-8)
    if estimator == "grpo":
        if scores.size % group_size:
            raise ValueError(f"{scores.size} scores do not split into groups of group_size = {group_size}")
        groups = scores.reshape(-1, group_size)
        std = groups.std(axis=1, ddof=1, keepdims=True) if group_size > 1 else np.ones((len(groups), 1))
        return ((groups - groups.mean(axis=1, keepdims=True)) / (std + 1e-6)).reshape(-1)
    raise ValueError(f"estimator = {estimator!r} is invalid: allowed values are {list(ESTIMATORS)}")


@dataclass
class ObjectiveBatch:
    """What one batch of ``N = prompts x group_size`` completions showed, per objective."""

    rewards: np.ndarray  # (N, M) per-objective rewards r_m
    group_size: int
    lengths: np.ndarray  # (N,) valid completion tokens
    estimator: str = "reinforce_pp"
    gramian: np.ndarray | None = None  # (M, M) <g_m, g_j> of the per-objective policy-loss gradients
    losses: np.ndarray | None = None  # (M,) per-objective surrogate losses L_m (GradNorm)
    completion_weights: np.ndarray | None = None  # (N,) CTWA's w under the updated policy (F12)
    unclipped_fraction: np.ndarray | None = None  # (N,) PAMA: share of tokens with exp(logp_old - logp_ref) <= 1 + eps
    learning_rate: float = 0.0  # the policy's current lr (Dynamic weighting)

    def __post_init__(self) -> None:
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        self.lengths = np.asarray(self.lengths, dtype=np.float64)
        if self.rewards.ndim != 2 or len(self.lengths) != len(self.rewards):
            raise ValueError(f"rewards must be (N, M) and lengths (N,): got {self.rewards.shape} and {self.lengths.shape}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator = {self.estimator!r} is invalid: allowed values are {list(ESTIMATORS)}")

    @property
    def n_objectives(self) -> int:
        return self.rewards.shape[1]

    def advantages_of(self, scores: np.ndarray) -> np.ndarray:
        return estimator_advantages(scores, self.estimator, self.group_size, self.lengths)

    def objective_advantages(self) -> np.ndarray:
        """(N, M): ``A^(m)``, the estimator applied to each objective's reward alone (E8)."""
        return np.stack([self.advantages_of(self.rewards[:, m]) for m in range(self.n_objectives)], axis=1)


# --------------------------------------------------------------------------- CTWA statistics
def completion_weights(
    advantages: np.ndarray, log_ratio: np.ndarray, mask: np.ndarray, eps_low: float, eps_high: float
) -> np.ndarray:
    """F12: ``w = (1/L) sum_l A rho_l 1_l`` with the active-branch indicator of Eq. 6.

    ``advantages`` (N,) sequence advantages, ``log_ratio`` (N, T) ``logp_new - logp_old`` of the updated
    policy on the sampled tokens, ``mask`` (N, T) valid tokens; ``L`` is the sequence's own length.
    """
    advantages = np.asarray(advantages, dtype=np.float64)[:, None]
    mask = np.asarray(mask, dtype=np.float64)
    ratio = np.exp(np.clip(np.asarray(log_ratio, dtype=np.float64), -20.0, 20.0))
    active = np.where(advantages >= 0, ratio <= 1.0 + eps_high, ratio >= 1.0 - eps_low)
    weight = (advantages * ratio * active * mask).sum(axis=1)
    return weight / np.maximum(mask.sum(axis=1), 1.0)


def ctwa_covariances(rewards: np.ndarray, weights: np.ndarray, group_size: int, outlier_factor: float = 100.0) -> np.ndarray:
    """F13: mean over prompt groups of the population covariance of ``r_m`` with ``w``, per objective.

    [code] completions with non-finite ``w`` or ``|w| > outlier_factor * median |w|`` (batch median, when
    positive) are dropped first; groups left with fewer than 2 completions are skipped; constant groups
    count as 0.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(weights)
    median = np.median(np.abs(weights[keep])) if keep.any() else 0.0
    if median > 0:
        keep &= np.abs(weights) <= outlier_factor * median
    if len(weights) % group_size:
        raise ValueError(f"{len(weights)} completions do not split into groups of group_size = {group_size}")
    mask = keep.reshape(-1, group_size).astype(np.float64)  # (groups, K)
    r = rewards.reshape(-1, group_size, rewards.shape[1])
    w = np.where(keep, weights, 0.0).reshape(-1, group_size)
    counts = mask.sum(axis=1)
    live = counts >= 2
    if not live.any():
        return np.zeros(rewards.shape[1])
    safe = np.maximum(counts, 1.0)
    r_mean = (r * mask[..., None]).sum(axis=1) / safe[:, None]
    w_mean = (w * mask).sum(axis=1) / safe
    per_group = ((r - r_mean[:, None, :]) * ((w - w_mean[:, None]) * mask)[..., None]).sum(axis=1) / safe[:, None]
    return per_group[live].mean(axis=0)


def pama_token_factor(log_ratio_to_reference: torch.Tensor, epsilon: float = 0.2) -> torch.Tensor:
    """E8-5: the gradient factor of ``min(rho_ref, clip(rho_ref, 1 - eps, 1 + eps))`` for ``s* >= 0``.

    ``rho_ref = exp(logp_theta - logp_ref)``: the likelihood of own samples rises until the ratio to
    the frozen initial policy exceeds ``1 + eps``, after which the token stops contributing.
    """
    ratio = torch.exp(log_ratio_to_reference.clamp(-20.0, 20.0))
    return ratio * (ratio <= 1.0 + epsilon)


# --------------------------------------------------------------------------- methods
def _vector(name: str, values, n_objectives: int, positive: bool = False) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n_objectives,):
        raise ValueError(f"{name} has {values.size} entries but there are {n_objectives} objectives: "
                         f"allowed values are {n_objectives} numbers")
    if positive and (values <= 0).any():
        raise ValueError(f"{name} = {values.tolist()} is invalid: allowed values are numbers > 0")
    if (values < 0).any():
        raise ValueError(f"{name} = {values.tolist()} is invalid: allowed values are numbers >= 0")
    return values


@dataclass
class Method:
    """Base class: fixed weights, ``scores`` combination, statistics before the update."""

    n_objectives: int = 3
    name = "method"
    combine = "scores"
    timing = "before"
    needs: ClassVar[frozenset] = frozenset()
    scalarizes_linearly = False  # the score is sum_m lambda_m r_m (TRL's own reward weights)
    kl_coefficient = 0.001  # Table 1 (0 for Lagrangian, MGDA, GradNorm; PAMA adds no KL term)

    def weights(self) -> np.ndarray:
        raise NotImplementedError

    def check(self, batch: ObjectiveBatch) -> None:
        if batch.n_objectives != self.n_objectives:
            raise ValueError(f"{self.name}: the batch has {batch.n_objectives} objectives, the method {self.n_objectives}")
        missing = [need for need in self.needs if getattr(batch, need) is None]
        if missing:
            raise ValueError(f"{self.name} needs {missing} in the ObjectiveBatch")

    def update(self, batch: ObjectiveBatch) -> np.ndarray:
        """Absorb one batch's statistics; return the weights of the next update."""
        self.check(batch)
        return self.weights()

    def scores(self, rewards: np.ndarray) -> np.ndarray:
        return np.asarray(rewards, dtype=np.float64) @ self.weights()

    def advantages(self, batch: ObjectiveBatch) -> np.ndarray:
        if self.combine == "advantages":
            return batch.objective_advantages() @ self.weights()
        return batch.advantages_of(self.scores(batch.rewards))

    def state(self) -> dict[str, float]:
        """Scalars to log per step (weights and the method's internal variables)."""
        return {f"weight/{m}": float(w) for m, w in enumerate(self.weights())}


@dataclass
class Linear(Method):
    """E8-1: fixed ``lambda``."""

    initial_weights: tuple = PAPER_WEIGHTS
    name = "linear"
    scalarizes_linearly = True

    def __post_init__(self) -> None:
        self.lam = _vector("initial_weights", self.initial_weights, self.n_objectives, positive=True)

    def weights(self) -> np.ndarray:
        return self.lam


@dataclass
class DynamicWeighting(Linear):
    """E8-2 (Lu et al. 2025): ``log lambda += lr * I / reg``, ``I_m = lr sum_j <g_m, g_j>``, then softmax.

    ``regularization_factor`` is the code's 1e-5 for a 1.5B model; small models need it re-tuned so that
    the per-step change of ``log lambda`` is O(0.01-0.1) (gap 13); :meth:`state` logs that change.
    """

    regularization_factor: float = 1e-5
    name = "dynamic"
    needs = frozenset({"gramian"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.regularization_factor <= 0:
            raise ValueError(f"regularization_factor = {self.regularization_factor} is invalid: allowed values are numbers > 0")
        self.log_weights = np.log(self.lam)
        self.last_change = 0.0

    def update(self, batch: ObjectiveBatch) -> np.ndarray:
        self.check(batch)
        influence = batch.learning_rate * batch.gramian.sum(axis=1)
        change = batch.learning_rate * influence / self.regularization_factor
        if np.isfinite(change).all():
            self.log_weights = self.log_weights + change
            self.log_weights -= self.log_weights.max()
            self.lam = np.exp(self.log_weights) / np.exp(self.log_weights).sum()
            self.last_change = float(np.abs(change).max())
        return self.weights()

    def state(self) -> dict[str, float]:
        return super().state() | {"dynamic/log_weight_change": self.last_change}


@dataclass
class Lagrangian(Method):
    """E8-3: primal-dual with accuracy primary; ``mu_k <- max(0, mu_k + lr (target_k - mean r_k))``.

    Weights are ``(1, mu_2, ..., mu_M)`` on the per-objective advantages; multipliers start at 0.
    """

    constraint_targets: tuple = (0.9, 0.9)
    dual_learning_rate: float = 0.01
    name = "lagrangian"
    combine = "advantages"
    kl_coefficient = 0.0

    def __post_init__(self) -> None:
        self.targets = _vector("constraint_targets", self.constraint_targets, self.n_objectives - 1)
        if self.dual_learning_rate <= 0:
            raise ValueError(f"dual_learning_rate = {self.dual_learning_rate} is invalid: allowed values are numbers > 0")
        self.multipliers = np.zeros(self.n_objectives - 1)

    def weights(self) -> np.ndarray:
        return np.concatenate([[1.0], self.multipliers])

    def update(self, batch: ObjectiveBatch) -> np.ndarray:
        self.check(batch)
        means = batch.rewards[:, 1:].mean(axis=0)
        self.multipliers = np.maximum(0.0, self.multipliers + self.dual_learning_rate * (self.targets - means))
        return self.weights()


@dataclass
class Tchebycheff(Linear):
    """E8-4, sequence level (gap 10): ``s = -max_m w_m (z_m - r_m)``, ``z`` the running max of batch maxima."""

    name = "tchebycheff"
    scalarizes_linearly = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.reference: np.ndarray | None = None

    def update(self, batch: ObjectiveBatch) -> np.ndarray:
        self.check(batch)
        batch_max = batch.rewards.max(axis=0)
        self.reference = batch_max if self.reference is None else np.maximum(self.reference, batch_max)
        return self.weights()

    def scores(self, rewards: np.ndarray) -> np.ndarray:
        reference = np.asarray(rewards).max(axis=0) if self.reference is None else self.reference
        return -(self.lam * (reference - np.asarray(rewards, dtype=np.float64))).max(axis=1)

    def state(self) -> dict[str, float]:
        reference = self.reference if self.reference is not None else np.full(self.n_objectives, np.nan)
        return super().state() | {f"tchebycheff/z_{m}": float(z) for m, z in enumerate(reference)}


@dataclass
class PAMA(Method):
    """E8-5 (He & Maghsudi, as in the released code): ``a_m = sum_tokens max(A^(m), 0) U / #tokens``;
    ``s* = min_m a_m`` (the projection of 0 onto [min a, max a]) on every token, no KL.

    ``unclipped_fraction`` gives, per completion, the share of its tokens with
    ``exp(logp_old - logp_ref) <= 1 + eps``; the weights reported are the one-hot of the argmin objective.
    """

    epsilon: float = 0.2
    name = "pama"
    combine = "pama"
    needs = frozenset({"unclipped_fraction"})
    kl_coefficient = 0.0

    def __post_init__(self) -> None:
        self.scalar_advantage = 0.0
        self.active = np.zeros(self.n_objectives)

    def weights(self) -> np.ndarray:
        return self.active

    def update(self, batch: ObjectiveBatch) -> np.ndarray:
        self.check(batch)
        positive = np.maximum(batch.objective_advantages(), 0.0)
        tokens = batch.lengths * batch.unclipped_fraction
        per_objective = (positive * tokens[:, None]).sum(axis=0) / batch.lengths.sum()
        self.scalar_advantage = float(per_objective.min())
        self.active = np.eye(self.n_objectives)[int(per_objective.argmin())]
        return self.weights()

    def advantages(self, batch: ObjectiveBatch) -> np.ndarray:
        return np.full(len(batch.rewards), self.scalar_advantage)

    def state(self) -> dict[str, float]:
        return super().state() | {"pama/scalar_advantage": self.scalar_advantage}


@dataclass
class MGDA(Method):
    """E8-6: min-norm point of the convex hull of the per-objective gradients (torchjd's ``MGDAWeighting``)."""

    name = "mgda"
    combine = "advantages"
    needs = frozenset({"gramian"})
    kl_coefficient = 0.0

    def __post_init__(self) -> None:
        self.current = np.full(self.n_objectives, 1.0 / self.n_objectives)
        self.solver = MGDAWeighting(epsilon=1e-6, max_iters=200)

    def weights(self) -> np.ndarray:
        return self.current

    def update(self, batch: ObjectiveBatch) -> np.ndarray:
        self.check(batch)
        gramian = torch.as_tensor(batch.gramian, dtype=torch.float64)
        scale = float(gramian.diagonal().max())
        weights = self.solver(gramian / scale).numpy() if scale > 0 and torch.isfinite(gramian).all() else None
        ok = weights is not None and np.isfinite(weights).all()
        self.current = weights if ok else np.full(self.n_objectives, 1.0 / self.n_objectives)
        return self.weights()


@dataclass
class GradNorm(Method):
    """E8-7 (Chen et al. 2018 as adapted in the code): ``w -= lr sign(w G - T) G``, ``T = mean(w G) r^alpha``.

    Deviation (gap 12): the loss ratio uses ``|L_m| / max(|L_m(0)|, 1e-8)``; the surrogate losses are near
    zero with whitened advantages, and their signs would make ``r^alpha`` undefined. Weights start at 1
    and are renormalised to sum ``M`` (reset to 1 if that sum is not positive).
    """

    alpha: float = 1.5
    weight_learning_rate: float = 0.025
    name = "gradnorm"
    combine = "advantages"
    needs = frozenset({"gramian", "losses"})
    kl_coefficient = 0.0

    def __post_init__(self) -> None:
        self.current = np.ones(self.n_objectives)
        self.initial_losses: np.ndarray | None = None

    def weights(self) -> np.ndarray:
        return self.current

    def update(self, batch: ObjectiveBatch) -> np.ndarray:
        self.check(batch)
        norms = np.sqrt(np.maximum(np.diag(batch.gramian), 0.0))
        losses = np.abs(np.asarray(batch.losses, dtype=np.float64))
        if self.initial_losses is None:
            self.initial_losses = np.maximum(losses, 1e-8)
        ratios = losses / self.initial_losses
        relative = ratios / max(ratios.mean(), 1e-12)
        weighted = self.current * norms
        target = weighted.mean() * relative**self.alpha
        weights = self.current - self.weight_learning_rate * np.sign(weighted - target) * norms
        total = weights.sum()
        ok = np.isfinite(weights).all() and total > 0
        self.current = weights * self.n_objectives / total if ok else np.ones(self.n_objectives)
        return self.weights()


@dataclass
class CTWA(Method):
    """Covariance Targeted Weight Adaptation (Algorithm 1, F11-F16).

    After the policy update, ``c_m`` (F13) is the covariance of ``r_m`` with the completion weight ``w``
    (F12) under the updated policy; ``c_bar`` its EMA (tau, initialised to the first ``c``, F14);
    ``delta = [c* - c_bar]_+``, zeroed for objectives whose batch-mean reward already reaches
    ``gate_targets`` ([code] ``gate_by_obj_targets``); ``u += eta delta``; ``lambda = exp(u)`` (F15).
    ``renormalize`` scalarises with ``lambda / sum(lambda)`` (gap 7; identical under normalised
    advantages).
    """

    initial_weights: tuple = PAPER_WEIGHTS
    targets: tuple = CTWA_TARGETS
    weight_learning_rate: float = 0.05
    tau: float = 0.1
    gate_targets: tuple | None = CTWA_GATES
    renormalize: bool = False
    name = "ctwa"
    timing = "after"
    scalarizes_linearly = True
    needs = frozenset({"completion_weights"})

    def __post_init__(self) -> None:
        self.log_weights = np.log(_vector("initial_weights", self.initial_weights, self.n_objectives, positive=True))
        self.target = _vector("targets", self.targets, self.n_objectives)
        self.gates = None if self.gate_targets is None else _vector("gate_targets", self.gate_targets, self.n_objectives)
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau = {self.tau} is invalid: allowed values are numbers in (0, 1]")
        if self.weight_learning_rate <= 0:
            raise ValueError(f"weight_learning_rate = {self.weight_learning_rate} is invalid: allowed values are numbers > 0")
        self.covariance = np.full(self.n_objectives, np.nan)
        self.covariance_ema: np.ndarray | None = None
        self.deficit = np.zeros(self.n_objectives)

    def weights(self) -> np.ndarray:
        lam = np.exp(self.log_weights)
        return lam / lam.sum() if self.renormalize else lam

    def update(self, batch: ObjectiveBatch) -> np.ndarray:
        self.check(batch)
        self.covariance = ctwa_covariances(batch.rewards, batch.completion_weights, batch.group_size)
        ema = self.covariance_ema
        self.covariance_ema = self.covariance if ema is None else (1 - self.tau) * ema + self.tau * self.covariance
        deficit = np.maximum(self.target - self.covariance_ema, 0.0)
        if self.gates is not None:
            deficit = np.where(batch.rewards.mean(axis=0) >= self.gates, 0.0, deficit)
        self.deficit = deficit
        self.log_weights = self.log_weights + self.weight_learning_rate * deficit
        return self.weights()

    def state(self) -> dict[str, float]:
        ema = self.covariance_ema if self.covariance_ema is not None else np.full(self.n_objectives, np.nan)
        values = super().state()
        for m in range(self.n_objectives):
            values |= {f"ctwa/log_weight_{m}": float(self.log_weights[m]), f"ctwa/covariance_{m}": float(self.covariance[m]),
                       f"ctwa/covariance_ema_{m}": float(ema[m])}
        return values


METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (CTWA, Linear, DynamicWeighting, GradNorm, Lagrangian, PAMA, MGDA, Tchebycheff)
}


def make_method(name: str, n_objectives: int = 3, **options) -> Method:
    """A fresh method by name with its Table 1 defaults; ``options`` override them (unknown keys are errors)."""
    if name not in METHODS:
        raise ValueError(f"method = {name!r} is invalid: allowed values are {list(METHODS)}")
    cls = METHODS[name]
    allowed = {f.name for f in cls.__dataclass_fields__.values()} - {"n_objectives"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{name}: options {unknown} are unknown; allowed keys are {sorted(allowed)}")
    return cls(n_objectives=n_objectives, **options)


__all__ = [
    "CTWA", "ESTIMATORS", "MGDA", "METHODS", "PAMA", "DynamicWeighting", "GradNorm", "Lagrangian", "Linear", "Method",
    "ObjectiveBatch", "Tchebycheff", "completion_weights", "ctwa_covariances", "estimator_advantages", "make_method",
    "pama_token_factor",
]
