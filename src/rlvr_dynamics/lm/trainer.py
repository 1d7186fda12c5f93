"""The one RL trainer of the project: TRL's ``GRPOTrainer`` with named update rules and two hooks.

Update rules (``UPDATE_RULES``), all on TRL's own generation, reward and loss code:

=============  ==========================================================================
``grpo``       A = (r - mean_G r) / (std_G r + 1e-4), per-sequence 1/|o| average (Eq. 22-23;
               TRL ``loss_type="grpo"``, ``scale_rewards="group"``)
``no_std``     A = r - mean_G r, per-sequence 1/|o| average (the normalization paper's baseline)
``dr_grpo``    A = r - mean_G r, token sum over a constant (Liu et al.; TRL ``loss_type="dr_grpo"``)
``dr_grpo_std`` A = (r - mean_G r) / (std_G r + 1e-4), token sum over a constant (the normalization
               paper's ``standard`` arm with the sequence-level aggregation of its theory, spec G5)
``reinforce``  sequence-level REINFORCE, -(1/B) sum_i A_i sum_t log pi(o_i,t): A = r - mean_G r
               (``baseline="mean"``) or leave-one-out A = G/(G-1) (r - mean_G r) (``baseline="loo"``);
               implemented through the token-loss hook below
``ppo_clip``   GRPO advantages with PPO's clipped ratio over ``num_iterations`` > 1 updates per batch
=============  ==========================================================================

``baseline="none"`` makes the advantage the raw (weighted) reward, A = r: V1 LCO's REINFORCE
framework with +-1 rewards (Psi = +-1 on every token).

Hooks:

* ``token_loss``: a callable ``(trainer, per_token_logps, old_per_token_logps, advantages, mask, inputs)
  -> scalar loss`` replacing TRL's loss aggregation. ``advantages`` is (B,) or (B, T). A loss with
  ``needs_logits = True`` (:class:`rlvr_dynamics.lm.logit_loss.LogitLoss`: the LCO losses and their
  baselines) also gets the completion logits as ``inputs["completion_logits"]``, and the rollout
  logits as anchor when the host reuses a batch (``ppo_clip``).
* ``set_reward_weights(weights)``: reassigns the reward-function weights that TRL reads at every
  generation step (CTWA and scalarization baselines call it from a callback, see
  :class:`rlvr_dynamics.lm.diagnostics.RewardWeightSchedule`).
* ``advantage_hook``: a callable ``(trainer, output, rewards_per_func) -> advantages`` ((N,) or (N, T)
  for this process's completions) that replaces the advantages of every training batch; the
  multi-objective methods (:class:`rlvr_dynamics.multiobjective.control.ObjectiveControl`) combine
  per-objective rewards through it.

The trainer also keeps the last batch's rewards per function, advantages and completion lengths
(``last_batch``), the last training inputs (``last_inputs``) and the last pre-clip gradient norm,
which the diagnostics callbacks read. Every update rule logs ``policy/action_prob``, the mean
probability of the sampled tokens (V1 Fig. 6), and TRL's ``entropy``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from trl import GRPOTrainer

from rlvr_dynamics.lm.logit_loss import completion_logits, masked_mean

TokenLoss = Callable[..., torch.Tensor]
AdvantageHook = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class UpdateRule:
    loss_type: str
    scale_rewards: str
    uses_token_loss: bool = False


UPDATE_RULES = {
    "grpo": UpdateRule("grpo", "group"),
    "no_std": UpdateRule("grpo", "none"),
    "dr_grpo": UpdateRule("dr_grpo", "none"),
    "dr_grpo_std": UpdateRule("dr_grpo", "group"),
    "reinforce": UpdateRule("grpo", "none", uses_token_loss=True),
    "ppo_clip": UpdateRule("grpo", "group"),
}
BASELINES = ("mean", "loo", "none")


def reinforce_token_loss(trainer, per_token_logps, old_per_token_logps, advantages, mask, inputs) -> torch.Tensor:
    """-(1/B) sum_i A_i sum_t ratio_i,t, whose gradient at ratio = 1 is -(1/B) sum_i A_i grad log pi(o_i)."""
    ratio = torch.exp(per_token_logps - old_per_token_logps)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    return -(ratio * advantages * mask).sum() / per_token_logps.size(0)


@dataclass
class LastBatch:
    """What the last generation step produced (all processes gathered)."""

    rewards_per_func: torch.Tensor  # (N, n_funcs)
    rewards: torch.Tensor  # (N,) weighted sum
    advantages: torch.Tensor  # (N,) or (N, T) for the local process
    completion_lengths: torch.Tensor  # (N,)
    num_generations: int

    def grouped_rewards(self) -> torch.Tensor:
        """(prompts, G) weighted rewards in float64, one row per GRPO group."""
        return self.rewards.view(-1, self.num_generations).double()

    def group_success(self) -> torch.Tensor:
        """(prompts,) per-group mean reward, p_hat = k / G for binary rewards."""
        return self.grouped_rewards().mean(dim=1)


class RLVRTrainer(GRPOTrainer):
    """``GRPOTrainer`` plus named update rules, a per-token loss hook and reward-weight control."""

    def __init__(self, *args, update_rule: str = "grpo", baseline: str = "mean", token_loss: TokenLoss | None = None, **kwargs):
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"update_rule = {update_rule!r} is invalid: allowed values are {list(UPDATE_RULES)}")
        if baseline not in BASELINES:
            raise ValueError(f"baseline = {baseline!r} is invalid: allowed values are {list(BASELINES)}")
        super().__init__(*args, **kwargs)
        self.update_rule = update_rule
        self.baseline = baseline
        self.token_loss = token_loss or (reinforce_token_loss if UPDATE_RULES[update_rule].uses_token_loss else None)
        self.last_batch: LastBatch | None = None
        self.last_grad_norm: float = float("nan")
        self.last_inputs: dict | None = None
        self.advantage_hook: AdvantageHook | None = None
        self._last_rewards_per_func: torch.Tensor | None = None
        self._captured_logps: torch.Tensor | None = None
        self._capture_logps = False

    @property
    def _logit_loss(self):
        return self.token_loss if getattr(self.token_loss, "needs_logits", False) else None

    # ----- reward weights (CTWA, scalarization baselines) -----
    def set_reward_weights(self, weights: Sequence[float]) -> None:
        weights = torch.as_tensor(list(weights), dtype=torch.float32)
        if weights.shape != self.reward_weights.shape:
            raise ValueError(f"reward weights must have {len(self.reward_funcs)} entries, got {len(weights)}")
        self.reward_weights = weights

    # ----- advantages and batch bookkeeping -----
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func.detach().float().cpu()
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        num_generations = self.num_generations if self.model.training else self.num_generations_eval
        per_func = self._last_rewards_per_func
        rewards = torch.nan_to_num(per_func * self.reward_weights.unsqueeze(0)).sum(dim=1)  # all processes
        if self.update_rule == "reinforce" and self.baseline == "loo" and num_generations > 1:
            output["advantages"] = output["advantages"] * (num_generations / (num_generations - 1))
        if self.baseline == "none":  # A = r on this process's completions
            local = len(output["completion_ids"])
            start = self.accelerator.process_index * local
            output["advantages"] = rewards[start : start + local].to(self.accelerator.device)
        if self.model.training and self.advantage_hook is not None:
            output["advantages"] = self.advantage_hook(self, output, per_func).to(self.accelerator.device)
        loss = self._logit_loss
        if self.model.training and loss is not None and loss.stores_rollout_anchor and self.num_iterations > 1:
            with torch.no_grad():
                logits = completion_logits(self.model, output, self.temperature)
            output.update(loss.rollout_anchor(logits, output["completion_ids"]))
        if self.model.training:
            self.last_batch = LastBatch(
                rewards_per_func=per_func,
                rewards=rewards,
                advantages=output["advantages"].detach().float().cpu(),
                completion_lengths=output["completion_mask"].sum(dim=1).detach().float().cpu(),
                num_generations=num_generations,
            )
        return output

    # ----- losses -----
    def _compute_loss(self, model, inputs):
        if self.model.training:
            self.last_inputs = inputs
        if self.token_loss is None:
            self._capture_logps = True
            try:
                loss = super()._compute_loss(model, inputs)
            finally:
                self._capture_logps = False
            self._log_action_prob(self._captured_logps, inputs["completion_mask"])
            return loss
        completion_ids, mask = inputs["completion_ids"], inputs["completion_mask"]
        if self._logit_loss is not None:
            logits = completion_logits(model, inputs, self.temperature)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            per_token_logps = log_probs.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1).detach()
            self._metrics["train" if self.model.training else "eval"]["entropy"].append(float(masked_mean(entropy, mask)))
            inputs = {**inputs, "completion_logits": logits}
        else:
            prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
            per_token_logps, _, _ = self._get_per_token_logps_and_entropies(
                model,
                torch.cat([prompt_ids, completion_ids], dim=1),
                torch.cat([prompt_mask, mask], dim=1),
                completion_ids.size(1),
            )
        self._log_action_prob(per_token_logps, mask)
        old = inputs.get("old_per_token_logps")
        old = per_token_logps.detach() if old is None else old
        loss = self.token_loss(self, per_token_logps, old, inputs["advantages"], mask, inputs)
        return loss / (self.current_gradient_accumulation_steps if self.model.training else 1.0)

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        output = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._capture_logps:
            self._captured_logps = output[0].detach()
        return output

    def _log_action_prob(self, per_token_logps: torch.Tensor | None, mask: torch.Tensor) -> None:
        """``policy/action_prob``: mean pi(a_t | s_t) over the response tokens of the batch."""
        if per_token_logps is not None:
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["policy/action_prob"].append(float(masked_mean(per_token_logps.detach().float().exp(), mask)))

    # ----- gradient norm before clipping (for the diagnostics) -----
    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        self.last_grad_norm = float(grad_norm)
        return grad_norm

    def clip_coefficient(self) -> float:
        """The factor the last clipping multiplied the gradient by (1 when clipping is off)."""
        max_norm = self.args.max_grad_norm
        if not max_norm or max_norm <= 0 or not torch.isfinite(torch.tensor(self.last_grad_norm)):
            return 1.0
        return min(1.0, max_norm / (self.last_grad_norm + 1e-6))
