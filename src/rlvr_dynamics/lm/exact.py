"""Exact (teacher-forced) success probabilities for tasks with a unique correct completion.

When the only rewarded completion of prompt q is the canonical string o*_q followed by EOS
(``O+_q = {o*_q}``, spec X2), the success rate is exactly J_q = pi(o*_q | q), one forward
pass, and its gradient gives the exact gap direction (Eq. 9 with a single positive
response): grad J_q / (J_q (1 - J_q)) = grad log pi(o*_q | q) / (1 - J_q).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ``prompt + completion + EOS`` ids, attention mask and completion mask."""
    rows, masks = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p + c)
        masks.append([0] * len(p) + [1] * len(c))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    completion_mask = torch.tensor([[0] * (width - len(m)) + m for m in masks])
    return ids, attention, completion_mask


def completion_log_probs(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[str]
) -> torch.Tensor:
    """log pi(completion + EOS | prompt) per pair, differentiable through ``model``."""
    ids, attention, completion_mask = encode_pairs(tokenizer, prompts, completions)
    device = next(model.parameters()).device
    ids, attention, completion_mask = ids.to(device), attention.to(device), completion_mask.to(device)
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (token_logps * completion_mask[:, 1:]).sum(-1)


@torch.no_grad()
def exact_success(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[str], batch: int = 1024
) -> torch.Tensor:
    """J_q = pi(o*_q | q) for every prompt (no gradient)."""
    was_training = model.training
    model.eval()
    parts = [
        completion_log_probs(model, tokenizer, prompts[i : i + batch], completions[i : i + batch]).exp()
        for i in range(0, len(prompts), batch)
    ]
    model.train(was_training)
    return torch.cat(parts).double().cpu()
