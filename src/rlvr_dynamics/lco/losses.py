"""Per-token policy losses on the logit vector: the baselines and the four LCO losses (spec §3).

Every loss takes the current logits ``z`` (..., V) of the response tokens, the sampled ids
``actions`` (...) and the per-token advantage ``advantages`` (...) (Psi in V1, A in V2), and returns
the per-token loss (...); aggregation over tokens is the caller's (the engine adapter
:mod:`rlvr_dynamics.lm.logit_loss` or the dynamics toys). Targets are built from ``anchor`` logits
(the rollout policy or the current logits, detached; spec G4) without gradient, in float32 or
higher (spec N17).

================  ===========================================================================
``sft``           -log pi_i                                         (V1 Eq. 2; V2 Eq. 1)
``pg``            -Psi log pi_i                                     (V1 Eq. 3, REINFORCE)
``pg_is``         -Psi pi_i / pi_old,i                              (V1 Eq. 4, un-clipped PPO)
``ppo_clip``      -min(r A, clip(r, 1-eps, 1+eps) A)                (V2 Eq. 3)
``lco``           |Psi| KL(pi' || pi_theta), pi'_i = rho pi_i       (V1 Eq. 13-17)
``lco_kld``       KL(pi* || pi_theta), z* = z_old + A / beta        (V2 Eq. 6, 7, 10)
``lco_mse``       sum_{a in S} (z_a - z*_a)^2                      (V2 Eq. 8)
``lco_lch``       sum_{a in S} log cosh(z_a - z*_a)                (V2 Eq. 9)
================  ===========================================================================

V2's formulas were lost in its text extraction; the V2 forms here are the spec's reconstructions
([R] in ``shared/papers/lco.md`` §3.5-3.7). Deviations from the paper's wording, all from the spec:
V1's target is infeasible when rho pi_i >= 1, so the sampled probability is capped at ``p_max``
(gap G2); V2's default beta is lost, so beta is a parameter (G1, default 2.0 for sparse +-1
advantages); the entries S of MSE / log-cosh default to the sampled token plus the anchor's
top-5 (G5); MSE has no 1/2 unless ``mse_half`` (G6); tokens with zero advantage get zero loss
(G9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSSES = ("sft", "pg", "pg_is", "ppo_clip", "lco", "lco_kld", "lco_mse", "lco_lch")
LCO_LOSSES = ("lco", "lco_kld", "lco_mse", "lco_lch")
ENTRY_SETS = ("sampled", "topk", "all")


@dataclass(frozen=True)
class LossOptions:
    """Constants of the losses; defaults follow the spec's gap table (G1, G2, G5, G6, G8)."""

    rho_pos: float = 1.8  # V1 §5: target ratio for Psi > 0
    rho_neg: float = 0.9  # V1 §5: target ratio for Psi < 0
    p_max: float = 0.99  # G2: cap of the target probability rho pi_i
    min_prob_gate: float = 0.0  # G2 [code] flag: no update of a negative token whose target is below this (0 = off)
    beta: float = 2.0  # G1: V2 target strength, logit shift A / beta
    neg_beta_scale: float = 1.0  # G1 [code] ablation: beta x this for A < 0 (the code uses 100)
    mse_half: bool = False  # G6: 1/2 (z - z*)^2 instead of (z - z*)^2
    entries: str = "topk"  # G5: entries of MSE / log-cosh: sampled, sampled + anchor top-k, or all
    entries_topk: int = 5
    clip_epsilon: float = 0.2  # PPO clip range (low)
    clip_epsilon_high: float | None = None  # DAPO-style upper range (None = clip_epsilon)

    def __post_init__(self) -> None:
        checks = {
            "rho_pos": (self.rho_pos >= 1.0, "numbers >= 1"),
            "rho_neg": (0.0 < self.rho_neg <= 1.0, "numbers in (0, 1]"),
            "p_max": (0.0 < self.p_max < 1.0, "numbers in (0, 1)"),
            "min_prob_gate": (0.0 <= self.min_prob_gate < 1.0, "numbers in [0, 1)"),
            "beta": (self.beta > 0, "numbers > 0"),
            "neg_beta_scale": (self.neg_beta_scale > 0, "numbers > 0"),
            "entries": (self.entries in ENTRY_SETS, f"one of {list(ENTRY_SETS)}"),
            "entries_topk": (self.entries_topk >= 0, "integers >= 0"),
            "clip_epsilon": (0.0 < self.clip_epsilon < 1.0, "numbers in (0, 1)"),
            "clip_epsilon_high": (self.clip_epsilon_high is None or self.clip_epsilon_high > 0, "None or numbers > 0"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"loss option {name} = {getattr(self, name)!r} is invalid: allowed values are {allowed}")


def check_loss_name(name: str) -> None:
    if name not in LOSSES:
        raise ValueError(f"policy loss {name!r} is invalid: allowed values are {list(LOSSES)}")


# ------------------------------------------------------------------ helpers
def _gather(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return values.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def _target_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """log cosh x, finite for any |x| (spec N16): |x| + log(1 + e^{-2|x|}) - log 2 for |x| > 15, and
    log1p(2 sinh^2(x/2)) below, which keeps relative accuracy near 0."""
    a = x.abs()
    small = torch.clamp(a, max=15.0)
    return torch.where(a > 15.0, a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0), torch.log1p(2 * torch.sinh(small / 2) ** 2))


def kl_to_target(logits: torch.Tensor, target_logprobs: torch.Tensor) -> torch.Tensor:
    """KL(q || softmax(z)) per token, forward KL (target first), 0 log 0 = 0 (spec N17)."""
    log_pi = F.log_softmax(logits.to(target_logprobs.dtype), dim=-1)
    q = target_logprobs.exp()
    terms = torch.where(q > 0, q * (target_logprobs - log_pi), torch.zeros_like(q))
    return terms.sum(-1)


# ------------------------------------------------------------------ targets
@torch.no_grad()
def v1_target_logprobs(anchor: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                       options: LossOptions = LossOptions()) -> torch.Tensor:
    """log pi' of V1 Eq. 13-16: pi'_i = rho pi_i, pi'_j = pi_j (1 - rho pi_i) / (1 - pi_i).

    rho = rho_pos for Psi > 0, rho_neg for Psi < 0, 1 for Psi = 0 (G9). A raised target probability
    is capped at ``p_max`` and never lowered below pi_i (G2); with
    ``min_prob_gate`` a negative token whose target would fall below the gate keeps pi' = pi.
    """
    dtype = _target_dtype(anchor)
    log_p = F.log_softmax(anchor.to(dtype), dim=-1)
    log_pi_i = _gather(log_p, actions)
    log_rest = log_p.scatter(-1, actions.unsqueeze(-1), -torch.inf).logsumexp(-1)  # log(1 - pi_i), exact near pi_i = 1
    p_i = log_pi_i.exp()
    advantages = advantages.to(dtype)
    rho = torch.where(advantages > 0, torch.full_like(p_i, options.rho_pos),
                      torch.where(advantages < 0, torch.full_like(p_i, options.rho_neg), torch.ones_like(p_i)))
    raised = rho > 1
    p_new = torch.where(raised, torch.maximum(torch.clamp(rho * p_i, max=options.p_max), p_i), rho * p_i)
    if options.min_prob_gate > 0:
        p_new = torch.where((advantages < 0) & (p_new < options.min_prob_gate), p_i, p_new)
    unchanged = (p_new == p_i) | (rho == 1)
    log_p_new = torch.where(unchanged, log_pi_i, torch.where(raised, torch.log(p_new), torch.log(rho) + log_pi_i))
    # log pi'_j - log pi_j = log(1 - p_new) - log(1 - pi_i); for a lowered token 1 - p_new = (1 - pi_i) + (1 - rho) pi_i
    log_rest_new = torch.where(raised, torch.log1p(-p_new),
                               torch.logaddexp(log_rest, torch.log1p(-rho) + log_pi_i))
    rest_shift = torch.where(unchanged, torch.zeros_like(p_i), log_rest_new - log_rest)
    target = log_p + rest_shift.unsqueeze(-1)
    return target.scatter(-1, actions.unsqueeze(-1), log_p_new.unsqueeze(-1))


def v1_logit_shift(p_i: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
    """Delta z_i = log rho + log((1 - pi_i) / (1 - rho pi_i)) (V1 Eq. 14-15): the sampled logit's shift."""
    return torch.log(torch.as_tensor(rho, dtype=p_i.dtype)) + torch.log1p(-p_i) - torch.log1p(-rho * p_i)


@torch.no_grad()
def v2_target_logits(anchor: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                     options: LossOptions = LossOptions(), dense_advantages: torch.Tensor | None = None) -> torch.Tensor:
    """z* = z_old + A_hat / beta (V2 Eq. 7), whose softmax is pi* ∝ pi_old e^{A/beta} (Eq. 6).

    Sparse advantages (V2 Eq. 11): A_hat = A_t on the sampled token, 0 elsewhere, with
    beta x ``neg_beta_scale`` for A_t < 0 ([code] ablation, G1). ``dense_advantages`` (..., V)
    (Eq. 12-13, zero outside the known action set) replaces the sparse form; centre them per
    state first for MSE / log-cosh (§4.4: c = -mean(A) / beta minimises the bound).
    """
    dtype = _target_dtype(anchor)
    z_star = anchor.to(dtype).clone()
    if dense_advantages is not None:
        return z_star + dense_advantages.to(dtype) / options.beta
    advantages = advantages.to(dtype)
    beta = torch.where(advantages < 0, torch.full_like(advantages, options.beta * options.neg_beta_scale),
                       torch.full_like(advantages, options.beta))
    shift = (advantages / beta).unsqueeze(-1)
    return z_star.scatter_add(-1, actions.unsqueeze(-1), shift)


def loss_entries(anchor: torch.Tensor, actions: torch.Tensor, options: LossOptions) -> torch.Tensor:
    """Boolean (..., V) mask of the logits entering MSE / log-cosh (G5)."""
    mask = torch.zeros(anchor.shape, dtype=torch.bool, device=anchor.device)
    if options.entries == "all":
        return mask | True
    mask.scatter_(-1, actions.unsqueeze(-1), True)
    if options.entries == "topk" and options.entries_topk > 0:
        top = anchor.topk(min(options.entries_topk, anchor.size(-1)), dim=-1).indices
        mask.scatter_(-1, top, True)
    return mask


# ------------------------------------------------------------------ losses
def _drop_zero_advantage(loss: torch.Tensor, advantages: torch.Tensor, dense: torch.Tensor | None) -> torch.Tensor:
    """Tokens without advantage information carry no loss (G9), also when the anchor is the rollout."""
    if dense is not None:
        return loss
    return torch.where(advantages == 0, torch.zeros_like(loss), loss)


def sft_loss(logits: torch.Tensor, actions: torch.Tensor, **_) -> torch.Tensor:
    return -_gather(F.log_softmax(logits, dim=-1), actions)


def pg_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, **_) -> torch.Tensor:
    return -advantages * _gather(F.log_softmax(logits, dim=-1), actions)


def pg_is_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
               old_logprobs: torch.Tensor, **_) -> torch.Tensor:
    ratio = torch.exp(_gather(F.log_softmax(logits, dim=-1), actions) - old_logprobs)
    return -advantages * ratio


