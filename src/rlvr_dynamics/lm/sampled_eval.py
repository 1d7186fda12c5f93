"""Validation accuracy by sampling (spec E3: mean over 5 tries per held-out question, temperature 1)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlvr_dynamics.lm.diagnostics import Diagnostic


@torch.no_grad()
def sampled_accuracy(
    model, tokenizer, prompts: list, references: list[str], reward: Callable[[str, str], float],
    samples: int = 5, max_new_tokens: int = 256, temperature: float = 1.0, batch: int = 64, seed: int = 0,
) -> float:
    """Mean reward of ``samples`` completions per prompt; chat prompts (lists of messages) get the chat template."""
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
    return sum(scores) / len(scores)


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
