"""A weighting method inside the one RL engine: advantages per batch, CTWA statistics, gradient cosines.

:class:`ObjectiveControl` is a :class:`~rlvr_dynamics.lm.diagnostics.Diagnostic` that installs itself as
the trainer's ``advantage_hook``. The trainer's reward functions are the objectives (one TRL reward
function each); for every training batch the control

1. finishes the previous batch for methods whose statistics follow the update (CTWA, F16 steps 6-9):
   log-probs of that batch under the policy as updated since, completion weights ``w`` (F12), then
   ``method.update`` gives the weights of this batch;
2. builds the :class:`~rlvr_dynamics.multiobjective.methods.ObjectiveBatch` of this batch and, for
   methods whose statistics precede the update, what they need: the Gramian of the per-objective
   policy-loss gradients (one forward and ``M`` backward passes, E8-2/6/7), the per-objective surrogate
   losses (GradNorm) and the share of tokens within ``1 + eps`` of the frozen initial policy (PAMA);
3. sets TRL's reward weights to the method's weights when it scalarises linearly (Linear, Dynamic,
   CTWA: TRL's logged ``reward`` is then ``s_lambda``) and returns the advantages.

With ``gradient_cosines`` it also logs the pairwise cosines and norms of the per-objective gradients
(spec E5, Fig. 4) in any run. ``cost/extra_forward`` and ``cost/extra_backward`` count the passes a
method adds to the engine's one forward-backward per update (the efficiency claim C9), and
``time/step_seconds`` the wall time of each optimizer step.

The per-objective gradient is that of ``-(1/N) sum_i A_i^(m) (1/|o_i|) sum_t log pi(o_i,t)``, the
engine's loss at ratio 1 with TRL's per-sequence averaging; Dynamic weighting uses all trainable
parameters (the code restricts it to the middle layers of a 28-layer model, gap 13).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from rlvr_dynamics.lm.diagnostics import Diagnostic
from rlvr_dynamics.multiobjective.methods import PAMA, Method, ObjectiveBatch, completion_weights, pama_token_factor


class ObjectiveControl(Diagnostic):
    """Runs ``method`` on every training batch of the trainer it is bound to."""

    name = "objective_control"

    def __init__(self, method: Method, estimator: str = "reinforce_pp", clip_epsilon: float = 100.0,
                 gradient_cosines: bool = False) -> None:
        self.method, self.estimator, self.clip_epsilon = method, estimator, clip_epsilon
        self.gradient_cosines = gradient_cosines
        self.pending: dict | None = None
        self.reference: torch.nn.Module | None = None
        self.step_started = 0.0

    def bind(self, trainer) -> ObjectiveControl:
        super().bind(trainer)
        if len(trainer.reward_funcs) != self.method.n_objectives:
            raise ValueError(f"{self.method.name} has {self.method.n_objectives} objectives but the trainer "
                             f"{len(trainer.reward_funcs)} reward functions")
        trainer.advantage_hook = self
        if isinstance(self.method, PAMA) and not hasattr(trainer.model, "disable_adapter"):
            self.reference = copy.deepcopy(trainer.model).eval().requires_grad_(False)
        return self

    # ----- the advantage hook -----
    def __call__(self, trainer, output: dict, rewards_per_func: torch.Tensor) -> torch.Tensor:
        method, metrics = self.method, {"cost/extra_forward": 0.0, "cost/extra_backward": 0.0}
        if self.pending is not None:
            self._finish_pending(metrics)
        mask = output["completion_mask"]
        batch = ObjectiveBatch(
            rewards=rewards_per_func.double().numpy(),
            group_size=trainer.num_generations,
            lengths=mask.sum(dim=1).cpu().double().numpy(),
            estimator=self.estimator,
            learning_rate=current_learning_rate(trainer),
        )
        if "gramian" in method.needs or self.gradient_cosines:
            batch.gramian, batch.losses = self._objective_gradients(output, batch.objective_advantages())
            metrics["cost/extra_forward"] += 1
            metrics["cost/extra_backward"] += method.n_objectives
            if self.gradient_cosines:
                metrics |= gradient_cosines(batch.gramian)
        log_ratio_to_reference = None
        if "unclipped_fraction" in method.needs:
            log_ratio_to_reference = self._old_log_probs(output) - self._reference_log_probs(output)
            inside = (torch.exp(log_ratio_to_reference.clamp(-20, 20)) <= 1.0 + method.epsilon).float() * mask
            batch.unclipped_fraction = (inside.sum(1) / mask.sum(1).clamp(min=1)).double().cpu().numpy()
            metrics["cost/extra_forward"] += 1
        if method.timing == "before":
            method.update(batch)
        if method.scalarizes_linearly:
            trainer.set_reward_weights(method.weights().tolist())
        advantages = torch.as_tensor(method.advantages(batch), dtype=torch.float32)
        if method.combine == "pama":
            factor = pama_token_factor(log_ratio_to_reference, method.epsilon)
            advantages = advantages[:, None].to(factor.device) * factor * mask
        if method.timing == "after":
            self.pending = {"inputs": {k: output[k] for k in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")},
                            "old": self._old_log_probs(output), "advantages": advantages, "batch": batch}
            metrics["cost/extra_forward"] += 0 if output.get("old_per_token_logps") is not None else 1
        for key, value in (metrics | method.state()).items():
            self.log(key, value)
        return advantages

    def _finish_pending(self, metrics: dict) -> None:
        """CTWA's statistics of the previous batch under the policy as updated since (F12-F15)."""
        pending, self.pending = self.pending, None
        new = self._log_probs(pending["inputs"])
        mask = pending["inputs"]["completion_mask"].double().cpu().numpy()
        log_ratio = (new - pending["old"]).double().cpu().numpy()
        batch = pending["batch"]
        batch.completion_weights = completion_weights(pending["advantages"].double().numpy(), log_ratio, mask,
                                                      self.clip_epsilon, self.clip_epsilon)
        self.method.update(batch)
        metrics["cost/extra_forward"] += 1

    # ----- forward passes -----
    def _log_probs(self, inputs: dict, model: torch.nn.Module | None = None, grad: bool = False) -> torch.Tensor:
        trainer = self.trainer
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.set_grad_enabled(grad):
            logps, _, _ = trainer._get_per_token_logps_and_entropies(model or trainer.model, ids, attention,
                                                                     inputs["completion_ids"].size(1))
        return logps if grad else logps.detach()

    def _old_log_probs(self, output: dict) -> torch.Tensor:
        old = output.get("old_per_token_logps")
        return old.detach() if old is not None else self._log_probs(output)

    def _reference_log_probs(self, output: dict) -> torch.Tensor:
        """Log-probs under the frozen initial policy (a copy, or the base model with the LoRA adapter off)."""
        if self.reference is not None:
            return self._log_probs(output, self.reference)
        with self.trainer.model.disable_adapter():
            return self._log_probs(output)

    def _objective_gradients(self, output: dict, objective_advantages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gramian ``<g_m, g_j>`` of the per-objective loss gradients and the losses at ratio 1 (E5, E8)."""
        params = [p for p in self.trainer.model.parameters() if p.requires_grad]
        mask = output["completion_mask"].float()
        logps = self._log_probs(output, grad=True)
        sequence = (logps * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        advantages = torch.as_tensor(objective_advantages, dtype=sequence.dtype, device=sequence.device)
        flat = []
        for m in range(advantages.shape[1]):
            loss = -(advantages[:, m] * sequence).mean()
            grads = torch.autograd.grad(loss, params, retain_graph=m < advantages.shape[1] - 1, allow_unused=True)
            flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double()
                                   for g, p in zip(grads, params, strict=True)]))
        stacked = torch.stack(flat)
        losses = -advantages.double().mean(dim=0)
        return (stacked @ stacked.T).cpu().numpy(), losses.cpu().numpy()

    # ----- step timing -----
    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.log("time/step_seconds", time.perf_counter() - self.step_started)


def current_learning_rate(trainer) -> float:
    scheduler = trainer.lr_scheduler
    return float(scheduler.get_last_lr()[0]) if scheduler is not None else float(trainer.args.learning_rate)


def gradient_cosines(gramian: np.ndarray) -> dict[str, float]:
    """Pairwise cosines ``<g_m, g_j> / (|g_m| |g_j|)`` and norms of the per-objective gradients (Fig. 4)."""
    norms = np.sqrt(np.maximum(np.diag(gramian), 0.0))
    values = {f"grad/norm_{m}": float(n) for m, n in enumerate(norms)}
    for m in range(len(norms)):
        for j in range(m + 1, len(norms)):
            denominator = norms[m] * norms[j]
            values[f"grad/cos_{m}_{j}"] = float(gramian[m, j] / denominator) if denominator > 0 else float("nan")
    return values