def ppo_clip_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                  old_logprobs: torch.Tensor, options: LossOptions = LossOptions(), **_) -> torch.Tensor:
    ratio = torch.exp(_gather(F.log_softmax(logits, dim=-1), actions) - old_logprobs)
    high = options.clip_epsilon if options.clip_epsilon_high is None else options.clip_epsilon_high
    clipped = ratio.clamp(1 - options.clip_epsilon, 1 + high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


def v1_lco_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, anchor: torch.Tensor,
                options: LossOptions = LossOptions(), **_) -> torch.Tensor:
    """|Psi| KL(pi' || pi_theta) (V1 Eq. 17); logit gradient |Psi| (pi - pi') (Eq. 18)."""
    target = v1_target_logprobs(anchor, actions, advantages, options)
    return advantages.abs().to(target.dtype) * kl_to_target(logits, target)


def lco_kld_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, anchor: torch.Tensor,
                 options: LossOptions = LossOptions(), dense_advantages: torch.Tensor | None = None, **_) -> torch.Tensor:
    """KL(pi* || pi_theta) (V2 Eq. 10); logit gradient pi - pi*."""
    z_star = v2_target_logits(anchor, actions, advantages, options, dense_advantages)
    loss = kl_to_target(logits, F.log_softmax(z_star, dim=-1))
    return _drop_zero_advantage(loss, advantages, dense_advantages)


