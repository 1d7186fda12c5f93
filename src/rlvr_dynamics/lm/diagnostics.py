"""Diagnostics as ``TrainerCallback``s, each switchable, logged through the trainer's metrics.

Every diagnostic appends its per-step values to ``trainer._metrics["train"]`` in
``on_step_end``; the HF Trainer then logs them with TRL's own metrics in the same step, so
they reach DVCLive (``DVCLiveCallback``) and the tidy per-step table (:class:`StepTable`)
without extra plumbing. Names are ``<group>/<metric>``.

* :class:`GradNorms`        pre-clip gradient norm, global and per parameter group.
* :class:`GroupStats`       per-prompt success J_q and reward std, zero-std fraction, reward-advantage
                            covariances per reward function; per-prompt rows in ``group_rows``.
* :class:`GainFactor`       batch-mean p(1-p), sigma_bar and the running C_hat(t) of the normalization
                            paper (F30), the mean GRPO weight 1/(sigma_hat + eps) over live groups.
* :class:`PaperGapEstimator` the paper's Delta-mu estimator (spec E3): lr ||g||^2 / s_bar and variants.
* :class:`ExactGap`         exact J, Delta-mu eta, M and S on a fixed eval set (unique-answer tasks, spec X2).
* :class:`ProbeGradients`   per-prompt gradient cosines on a fixed probe set, and per-prompt M_q.
* :class:`DivergenceGuard`  non-finite gradients/parameters or collapse end the run cleanly.
* :class:`UpdateKL`         KL(pi_before || pi_after) of one optimizer step on its own batch (LCO V1 Table 4).
* :class:`PeriodicMetrics`   base of held-out evaluations logged at step 0, every N steps and at the end.
* :class:`RewardWeightSchedule` reward weights as a function of the step (hook for CTWA).

Probe-set diagnostics that sample fresh completions (per-prompt gradient cosines, Fisher proxy vs
reward variance) are in :mod:`rlvr_dynamics.lm.probe_diagnostics`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import TrainerCallback

from rlvr_dynamics.lm.exact import completion_log_probs
from rlvr_dynamics.lm.logit_loss import completion_logits, masked_mean


class Diagnostic(TrainerCallback):
    """A callback bound to an :class:`~rlvr_dynamics.lm.trainer.RLVRTrainer` (``bind`` is called by the engine)."""

    name = "diagnostic"
    trainer = None

    def bind(self, trainer) -> Diagnostic:
        self.trainer = trainer
        return self

    def log(self, key: str, value: float) -> None:
        self.trainer._metrics["train"][key].append(float(value))

    def initial_metrics(self) -> dict[str, float]:
        """Values at step 0, before any update (the :class:`StepTable` writes them as its first row)."""
        return {}

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.trainer.model.parameters() if p.requires_grad]


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def parameter_group(name: str) -> str:
    """``model.layers.1.mlp.up_proj.weight`` -> ``layer1.mlp``; embeddings, final norm, head, LoRA kept apart."""
    layer = re.search(r"layers\.(\d+)\.(\w+)", name)
    if layer:
        return f"layer{layer.group(1)}.{layer.group(2)}"
    for key in ("embed", "lm_head", "norm"):
        if key in name:
            return key
    return "other"


class GradNorms(Diagnostic):
    """||g|| before clipping, in total and per parameter group (TRL logs ``grad_norm`` itself)."""

    name = "grad_norms"

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        scale = 1.0 / self.trainer.clip_coefficient()
        squares: dict[str, float] = {}
        for name, p in self.trainer.model.named_parameters():
            if p.grad is not None:
                group = parameter_group(name)
                squares[group] = squares.get(group, 0.0) + float(p.grad.detach().double().pow(2).sum()) * scale**2
        self.norms = {group: math.sqrt(s) for group, s in squares.items()}

    def on_step_end(self, args, state, control, **kwargs):
        for group, norm in getattr(self, "norms", {}).items():
            self.log(f"grad_norms/{group}", norm)
        self.log("grad_norms/total_preclip", self.trainer.last_grad_norm)


class GroupStats(Diagnostic):
    """Per-prompt success rates and reward spread of the generation batch (binary rewards: J_q = mean_G r)."""

    name = "groups"

    def __init__(self) -> None:
        self.group_rows: list[dict] = []

    def on_step_end(self, args, state, control, **kwargs):
        batch = self.trainer.last_batch
        if batch is None:
            return
        success, spread = batch.group_success(), batch.grouped_rewards().std(dim=1, correction=0)
        self.log("groups/J_mean", success.mean())
        self.log("groups/J_min", success.min())
        self.log("groups/J_max", success.max())
        self.log("groups/reward_std_mean", spread.mean())
        self.log("groups/frac_zero_std", (spread == 0).double().mean())
        self.log("groups/frac_all_correct", (success == 1).double().mean())
        self.log("groups/frac_all_wrong", (success == 0).double().mean())
        self.log("groups/completion_length", batch.completion_lengths.mean())
        advantages = batch.advantages if batch.advantages.dim() == 1 else batch.advantages.mean(dim=1)
        if advantages.numel() == batch.rewards.numel():
            a = advantages.double() - advantages.double().mean()
            for i, name in enumerate(self.trainer.reward_func_names):
                r = torch.nan_to_num(batch.rewards_per_func[:, i].double())
                self.log(f"reward_adv_cov/{name}", ((r - r.mean()) * a).mean())
        for index, (j, s) in enumerate(zip(success.tolist(), spread.tolist(), strict=True)):
            self.group_rows.append({"step": state.global_step, "group": index, "J_hat": j, "reward_std": s})


class GainFactor(Diagnostic):
    """Reward-variance aggregates of the normalization paper per step (§3.3, §4.4; spec F18, F30, C15).

    From the B groups of the generation batch (binary rewards, p_hat = k / G):
    ``variance/p_var_mean`` = mean p_hat (1 - p_hat); ``variance/sigma_mean`` = sigma_bar_t, the mean
    population std including degenerate groups; ``variance/sigma_unbiased_mean`` the same with TRL's
    unbiased std (G6); ``variance/C_hat`` = (8/3) (1/t) sum_{s<=t} sigma_bar_s, the running estimate of
    C(T) (GRPO's bound beats REINFORCE's iff C < 1); ``variance/mean_weight`` = mean 1/(sigma_hat + 1e-4)
    over non-degenerate groups (the overall step-size multiplier of ``standard`` over ``no_std``, G19).
    """

    name = "variance"

    def __init__(self) -> None:
        self.sigma_sum, self.steps = 0.0, 0

    def on_step_end(self, args, state, control, **kwargs):
        batch = self.trainer.last_batch
        if batch is None:
            return
        p_hat = batch.group_success()
        sigma = torch.sqrt(p_hat * (1 - p_hat))
        unbiased = batch.grouped_rewards().std(dim=1, correction=1)
        live = unbiased > 0
        self.sigma_sum += float(sigma.mean())
        self.steps += 1
        self.log("variance/p_var_mean", (p_hat * (1 - p_hat)).mean())
        self.log("variance/sigma_mean", sigma.mean())
        self.log("variance/sigma_unbiased_mean", unbiased.mean())
        self.log("variance/C_hat", 8.0 / 3.0 * self.sigma_sum / self.steps)
        self.log("variance/mean_weight", (1 / (unbiased[live] + 1e-4)).mean() if live.any() else float("nan"))


class PaperGapEstimator(Diagnostic):
    """The paper's estimate of eta_k Delta-mu_k from one GRPO batch (spec E3, 'LLM estimator').

    s_bar = mean over the B prompts of the population std sqrt(J_b (1 - J_b)) (degenerate groups count
    as 0); ||g|| is the pre-clip gradient norm. Variants logged:
    ``paper/eta_dmu`` = lr ||g||^2 / s_bar (lambda = 0, the default), ``paper/eta_dmu_len`` (lambda = 1,
    times the mean completion length), ``paper/eta_dmu_batchJ`` (s_bar replaced by sqrt(J(1-J)) of the
    batch mean), and with ``inner=True`` ``paper/eta_dmu_inner`` = <theta_{k+1} - theta_k, g> / s_bar
    (optimizer-aware; stores one parameter copy and one gradient copy). Cumulative sums of the positive
    parts are ``paper/M*``. Zero when s_bar = 0.
    """

    name = "paper_gap"

    def __init__(self, inner: bool = True) -> None:
        self.inner = inner
        self.totals: dict[str, float] = {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.inner:
            scale = 1.0 / self.trainer.clip_coefficient()
            params = self.trainable()
            self.theta = _flat(params)
            self.ascent = _flat([-(p.grad if p.grad is not None else torch.zeros_like(p)) * scale for p in params])
        self.lr = float(self.trainer.optimizer.param_groups[0]["lr"])

    def on_step_end(self, args, state, control, **kwargs):
        batch = self.trainer.last_batch
        if batch is None:
            return
        success = batch.group_success()
        s_bar = float(torch.sqrt(success * (1 - success)).mean())
        j_batch = float(success.mean())
        s_batch = math.sqrt(j_batch * (1 - j_batch))
        norm2 = self.trainer.last_grad_norm**2
        length = float(batch.completion_lengths.mean())
        values = {
            "eta_dmu": self.lr * norm2 / s_bar if s_bar > 0 else 0.0,
            "eta_dmu_len": self.lr * length * norm2 / s_bar if s_bar > 0 else 0.0,
            "eta_dmu_batchJ": self.lr * norm2 / s_batch if s_batch > 0 else 0.0,
        }
        if self.inner:
            step = _flat(self.trainable()) - self.theta
            values["eta_dmu_inner"] = float(step @ self.ascent) / s_bar if s_bar > 0 else 0.0
        for key, value in values.items():
            self.log(f"paper/{key}", value)
            total = key.replace("eta_dmu", "M")
            self.totals[total] = self.totals.get(total, 0.0) + max(value, 0.0)
            self.log(f"paper/{total}", self.totals[total])


class ExactGap(Diagnostic):
    """Exact J and cumulative gap alignment on a fixed eval set with unique answers (spec X2).

    At theta_k: J_q = pi(o*_q | q), J = mean_q J_q and the batch gap direction D_k = grad J / (J (1 - J))
    (one backward pass). After the update: (eta Delta-mu)_k = <theta_{k+1} - theta_k, D_k>,
    M = sum [.]_+ and S = sum (.). The row of step k+1 holds J(theta_{k+1}) and M, S up to step k.
    """

    name = "exact_gap"

    def __init__(self, prompts: list[str], targets: list[str]) -> None:
        self.prompts, self.targets = prompts, targets
        self.M = self.S = 0.0

    def _evaluate(self) -> float:
        model, params = self.trainer.model, self.trainable()
        was_training = model.training
        model.eval()
        log_probs = completion_log_probs(model, self.trainer.processing_class, self.prompts, self.targets)
        success = log_probs.exp().mean()
        grads = torch.autograd.grad(success, params, allow_unused=True)
        model.train(was_training)
        j = float(success)
        self.J = j
        self.per_prompt = log_probs.detach().exp().double().cpu()
        self.theta = _flat(params)
        self.direction = _flat([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params, strict=True)])
        self.direction /= max(j * (1 - j), 1e-300)
        return j

    def initial_metrics(self) -> dict[str, float]:
        self._evaluate()
        return {"exact/J": self.J, "exact/M": 0.0, "exact/S": 0.0, **self._spread()}

    def _spread(self) -> dict[str, float]:
        middle = (self.per_prompt > 0.1) & (self.per_prompt < 0.9)
        return {"exact/J_q_std": float(self.per_prompt.std()), "exact/frac_J_q_mid": float(middle.double().mean())}

    def on_step_end(self, args, state, control, **kwargs):
        if not hasattr(self, "theta"):
            self._evaluate()
            return
        step = _flat(self.trainable()) - self.theta
        eta_dmu = float(step @ self.direction)
        if math.isfinite(eta_dmu):
            self.M += max(eta_dmu, 0.0)
            self.S += eta_dmu
        self._evaluate()
        self.log("exact/eta_dmu", eta_dmu)
        self.log("exact/M", self.M)
        self.log("exact/S", self.S)
        self.log("exact/J", self.J)
        for key, value in self._spread().items():
            self.log(key, value)


class ProbeGradients(Diagnostic):
    """Per-prompt gradients g_q = grad log pi(o_q | q) of reference completions on a fixed probe set.

    Every ``every`` steps: mean / min / max pairwise cosine of the g_q, and per-prompt alignment
    <theta_{k+1} - theta_k, g_q> / (1 - J_q), accumulated into per-prompt M_q (exact gap of prompt q
    when o_q is its unique answer and ``every`` = 1; for other tasks, o_q is a reference solution and
    the cosines describe how prompts' likelihood gradients interfere). One backward pass per probe prompt.
    """

    name = "probe"

    def __init__(self, prompts: list[str], references: list[str], every: int = 10) -> None:
        self.prompts, self.references, self.every = prompts, references, every
        self.M_q = np.zeros(len(prompts))
        self.rows: list[dict] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.pending = None
        if state.global_step % self.every:
            return
        model, params = self.trainer.model, self.trainable()
        was_training = model.training
        model.eval()
        grads, success = [], []
        for prompt, reference in zip(self.prompts, self.references, strict=True):
            log_prob = completion_log_probs(model, self.trainer.processing_class, [prompt], [reference])[0]
            g = torch.autograd.grad(log_prob, params, allow_unused=True)
            grads.append(_flat([x if x is not None else torch.zeros_like(p) for x, p in zip(g, params, strict=True)]))
            success.append(float(log_prob.exp()))
        model.train(was_training)
        stacked = torch.stack(grads)
        unit = stacked / stacked.norm(dim=1, keepdim=True).clamp_min(1e-300)
        cosine = (unit @ unit.T)[~torch.eye(len(grads), dtype=torch.bool)]
        self.pending = {"theta": _flat(params), "grads": stacked, "success": np.array(success)}
        self.cosines = {"mean": float(cosine.mean()), "min": float(cosine.min()), "max": float(cosine.max())}

    def on_step_end(self, args, state, control, **kwargs):
        if self.pending is None:
            return
        step = _flat(self.trainable()) - self.pending["theta"]
        per_prompt = (self.pending["grads"] @ step).numpy() / np.maximum(1 - self.pending["success"], 1e-12)
        self.M_q += np.maximum(np.nan_to_num(per_prompt), 0.0)
        for key, value in self.cosines.items():
            self.log(f"probe/cos_{key}", value)
        self.log("probe/M_q_mean", float(self.M_q.mean()))
        for index, (m, j) in enumerate(zip(self.M_q, self.pending["success"], strict=True)):
            self.rows.append({"step": state.global_step, "probe": index, "J_q_before": j, "M_q": m})


class DivergenceGuard(Diagnostic):
    """Ends the run cleanly on a non-finite gradient or parameter, or on a collapse of the reward.

    A non-finite gradient is dropped before the optimizer sees it. Collapse: the batch mean reward is
    at most ``floor`` (0 for 0/1 rewards, -1 for +-1 rewards) for ``patience`` consecutive steps after
    having been above it. The outcome is in ``outcome``.
    """

    name = "divergence"

    def __init__(self, patience: int = 20, floor: float = 0.0) -> None:
        self.patience, self.floor = patience, floor
        self.outcome = "completed"
        self.zero_run = 0
        self.seen_reward = False

    def _stop(self, control, outcome: str) -> None:
        if self.outcome == "completed":
            self.outcome = outcome
        control.should_training_stop = True

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if not math.isfinite(self.trainer.last_grad_norm):
            for p in self.trainer.model.parameters():
                p.grad = None
            self._stop(control, f"diverged: non-finite gradient at step {state.global_step + 1}")

    def on_step_end(self, args, state, control, **kwargs):
        if any(not torch.isfinite(p).all() for p in self.trainer.model.parameters()):
            self._stop(control, f"diverged: non-finite parameters at step {state.global_step}")
            return control
        batch = self.trainer.last_batch
        if batch is not None:
            mean_reward = float(batch.rewards.mean())
            self.seen_reward |= mean_reward > self.floor
            self.zero_run = self.zero_run + 1 if mean_reward <= self.floor else 0
            if self.seen_reward and self.zero_run >= self.patience:
                self._stop(control, f"collapsed: reward <= {self.floor:g} for {self.patience} steps at step {state.global_step}")
        return control


class UpdateKL(Diagnostic):
    """``policy/update_kl``: token-mean KL(pi_before || pi_after) of one optimizer step on its batch.

    LCO V1 Table 4 (spec G15: direction before-to-after, full vocabulary, mean over the response
    tokens of the update batch). Two extra forward passes per measured step, every ``every`` steps.
    """

    name = "update_kl"

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self.before: torch.Tensor | None = None

    def _log_probs(self) -> torch.Tensor:
        with torch.no_grad():
            logits = completion_logits(self.trainer.model, self.trainer.last_inputs, self.trainer.temperature)
        return torch.log_softmax(logits.double(), dim=-1)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        due = (state.global_step + 1) % self.every == 0 or state.global_step + 1 == state.max_steps
        self.before = self._log_probs() if due and self.trainer.last_inputs is not None else None

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.before is None:
            return
        after = self._log_probs()
        kl = (self.before.exp() * (self.before - after)).sum(-1)
        self.value = float(masked_mean(kl, self.trainer.last_inputs["completion_mask"]))

    def on_step_end(self, args, state, control, **kwargs):
        if self.before is not None:
            self.log("policy/update_kl", self.value)
            self.before = None


class PeriodicMetrics(Diagnostic):
    """Logs ``values()`` at step 0 (as initial metrics), every ``every`` steps, at the last step and when
    training stops early (held-out evaluations: Pass@k, the multi-objective test set)."""

    every = 10

    def values(self) -> dict[str, float]:
        raise NotImplementedError

    def initial_metrics(self) -> dict[str, float]:
        return self.values()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps or control.should_training_stop:
            for key, value in self.values().items():
                self.log(key, value)


class RewardWeightSchedule(Diagnostic):
    """Sets the reward weights from ``schedule(step, trainer) -> weights`` before every step (CTWA hook)."""

    name = "reward_weights"

    def __init__(self, schedule: Callable[[int, object], Sequence[float]]) -> None:
        self.schedule = schedule

    def on_step_begin(self, args, state, control, **kwargs):
        self.trainer.set_reward_weights(self.schedule(state.global_step, self.trainer))

    def on_step_end(self, args, state, control, **kwargs):
        for name, weight in zip(self.trainer.reward_func_names, self.trainer.reward_weights.tolist(), strict=True):
            self.log(f"reward_weight/{name}", weight)


class StepTable(TrainerCallback):
    """Collects every log dict into a tidy per-step table (one row per optimizer step)."""

    def __init__(self, initial: Callable[[], dict[str, float]]) -> None:
        self.initial, self.rows = initial, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.rows = [{"step": 0, **self.initial()}]

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_runtime" not in logs:
            self.rows.append({"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, int | float)}})
