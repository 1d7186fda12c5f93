"""Probe-set diagnostics of the normalization paper, usable on any engine run (spec E2, E3; C11, C12).

Both callbacks sample fresh completions from the current policy on a *fixed* probe set at
probe steps (every ``every`` steps and after the last step), in a forked RNG so that training
draws are unchanged:

* :class:`GradientCosines` (§4.2, Fig. 2/4, Table 3): per-prompt policy gradients
  ``g_i = grad (1/G_p) sum_k (r_k - r_bar) log pi(o_k | q_i)`` (reward-weighted, spec G13) and the
  score-function variant ``g_i^score = grad (1/G_p) sum_k log pi(o_k | q_i)``; pairwise-cosine
  statistics (F26: mean, std, fraction positive, fraction |cos| < 0.1) and the cheap M proxy of F27.
  Prompts whose groups stay degenerate after ``resamples`` extra groups have ``g_i = 0`` and are
  left out of the reward-weighted statistics (counted); the spec's replacement by a fresh question
  would change the probe set between checkpoints.
* :class:`FisherVariance` (§4.3, Table 1): per-prompt diagonal-Fisher proxy
  ``F_i = (1/(G_F P)) sum_k ||grad log pi(o_k | q_i)||^2`` (F28, S6) and reward variance
  ``V_i = p_i (1 - p_i)`` from ``G_V`` samples; Pearson r across prompts at every probe step.

Gradients can be compressed with a seeded count sketch (``sketch_dim``) so that 100 gradients of
a LoRA'd 1.5B model fit in memory (spec E2 "Memory"); inner products are preserved in expectation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch

from rlvr_dynamics.lm.diagnostics import Diagnostic, _flat
from rlvr_dynamics.lm.representations import cosine_statistics, pairwise_cosines
from rlvr_dynamics.phase_analysis import pearson

Score = Callable[[list[int], str], float]


def exact_answer_score(tokenizer) -> Score:
    """Binary score of one completion's token ids: ``target`` followed by EOS (unique-answer tasks)."""
    def score(ids: list[int], reference: str) -> float:
        wanted = tokenizer(reference, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return float(list(ids) == wanted)
    return score


def text_score(tokenizer, reward: Callable[[str, str], float]) -> Score:
    """Adapter from a text reward ``reward(completion_text, reference)`` (e.g. math-verify) to token ids."""
    return lambda ids, reference: reward(tokenizer.decode(ids, skip_special_tokens=True), reference)


def _prompt_ids(tokenizer, prompt) -> list[int]:
    if isinstance(prompt, list):  # chat messages
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def _trim(ids: list[int], eos: int, pad: int) -> list[int]:
    """Generated ids up to and including the first EOS (trailing padding removed)."""
    if eos in ids:
        return ids[: ids.index(eos) + 1]
    while ids and ids[-1] == pad and pad != eos:
        ids = ids[:-1]
    return ids


@torch.no_grad()
def sample_completions(model, tokenizer, prompt, samples: int, max_new_tokens: int, temperature: float = 1.0) -> list[list[int]]:
    """``samples`` completions (token ids, EOS included when produced) of one prompt, on-policy."""
    ids = torch.tensor([_prompt_ids(tokenizer, prompt)], device=next(model.parameters()).device)
    output = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
        max_new_tokens=max_new_tokens, num_return_sequences=samples, pad_token_id=tokenizer.pad_token_id,
    )
    return [_trim(row.tolist(), tokenizer.eos_token_id, tokenizer.pad_token_id) for row in output[:, ids.shape[1]:]]