def lco_mse_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, anchor: torch.Tensor,
                 options: LossOptions = LossOptions(), dense_advantages: torch.Tensor | None = None, **_) -> torch.Tensor:
    """sum_S (z - z*)^2 (V2 Eq. 8; x 1/2 with ``mse_half``); logit gradient 2 (z - z*), Hessian 2 I."""
    z_star = v2_target_logits(anchor, actions, advantages, options, dense_advantages)
    mask = loss_entries(anchor, actions, options)
    loss = ((logits.to(z_star.dtype) - z_star).pow(2) * mask).sum(-1) * (0.5 if options.mse_half else 1.0)
    return _drop_zero_advantage(loss, advantages, dense_advantages)


def lco_lch_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, anchor: torch.Tensor,
                 options: LossOptions = LossOptions(), dense_advantages: torch.Tensor | None = None, **_) -> torch.Tensor:
    """sum_S log cosh(z - z*) (V2 Eq. 9); logit gradient tanh(z - z*), Hessian diag(sech^2)."""
    z_star = v2_target_logits(anchor, actions, advantages, options, dense_advantages)
    mask = loss_entries(anchor, actions, options)
    loss = (log_cosh(logits.to(z_star.dtype) - z_star) * mask).sum(-1)
    return _drop_zero_advantage(loss, advantages, dense_advantages)


