"""Validation accuracy by sampling (spec E3: mean over 5 tries per held-out question, temperature 1) and Pass@k."""

from __future__ import annotations

from collections.abc import Callable
from math import comb

import numpy as np
import torch

from rlvr_dynamics.lm.diagnostics import Diagnostic, PeriodicMetrics


def pass_at_k(correct: np.ndarray, k: int) -> float:
    """Unbiased Pass@k from a (prompts, n) 0/1 array (Chen et al. 2021): mean_q 1 - C(n - c_q, k) / C(n, k)."""
    n = correct.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} is invalid: allowed values are 1..{n} (the samples per prompt)")
    c = correct.sum(axis=1)
    return float(np.mean([1.0 - comb(n - ci, k) / comb(n, k) for ci in c]))


@torch.no_grad()
def sampled_scores(
    model, tokenizer, prompts: list, references: list[str], reward: Callable[[str, str], float],
    samples: int = 5, max_new_tokens: int = 256, temperature: float = 1.0, batch: int = 64, seed: int = 0,
) -> np.ndarray:
    """(prompts, samples) rewards of sampled completions; chat prompts (lists of messages) get the chat template."""
    was_training = model.training
    model.eval()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if isinstance(p, list) else p
        for p in prompts
    ]
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(texts), batch):
        chunk, refs = texts[start : start + batch], references[start : start + batch]
        encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        output = model.generate(
            **encoded, do_sample=True, temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
            num_return_sequences=samples, pad_token_id=tokenizer.pad_token_id,
        )
        completions = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        scores += [reward(c, refs[i // samples]) for i, c in enumerate(completions)]
    torch.random.set_rng_state(generator_state)
    model.train(was_training)
    return np.asarray(scores, dtype=float).reshape(len(texts), samples)


def sampled_accuracy(model, tokenizer, prompts: list, references: list[str], reward: Callable[[str, str], float],
                     samples: int = 5, max_new_tokens: int = 256, temperature: float = 1.0, batch: int = 64,
                     seed: int = 0) -> float:
    """Mean reward of ``samples`` completions per prompt."""
    return float(sampled_scores(model, tokenizer, prompts, references, reward, samples, max_new_tokens, temperature,
                                batch, seed).mean())


class SampledAccuracy(Diagnostic):
    """``val/accuracy`` (mean@``samples``) on fixed held-out prompts every ``every`` steps and at step 0."""

    name = "sampled_accuracy"

    def __init__(self, prompts: list, references: list[str], reward, samples: int = 5, every: int = 50,
                 max_new_tokens: int = 256, seed: int = 0) -> None:
        self.prompts, self.references, self.reward = prompts, references, reward
        self.samples, self.every, self.max_new_tokens, self.seed = samples, every, max_new_tokens, seed

    def _accuracy(self) -> float:
        return sampled_accuracy(self.trainer.model, self.trainer.processing_class, self.prompts, self.references,
                                self.reward, self.samples, self.max_new_tokens, seed=self.seed)

    def initial_metrics(self) -> dict[str, float]:
        return {"val/accuracy": self._accuracy()}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.log("val/accuracy", self._accuracy())


class PassAtK(PeriodicMetrics):
    """``eval/pass@k`` on fixed held-out prompts at step 0, every ``every`` steps and at the end.

    ``exact`` (tasks with one correct completion, spec X2): J_q = pi(o*_q | q) by teacher forcing and
    Pass@k = mean_q 1 - (1 - J_q)^k, exact at temperature 1. ``sampled``: ``samples`` completions per
    prompt at ``temperature`` (LCO spec G14: 8 at 0.6) and the unbiased estimator.
    """

    name = "pass_at_k"

    def __init__(self, prompts: list, references: list[str], ks: tuple[int, ...] = (1, 4, 8), every: int = 10,
                 mode: str = "exact", reward: Callable[[str, str], float] | None = None, samples: int = 8,
                 temperature: float = 0.6, max_new_tokens: int = 256, seed: int = 0) -> None:
        if mode not in ("exact", "sampled"):
            raise ValueError(f"mode = {mode!r} is invalid: allowed values are ['exact', 'sampled']")
        if mode == "sampled" and max(ks) > samples:
            raise ValueError(f"ks = {ks} is invalid: each k must be <= samples = {samples}")
        self.prompts, self.references, self.ks, self.every, self.mode = prompts, references, ks, every, mode
        self.reward, self.samples, self.temperature = reward, samples, temperature
        self.max_new_tokens, self.seed = max_new_tokens, seed

    def values(self) -> dict[str, float]:
        model, tokenizer = self.trainer.model, self.trainer.processing_class
        if self.mode == "exact":
            from rlvr_dynamics.lm.exact import exact_success

            success = exact_success(model, tokenizer, self.prompts, self.references).numpy()
            return {f"eval/pass@{k}": float(np.mean(1.0 - (1.0 - success) ** k)) for k in self.ks}
        scores = sampled_scores(model, tokenizer, self.prompts, self.references, self.reward, self.samples,
                                self.max_new_tokens, self.temperature, seed=self.seed) > 0
        return {f"eval/pass@{k}": pass_at_k(scores, k) for k in self.ks}