def sequence_log_probs(model, tokenizer, prompt, completions: Sequence[list[int]]) -> torch.Tensor:
    """``log pi(o_k | q)`` summed over completion tokens, (G,), differentiable; empty completions give 0."""
    prompt_ids = _prompt_ids(tokenizer, prompt)
    width = max(len(c) for c in completions)
    pad = tokenizer.pad_token_id
    rows = [[pad] * (width - len(c)) + prompt_ids + list(c) for c in completions]
    attention = [[0] * (width - len(c)) + [1] * (len(prompt_ids) + len(c)) for c in completions]
    mask = [[0] * (width - len(c) + len(prompt_ids)) + [1] * len(c) for c in completions]
    device = next(model.parameters()).device
    ids, attention, mask = (torch.tensor(x, device=device) for x in (rows, attention, mask))
    positions = (attention.cumsum(1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits[:, :-1].float()
    token = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (token * mask[:, 1:]).sum(-1)


class CountSketch:
    """Seeded count sketch R^P -> R^k: ``<S a, S b>`` is an unbiased estimate of ``<a, b>``."""

    def __init__(self, dim: int, sketch_dim: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.bucket = torch.randint(sketch_dim, (dim,), generator=gen)
        self.sign = torch.randint(0, 2, (dim,), generator=gen).double() * 2 - 1
        self.sketch_dim = sketch_dim

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.sketch_dim, dtype=torch.float64)
        return out.index_add_(0, self.bucket, vector.double().cpu() * self.sign)


class _ProbeDiagnostic(Diagnostic, ABC):
    """Shared plumbing: probe steps, forked and seeded sampling, gradients of the trainable parameters."""

    def __init__(self, prompts: list, references: list[str], score: Score, every: int, max_new_tokens: int,
                 seed: int) -> None:
        self.prompts, self.references, self.score = prompts, references, score
        self.every, self.max_new_tokens, self.seed = every, max_new_tokens, seed
        self.rows: list[dict] = []
        self.last_probed = -1

    def _sample(self, prompt, reference, samples: int) -> tuple[list[list[int]], list[float]]:
        completions = sample_completions(self.trainer.model, self.trainer.processing_class, prompt, samples,
                                         self.max_new_tokens)
        return completions, [self.score(c, reference) for c in completions]

    def _gradient(self, objective: torch.Tensor, retain: bool = False) -> torch.Tensor:
        params = self.trainable()
        grads = torch.autograd.grad(objective, params, allow_unused=True, retain_graph=retain)
        return _flat([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params, strict=True)])

    def _run(self, step: int, log: bool) -> None:
        if step == self.last_probed:
            return
        self.last_probed = step
        model = self.trainer.model
        was_training = model.training
        model.eval()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + step)
            values = self.probe(step)
        model.train(was_training)
        self.pending = values if log else None

    @abstractmethod
    def probe(self, step: int) -> dict[str, float]:
        """Measure the probe set at ``step``; returns the values to log as ``<name>/<key>``."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._run(state.global_step, log=True)

    def on_step_end(self, args, state, control, **kwargs):
        """Values probed at the start of this step are logged with the step's other metrics."""
        for key, value in (getattr(self, "pending", None) or {}).items():
            self.log(f"{self.name}/{key}", value)
        self.pending = None

    def on_train_end(self, args, state, control, **kwargs):
        self._run(state.global_step, log=False)  # the final checkpoint (rows only: logging has ended)


class GradientCosines(_ProbeDiagnostic):
    """Pairwise cosines of per-prompt policy gradients on a fixed probe set (C11; E2, F26, F27).

    ``rows`` holds one dict of statistics per probe step; ``cosines[step]`` the reward-weighted
    pairwise cosines (for histograms) and ``score_cosines[step]`` the score-function ones.
    """

    name = "cos"

    def __init__(self, prompts: list, references: list[str], score: Score, samples: int = 16, every: int = 50,
                 max_new_tokens: int = 8, resamples: int = 3, sketch_dim: int = 0, seed: int = 0) -> None:
        super().__init__(prompts, references, score, every, max_new_tokens, seed)
        self.samples, self.resamples, self.sketch_dim = samples, resamples, sketch_dim
        self.cosines: dict[int, np.ndarray] = {}
        self.score_cosines: dict[int, np.ndarray] = {}
        self.sketch: CountSketch | None = None

    def _compress(self, vector: torch.Tensor) -> torch.Tensor:
        if not self.sketch_dim or vector.numel() <= self.sketch_dim:
            return vector.cpu()
        if self.sketch is None:
            self.sketch = CountSketch(vector.numel(), self.sketch_dim, self.seed)
        return self.sketch(vector)

    def probe(self, step: int) -> dict[str, float]:
        weighted, score, degenerate, success = [], [], 0, []
        model, tokenizer = self.trainer.model, self.trainer.processing_class
        for prompt, reference in zip(self.prompts, self.references, strict=True):
            completions, rewards = self._sample(prompt, reference, self.samples)
            for _ in range(self.resamples):
                if np.ptp(rewards) > 0:
                    break
                completions, rewards = self._sample(prompt, reference, self.samples)
            success.append(float(np.mean(rewards)))
            log_probs = sequence_log_probs(model, tokenizer, prompt, completions)
            centred = torch.tensor(rewards, device=log_probs.device) - float(np.mean(rewards))
            live = np.ptp(rewards) > 0
            degenerate += not live
            weighted.append(self._compress(self._gradient((centred * log_probs).mean(), retain=True)) if live else None)
            score.append(self._compress(self._gradient(log_probs.mean())))
        dim = score[0].numel()
        weighted = torch.stack([w if w is not None else torch.zeros(dim, dtype=score[0].dtype) for w in weighted])
        score = torch.stack(score)
        self.cosines[step] = pairwise_cosines(weighted)
        self.score_cosines[step] = pairwise_cosines(score)
        stats = cosine_statistics(self.cosines[step])
        values = {k: stats[k] for k in ("mean", "std", "frac_positive", "frac_small")}
        values |= {f"score_{k}": v for k, v in cosine_statistics(self.score_cosines[step]).items()
                   if k in ("mean", "std", "frac_positive", "frac_small")}
        values |= m_proxy(weighted.double(), self.cosines[step])
        values |= {"degenerate": float(degenerate), "probe_success": float(np.mean(success))}
        self.rows.append({"step": step, **values, "pairs": stats["n_pairs"], "samples": self.samples,
                          "sketch_dim": self.sketch_dim})
        return values