LOSS_FUNCTIONS = {
    "sft": sft_loss, "pg": pg_loss, "pg_is": pg_is_loss, "ppo_clip": ppo_clip_loss,
    "lco": v1_lco_loss, "lco_kld": lco_kld_loss, "lco_mse": lco_mse_loss, "lco_lch": lco_lch_loss,
}


def per_token_loss(name: str, logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor | None = None,
                   anchor: torch.Tensor | None = None, old_logprobs: torch.Tensor | None = None,
                   options: LossOptions = LossOptions(), dense_advantages: torch.Tensor | None = None) -> torch.Tensor:
    """The per-token loss ``name`` (one of :data:`LOSSES`).

    ``anchor`` (the logits the LCO targets are built from) defaults to the current logits detached;
    ``old_logprobs`` (log pi_old of the sampled tokens, for the ratio losses) defaults to the
    current ones detached, i.e. ratio 1 at the first step on fresh data.
    """
    check_loss_name(name)
    if advantages is None:
        advantages = torch.ones(actions.shape, dtype=logits.dtype, device=logits.device)
    if anchor is None:
        anchor = logits.detach()
    if old_logprobs is None:
        old_logprobs = _gather(F.log_softmax(anchor.to(_target_dtype(anchor)), dim=-1), actions).to(logits.dtype)
    return LOSS_FUNCTIONS[name](logits, actions, advantages=advantages.to(logits.dtype), anchor=anchor,
                                old_logprobs=old_logprobs, options=options, dense_advantages=dense_advantages)
