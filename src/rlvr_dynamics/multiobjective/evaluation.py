"""Greedy test-set evaluation of the three objectives during training (spec E0 "Evaluation", gap 19).

:class:`ObjectiveEval` decodes the held-out prompts greedily at step 0, every ``every`` optimizer
steps and at the end, and logs ``eval/accuracy``, ``eval/clarity``, ``eval/length`` (tokens, EOS
included; a truncated response counts its full budget) and ``eval/conciseness`` (scored against
the training running mean, which evaluation never updates; at step 0 every response scores 1).
"""

from __future__ import annotations

import torch

from rlvr_dynamics.lm.diagnostics import PeriodicMetrics
from rlvr_dynamics.multiobjective.rewards import ConcisenessReward, evaluate_texts


@torch.no_grad()
def greedy_completions(model, tokenizer, prompts: list, max_new_tokens: int, batch: int = 128) -> tuple[list[str], list[int]]:
    """Greedy completions of ``prompts`` (chat prompts get the chat template) and their token lengths."""
    was_training = model.training
    model.eval()
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if isinstance(p, list) else p
             for p in prompts]
    device = next(model.parameters()).device
    completions, lengths = [], []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(texts[start : start + batch], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        output = model.generate(**encoded, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        generated = output[:, encoded["input_ids"].shape[1] :]
        is_eos = generated == tokenizer.eos_token_id
        first_eos = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, torch.full_like(is_eos[:, 0], max_new_tokens,
                                                                                                    dtype=torch.long))
        lengths += first_eos.tolist()
        completions += tokenizer.batch_decode(generated, skip_special_tokens=True)
    model.train(was_training)
    return completions, lengths


class ObjectiveEval(PeriodicMetrics):
    """Logs the three objectives of greedy completions on fixed held-out prompts."""

    name = "objective_eval"

    def __init__(self, prompts: list, targets: list[str], conciseness: ConcisenessReward, every: int = 10,
                 max_new_tokens: int = 48) -> None:
        self.prompts, self.targets, self.conciseness = prompts, targets, conciseness
        self.every, self.max_new_tokens = every, max_new_tokens

    def values(self) -> dict[str, float]:
        texts, lengths = greedy_completions(self.trainer.model, self.trainer.processing_class, self.prompts, self.max_new_tokens)
        scores = evaluate_texts(texts, lengths, self.targets, self.conciseness)
        return {f"eval/{key}": float(value) for key, value in scores.items()}
