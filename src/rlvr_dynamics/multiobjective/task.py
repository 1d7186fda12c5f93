"""The synthetic stand-in for MATH500 where accuracy, length and format conflict (spec scaled-down plan (a)3).

A prompt is four single digits and ``=`` (``3572=``); the answer is their running sum mod 10 (3+5=8,
8+7=5, 5+2=7 -> 7). A completion is written in one of four styles, each ending in ``\\boxed{answer}``:

==============  ===========================================  ==========================================
``direct``      ``\\boxed{7}``                                shortest; hard for a tiny model (no steps)
``plain``       ``3+5=8 8+7=5 5+2=7 \\boxed{7}``              accurate, medium length, not "clear"
``enumerated``  ``1.3+5=8 2.8+7=5 3.5+2=7 \\boxed{7}``        accurate and clear (>= 2 enumerators)
``verbose``     ``3+5=8 so 8+7=5 so 5+2=7 so \\boxed{7}``     accurate, longest, not clear
==============  ===========================================  ==========================================

A share ``unboxed`` of the SFT completions ends with the bare answer instead (accuracy and clarity 0),
so format is not saturated. A *style mix* is the SFT mixture; two named mixes stand in for the paper's
models (C2): ``verbose`` (the spec's mix: accurate only with steps, verbose on average, rarely clear) and
``efficient`` (no direct answers and no filler: being accurate costs little length).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from rlvr_dynamics.lm.tiny import build_char_tokenizer, build_tiny_llama

ALPHABET = "0123456789+=.{}\\ boxeds"
STYLES = ("direct", "plain", "enumerated", "verbose")
SFT_SEED, RL_SEED, EVAL_SEED = 40_000, 50_000, 60_000  # disjoint prompt streams


@dataclass(frozen=True)
class StyleMix:
    """Shares of the four styles in the SFT data (sum 1) and the share of unboxed answers."""

    direct: float
    plain: float
    enumerated: float
    verbose: float
    unboxed: float = 0.15

    def __post_init__(self) -> None:
        for f in fields(self):
            if not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"{f.name} = {getattr(self, f.name)} is invalid: allowed values are numbers in [0, 1]")
        total = sum(getattr(self, s) for s in STYLES)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"style shares {STYLES} sum to {total:g}: allowed values sum to 1")


STYLE_MIXES = {
    "verbose": StyleMix(direct=0.3, plain=0.3, enumerated=0.2, verbose=0.2),
    "efficient": StyleMix(direct=0.0, plain=0.5, enumerated=0.2, verbose=0.3),
}


def running_sums(digits: list[int]) -> list[tuple[int, int, int]]:
    steps, total = [], digits[0]
    for d in digits[1:]:
        steps.append((total, d, (total + d) % 10))
        total = (total + d) % 10
    return steps


def problems(n: int, seed: int, min_digits: int = 4, max_digits: int = 4) -> list[tuple[str, str]]:
    """``n`` seeded (prompt, answer) pairs. One prompt length by default: the tiny Llama's batched generation
    with left padding degrades completions of the shorter prompts (measured: correct unpadded, garbage padded),
    and TRL generates in left-padded batches."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        digits = rng.integers(0, 10, size=int(rng.integers(min_digits, max_digits + 1))).tolist()
        out.append(("".join(map(str, digits)) + "=", str(running_sums(digits)[-1][2])))
    return out


def completion(prompt: str, style: str, boxed: bool = True) -> str:
    """The completion of ``prompt`` in ``style`` (see the module table)."""
    if style not in STYLES:
        raise ValueError(f"style = {style!r} is invalid: allowed values are {list(STYLES)}")
    steps = running_sums([int(c) for c in prompt.rstrip("=")])
    answer = str(steps[-1][2])
    final = f"\\boxed{{{answer}}}" if boxed else answer
    lines = [f"{a}+{b}={c}" for a, b, c in steps]
    if style == "direct":
        return final
    if style == "enumerated":
        lines = [f"{i}.{line}" for i, line in enumerate(lines, start=1)]
    separator = " so " if style == "verbose" else " "
    return separator.join(lines) + separator + final


def rl_dataset(n: int, seed: int = 0) -> Dataset:
    """RL training prompts with a ``target`` column for the accuracy reward."""
    return Dataset.from_list([{"prompt": p, "target": a} for p, a in problems(n, RL_SEED + seed)])


def eval_set(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Fixed held-out prompts and answers."""
    pairs = problems(n, EVAL_SEED + seed)
    return [p for p, _ in pairs], [a for _, a in pairs]


def sft_examples(mix: StyleMix, n: int, seed: int, eos: str) -> list[dict[str, str]]:
    """``n`` prompt/completion pairs drawn from ``mix`` (completions end with ``eos``)."""
    rng = np.random.default_rng(SFT_SEED + seed)
    shares = np.array([getattr(mix, s) for s in STYLES])
    rows = []
    for prompt, _ in problems(n, SFT_SEED + seed):
        style = STYLES[int(rng.choice(len(STYLES), p=shares))]
        rows.append({"prompt": prompt, "completion": completion(prompt, style, boxed=rng.random() >= mix.unboxed) + eos})
    return rows


@dataclass
class StylePolicyConfig:
    mix: str = "verbose"
    sft_examples: int = 8000
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    learning_rate: float = 3e-3
    batch_size: int = 64
    max_steps: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mix not in STYLE_MIXES:
            raise ValueError(f"mix = {self.mix!r} is invalid: allowed values are {list(STYLE_MIXES)}")


class _LossHistory(TrainerCallback):
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.rows.append({"step": state.global_step, "loss": logs["loss"]})


def train_style_policy(config: StylePolicyConfig, work_dir: str | Path = "/tmp/rlvr-dynamics-style-sft"):
    """SFT a fresh tiny Llama on the style mixture; returns (model, tokenizer, loss history)."""
    from trl import SFTConfig, SFTTrainer

    tokenizer = build_char_tokenizer(ALPHABET)
    model = build_tiny_llama(tokenizer, config.hidden_size, config.num_layers, config.num_heads, config.intermediate_size,
                             seed=config.seed)
    rows = sft_examples(STYLE_MIXES[config.mix], config.sft_examples, config.seed, tokenizer.eos_token)
    history = _LossHistory()
    with warnings.catch_warnings():  # transformers' deprecation notice of gradient_checkpointing
        warnings.simplefilter("ignore", FutureWarning)
        args = SFTConfig(
            output_dir=str(work_dir), per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
            lr_scheduler_type="cosine", max_steps=config.max_steps, completion_only_loss=True,
            use_cpu=not torch.cuda.is_available(), bf16=False, report_to="none", save_strategy="no",
            gradient_checkpointing=False, logging_steps=max(1, config.max_steps // 20), disable_tqdm=True, seed=config.seed,
            data_seed=config.seed,
        )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[history])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.model.config.use_cache = True  # SFT switches the KV cache off; generation wants it back
    return trainer.model, tokenizer, pd.DataFrame(history.rows)
