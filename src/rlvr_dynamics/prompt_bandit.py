"""Exact simulator for n prompts sharing one log-linear policy (the normalization paper's toy, spec E0/E0s).

Ge, Yin, Liang & Zhang, "Why GRPO Needs Normalization": prompt i has K outputs and the policy
``pi_theta(o_j | q_i) = softmax_j(X_i theta)`` (Eq. 6 = Eq. 9) with one correct output ``a_i``
(Asm. 1), so ``J_i = pi*_theta(i) = pi_theta(o_{a_i} | q_i)`` and ``V_i = J_i (1 - J_i)``.

Features are stored in block form, which covers every variant of the spec: prompt i owns a
block of ``d_b`` coordinates (``blocks[i]``, K x d_b) and all prompts may share ``d_s`` more
coordinates (``shared[i]``, K x d_s), i.e. ``X_i = [0 .. B_i .. 0 | S_i]``. Without shared
coordinates ``X_i X_j^T = 0`` for ``i != j`` (Asm. 2, orthogonal representations).

This module extends the exact-gradient simulator of :mod:`rlvr_dynamics.simulator` (the same
softmax primitives and group advantages) to many prompts; every function takes parameters with
a leading *run* axis so that seeds, methods and step sizes advance as one array computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlvr_dynamics.simulator import softmax

Array = np.ndarray


@dataclass(frozen=True)
class PromptBandit:
    """n prompts, K outputs each; ``theta = [block coordinates (n * d_b) | shared coordinates (d_s)]``."""

    blocks: Array  # (n, K, d_b)
    shared: Array  # (n, K, d_s), d_s may be 0
    correct: Array  # (n,) index of the correct output a_i

    @property
    def n(self) -> int:
        return self.blocks.shape[0]

    @property
    def K(self) -> int:
        return self.blocks.shape[1]

    @property
    def dim(self) -> int:
        return self.n * self.blocks.shape[2] + self.shared.shape[2]

    def split(self, theta: Array) -> tuple[Array, Array]:
        """Views of ``theta`` (R, dim): block part (R, n, d_b) and shared part (R, d_s)."""
        n, d_b = self.blocks.shape[0], self.blocks.shape[2]
        return theta[..., : n * d_b].reshape(theta.shape[:-1] + (n, d_b)), theta[..., n * d_b :]

    def logits(self, theta: Array) -> Array:
        block, shared = self.split(theta)
        return np.einsum("nkb,rnb->rnk", self.blocks, block) + np.einsum("nks,rs->rnk", self.shared, shared)

    def probs(self, theta: Array) -> Array:
        return softmax(self.logits(theta))

    def success(self, theta: Array) -> Array:
        """``pi*_theta(i)`` for every prompt, (R, n)."""
        return self.probs(theta)[:, np.arange(self.n), self.correct]

    def matrix(self, i: int) -> Array:
        """The full feature matrix X_i (K, dim)."""
        X = np.zeros((self.K, self.dim))
        d_b = self.blocks.shape[2]
        X[:, i * d_b : (i + 1) * d_b] = self.blocks[i]
        X[:, self.n * d_b :] = self.shared[i]
        return X

    @property
    def x_norms(self) -> Array:
        """Spectral norms ||X_i||_2 (F7)."""
        return np.array([np.linalg.norm(np.concatenate([b, s], 1), 2) for b, s in zip(self.blocks, self.shared, strict=True)])

    @property
    def x_max(self) -> float:
        return float(self.x_norms.max())

    def reward_curvature(self, probs: Array) -> Array:
        """``H(pi_i) r_i = pi*_i (e_{a_i} - pi_i)`` (Eq. 10-11), (R, n, K)."""
        star = probs[:, np.arange(self.n), self.correct][..., None]
        onehot = np.eye(self.K)[self.correct]
        return star * (onehot - probs)

    def gradient_parts(self, probs: Array) -> tuple[Array, Array]:
        """Block part (R, n, d_b) and shared part (R, n, d_s) of every ``grad J_i = X_i^T H r_i`` (Eq. 10)."""
        h = self.reward_curvature(probs)
        return np.einsum("nkb,rnk->rnb", self.blocks, h), np.einsum("nks,rnk->rns", self.shared, h)

    def grad_J(self, theta: Array) -> Array:
        """Full per-prompt gradients (R, n, dim); for small instances and tests."""
        block, shared = self.gradient_parts(self.probs(theta))
        R, n, d_b = block.shape
        full = np.zeros((R, n, self.dim))
        for i in range(n):
            full[:, i, i * d_b : (i + 1) * d_b] = block[:, i]
        full[:, :, n * d_b :] = shared
        return full

    def hessian_J(self, theta: Array, i: int) -> Array:
        """Matrix form of ``grad^2 J_i`` (F11, Lin et al. 2025a Lemma 17) at one ``theta`` (dim,).

        ``X^T diag(Hr) X - X^T (Hr) pi^T X - X^T pi (Hr)^T X``.
        """
        X = self.matrix(i)
        p = softmax(X @ theta)
        h = p[self.correct[i]] * (np.eye(self.K)[self.correct[i]] - p)
        Xh, Xp = X.T @ h, X.T @ p
        return X.T @ (h[:, None] * X) - np.outer(Xh, Xp) - np.outer(Xp, Xh)


def initial_logit(p: Array, K: int) -> Array:
    """``c = ln(p (K - 1) / (1 - p))``: correct logit c, others 0 give ``pi* = p`` (spec E0)."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(p * (K - 1) / (1 - p))