def m_proxy(gradients: torch.Tensor, cosines: np.ndarray) -> dict[str, float]:
    """Cheap sufficient proxy of Asm. 4's M (F27): ``M_ij <= ||g_j|| / (||g_i|| cos_ij)`` over ordered
    positive pairs (max and 95th percentile) and the fraction of negative pairs, which violate Asm. 4."""
    norms = gradients.norm(dim=1).numpy()
    first, second = np.triu_indices(len(norms), k=1)
    keep = np.isfinite(cosines) & (norms[first] > 0) & (norms[second] > 0)
    c, a, b = cosines[keep], norms[first][keep], norms[second][keep]
    positive = c > 0
    ratios = np.concatenate([(b / a)[positive] / c[positive], (a / b)[positive] / c[positive]])
    return {
        "M_proxy_max": float(ratios.max()) if ratios.size else float("nan"),
        "M_proxy_p95": float(np.percentile(ratios, 95)) if ratios.size else float("nan"),
        "frac_negative": float((c < 0).mean()) if c.size else float("nan"),
    }


class FisherVariance(_ProbeDiagnostic):
    """Per-prompt diagonal-Fisher proxy vs reward variance on a fixed probe batch (C12; E3, F28, F29).

    ``rows`` holds one dict per (probe step, prompt): ``F`` (mean squared score per parameter over
    ``fisher_samples`` completions), ``V = p(1-p)`` from ``variance_samples`` completions and the mean
    completion length (longer completions have larger scores, spec E3 caution). Logged per probe step:
    Pearson ``r`` and its p-value across prompts.
    """

    name = "fisher"

    def __init__(self, prompts: list, references: list[str], score: Score, variance_samples: int = 16,
                 fisher_samples: int = 4, every: int = 50, max_new_tokens: int = 8, seed: int = 0) -> None:
        super().__init__(prompts, references, score, every, max_new_tokens, seed)
        if fisher_samples > variance_samples:
            raise ValueError(f"fisher_samples = {fisher_samples} is invalid: allowed values are <= variance_samples")
        self.variance_samples, self.fisher_samples = variance_samples, fisher_samples

    def probe(self, step: int) -> dict[str, float]:
        model, tokenizer = self.trainer.model, self.trainer.processing_class
        n_params = sum(p.numel() for p in self.trainable())
        fisher, variance = [], []
        for index, (prompt, reference) in enumerate(zip(self.prompts, self.references, strict=True)):
            completions, rewards = self._sample(prompt, reference, self.variance_samples)
            used = completions[: self.fisher_samples]
            log_probs = sequence_log_probs(model, tokenizer, prompt, used)
            squares = [float(self._gradient(log_probs[k], retain=k + 1 < len(used)).pow(2).sum()) for k in range(len(used))]
            p = float(np.mean(rewards))
            fisher.append(float(np.mean(squares)) / n_params)
            variance.append(p * (1 - p))
            self.rows.append({"step": step, "prompt": index, "F": fisher[-1], "V": variance[-1], "p_hat": p,
                              "length": float(np.mean([len(c) for c in used]))})
        r, p_value = pearson(fisher, variance)
        return {"r": r, "p_value": p_value, "F_mean": float(np.mean(fisher)), "V_mean": float(np.mean(variance))}
