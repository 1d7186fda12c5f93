"""Logit-level policy losses in the engine: the LCO losses and their baselines as a ``token_loss``.

:class:`LogitLoss` plugs any loss of :mod:`rlvr_dynamics.lco.losses` into
:class:`~rlvr_dynamics.lm.trainer.RLVRTrainer` through its per-token loss hook. The trainer hands
it the completion logits (``inputs["completion_logits"]``, divided by the sampling temperature
as TRL's log-probs are); the host update rule only supplies the advantages (Psi of V1 / A of V2):
``grpo`` (group-normalised), ``reinforce`` with ``baseline="none"`` (the raw +-1 reward of V1's
REINFORCE framework) or ``ppo_clip`` (several updates per rollout).

Anchor of the targets (spec G4): ``rollout`` builds them from the logits of the policy that
sampled the batch and keeps them for all ``num_iterations`` updates on it (V2; V1 at its first
step); ``current`` rebuilds them from the current logits, detached, at every update ([code]).
With one update per rollout the two coincide, so the rollout logits are stored only when the host
reuses a batch (``ppo_clip``): in full, or as the top-k entries plus the sampled token
(``anchor_topk``, for large vocabularies), the rest of the vocabulary then keeping its rollout
mass in the current shape (:func:`expand_anchor`).

Aggregation (G7): ``token_mean`` over the response tokens of the batch, or ``sign_split`` ([code]):
the mean over positive-advantage tokens plus the mean over negative-advantage tokens.

Sample selection (``keep``, V1 §6.4 Fig. 8): ``all``; ``positives`` (only Psi > 0 sequences);
``high_perplexity_positives`` (the half of the positive sequences with the highest rollout
perplexity exp(-mean_t log pi_old), the set V1 trains PG-IS on to show that low-probability
positives also destabilise it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from rlvr_dynamics.lco.losses import LCO_LOSSES, LOSSES, LossOptions, check_loss_name, per_token_loss

ANCHORS = ("rollout", "current")
AGGREGATIONS = ("token_mean", "sign_split")
SELECTIONS = ("all", "positives", "high_perplexity_positives")


def completion_logits(model, inputs: dict, temperature: float = 1.0) -> torch.Tensor:
    """(B, T, V) logits of the completion tokens of a TRL batch, divided by ``temperature``."""
    completion_ids = inputs["completion_ids"]
    input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
    attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    width = completion_ids.size(1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=width + 1).logits
    return logits[:, -width - 1 : -1, :] / temperature


@torch.no_grad()
def compress_anchor(logits: torch.Tensor, actions: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Top-k rollout logits, the sampled token's logit and the log-normaliser (what :func:`expand_anchor` needs)."""
    logits = logits.float()
    top = logits.topk(min(k, logits.size(-1)), dim=-1)
    return {
        "anchor_top_values": top.values,
        "anchor_top_index": top.indices,
        "anchor_sampled_value": logits.gather(-1, actions.unsqueeze(-1)).squeeze(-1),
        "anchor_lse": torch.logsumexp(logits, dim=-1),
    }


@torch.no_grad()
def expand_anchor(current: torch.Tensor, actions: torch.Tensor, stored: dict[str, torch.Tensor]) -> torch.Tensor:
    """Full-vocabulary anchor logits from a compressed rollout anchor.

    Stored entries (top-k and the sampled token) keep their rollout logits exactly; the other
    entries keep the rollout policy's total mass on them, spread in proportion to the current
    policy. Their shape then contributes nothing to KL(target || pi), so the KL losses equal the KL
    between the distributions coarsened to {stored entries, rest}.
    """
    lse_old = stored["anchor_lse"]
    index, values = stored["anchor_top_index"], stored["anchor_top_values"]
    sampled_in_top = (index == actions.unsqueeze(-1)).any(-1)
    sampled_value = torch.where(sampled_in_top, torch.full_like(lse_old, -torch.inf), stored["anchor_sampled_value"])
    kept_old = torch.logsumexp(torch.cat([values, sampled_value.unsqueeze(-1)], -1) - lse_old.unsqueeze(-1), dim=-1)
    log_p = F.log_softmax(current.float(), dim=-1)
    kept_mask = torch.zeros_like(log_p, dtype=torch.bool).scatter(-1, index, True).scatter(-1, actions.unsqueeze(-1), True)
    kept_now = torch.logsumexp(log_p.masked_fill(~kept_mask, -torch.inf), dim=-1)
    rest_old = torch.log(torch.clamp(-torch.expm1(kept_old), min=1e-30))
    rest_now = torch.log(torch.clamp(-torch.expm1(kept_now), min=1e-30))
    anchor = log_p + (rest_old - rest_now + lse_old).unsqueeze(-1)
    anchor = anchor.scatter(-1, actions.unsqueeze(-1), stored["anchor_sampled_value"].unsqueeze(-1))
    return anchor.scatter(-1, index, values)