def log_uniform(rng: np.random.Generator, low: float, high: float, n: int) -> Array:
    """Initial success probabilities drawn log-uniform in [low, high] (spec E0)."""
    if not 0 < low <= high < 1:
        raise ValueError(f"p0 range = [{low}, {high}] is invalid: allowed values are 0 < low <= high < 1")
    return np.exp(rng.uniform(np.log(low), np.log(high), n))


def _with_shared(bandit: PromptBandit, shared: Array) -> PromptBandit:
    return PromptBandit(bandit.blocks, shared, bandit.correct)


def tabular_bandit(p0: Array, K: int) -> tuple[PromptBandit, Array]:
    """Orthogonal tabular variant: X_i = I_K in prompt i's block (||X_i|| = 1), ``pi*_0(i) = p0_i``."""
    n = len(p0)
    blocks = np.broadcast_to(np.eye(K), (n, K, K)).copy()
    bandit = PromptBandit(blocks, np.zeros((n, K, 0)), np.zeros(n, dtype=np.int64))
    theta0 = np.zeros((n, K))
    theta0[:, 0] = initial_logit(p0, K)
    return bandit, theta0.reshape(-1)


def random_block_bandit(p0: Array, K: int, block_width: int, rng: np.random.Generator) -> tuple[PromptBandit, Array]:
    """Random-block variant: ``B_i ~ N(0, 1/d_b)`` entries; ``theta_0`` solves ``B_i theta = (c_i, 0, .., 0)``.

    The spec places theta_0 along ``x_{i,a_i}`` and bisects its scale; with ``d_b >= K`` the
    least-squares solution hits the tabular initial logits exactly, so ``pi*_0(i) = p0_i`` without a search.
    """
    if block_width < K:
        raise ValueError(f"block_width = {block_width} is invalid: allowed values are integers >= K = {K}")
    n = len(p0)
    blocks = rng.normal(0.0, 1.0 / np.sqrt(block_width), (n, K, block_width))
    target = np.zeros((n, K))
    target[:, 0] = initial_logit(p0, K)
    theta0 = np.stack([np.linalg.pinv(b) @ z for b, z in zip(blocks, target, strict=True)])
    return PromptBandit(blocks, np.zeros((n, K, 0)), np.zeros(n, dtype=np.int64)), theta0.reshape(-1)


def shared_correctness_bandit(p0: Array, K: int, rng: np.random.Generator, shared_dim: int = 4,
                              strength: float = 0.7) -> tuple[PromptBandit, Array]:
    """Overlap variant (a): tabular blocks plus a shared "correctness" direction (Asm. 4 holds).

    ``S_i[a_i] = strength * s`` with one unit vector ``s`` for all prompts, other rows 0; then
    ``<grad J_i, grad J_j> = strength^2 V_i V_j > 0`` for every pair. Shared coordinates start at 0.
    """
    bandit, theta0 = tabular_bandit(p0, K)
    direction = rng.standard_normal(shared_dim)
    shared = np.zeros((len(p0), K, shared_dim))
    shared[np.arange(len(p0)), bandit.correct] = strength * direction / np.linalg.norm(direction)
    return _with_shared(bandit, shared), np.concatenate([theta0, np.zeros(shared_dim)])


def slot_dictionary_bandit(p0: Array, K: int, rng: np.random.Generator, shared_dim: int = 4,
                           strength: float = 1.0) -> tuple[PromptBandit, Array]:
    """Overlap variant (b): ``S_i = strength * S[perm_i]`` with one random dictionary S (Asm. 4 fails for some pairs)."""
    bandit, theta0 = tabular_bandit(p0, K)
    dictionary = rng.standard_normal((K, shared_dim)) / np.sqrt(shared_dim)
    shared = np.stack([strength * dictionary[rng.permutation(K)] for _ in range(len(p0))])
    return _with_shared(bandit, shared), np.concatenate([theta0, np.zeros(shared_dim)])