@dataclass
class LogitLoss:
    """A named loss of :data:`rlvr_dynamics.lco.losses.LOSSES` as the engine's per-token loss."""

    name: str
    options: LossOptions = field(default_factory=LossOptions)
    anchor: str = "rollout"
    anchor_topk: int = 0
    aggregation: str = "token_mean"
    keep: str = "all"
    needs_logits = True

    def __post_init__(self) -> None:
        check_loss_name(self.name)
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor = {self.anchor!r} is invalid: allowed values are {list(ANCHORS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"loss aggregation = {self.aggregation!r} is invalid: allowed values are {list(AGGREGATIONS)}")
        if self.keep not in SELECTIONS:
            raise ValueError(f"keep = {self.keep!r} is invalid: allowed values are {list(SELECTIONS)}")
        if self.anchor_topk < 0:
            raise ValueError(f"anchor_topk = {self.anchor_topk} is invalid: allowed values are integers >= 0")

    @property
    def stores_rollout_anchor(self) -> bool:
        return self.anchor == "rollout" and self.name in LCO_LOSSES

    @torch.no_grad()
    def rollout_anchor(self, logits: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the trainer stores with a batch it will reuse (full logits, or compressed)."""
        if self.anchor_topk > 0:
            return compress_anchor(logits, actions, self.anchor_topk)
        return {"anchor_logits": logits.float()}

    def anchor_logits(self, logits: torch.Tensor, actions: torch.Tensor, inputs: dict) -> torch.Tensor:
        if "anchor_logits" in inputs:
            return inputs["anchor_logits"]
        if "anchor_top_values" in inputs:
            return expand_anchor(logits.detach(), actions, inputs)
        return logits.detach()

    def selected(self, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) 0/1 weights of the sequences this loss trains on (``keep``)."""
        positive = (advantages * mask).sum(1) > 0
        if self.keep == "all":
            return torch.ones_like(positive, dtype=advantages.dtype)
        if self.keep == "positives" or not positive.any():
            return positive.to(advantages.dtype)
        mean_logp = (old_logps.detach() * mask).sum(1) / mask.sum(1).clamp(min=1)
        threshold = mean_logp[positive].median()  # lower mean log-prob = higher perplexity
        return (positive & (mean_logp <= threshold)).to(advantages.dtype)

    def __call__(self, trainer, per_token_logps, old_per_token_logps, advantages, mask, inputs) -> torch.Tensor:
        logits, actions = inputs["completion_logits"], inputs["completion_ids"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1).expand_as(per_token_logps)
        advantages = advantages * self.selected(old_per_token_logps, advantages, mask).unsqueeze(1)
        losses = per_token_loss(self.name, logits, actions, advantages, self.anchor_logits(logits, actions, inputs),
                                old_per_token_logps.detach(), self.options)
        mask = mask.to(losses.dtype)
        if self.aggregation == "sign_split":
            loss = sum(masked_mean(losses, mask * part) for part in ((advantages > 0), (advantages < 0)))
        else:
            loss = masked_mean(losses, mask)
        return loss.to(per_token_logps.dtype)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the response tokens (``mask`` = 1); 0 for an empty mask."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


__all__ = ["ANCHORS", "AGGREGATIONS", "LOSSES", "SELECTIONS", "LogitLoss", "completion_logits", "compress_anchor",
           "expand_anchor", "masked_mean"]
