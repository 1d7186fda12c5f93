"""Base policies: the tiny SFT-warmed character Llama (trained here) and real models by id or path.

:func:`train_base_policy` warms a fresh :func:`~rlvr_dynamics.lm.tiny.build_tiny_llama` up with
TRL's ``SFTTrainer`` on canonical completions of a mixture of arithmetic difficulties, and stops
as soon as the held-out teacher-forced success J = mean_q pi(o*_q | q) reaches ``target_success``
(spec X2: "stopped when held-out J reaches 0.1-0.4"), so RL starts from an *intermediate* policy
with per-prompt J spread between 0 and 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer_callback import PrinterCallback

from rlvr_dynamics.lm.exact import exact_success
from rlvr_dynamics.lm.tiny import build_char_tokenizer, build_tiny_llama
from rlvr_dynamics.tasks import ArithmeticTask

DIFFICULTIES = {
    "easy": ArithmeticTask(n_digits=1),
    "medium": ArithmeticTask(n_digits=2),
    "hard": ArithmeticTask(n_digits=3),
}
# Disjoint seed ranges: SFT data, RL prompts, evaluation prompts never share a draw.
SFT_SEED, RL_SEED, EVAL_SEED = 10_000, 20_000, 30_000


def task_problems(difficulty: str, n: int, seed: int) -> list:
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty = {difficulty!r} is invalid: allowed values are {list(DIFFICULTIES)}")
    return DIFFICULTIES[difficulty].sample(n, seed)


def eval_set(difficulty: str, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Fixed held-out prompts and canonical answers of one difficulty."""
    problems = task_problems(difficulty, n, EVAL_SEED + 97 * seed + list(DIFFICULTIES).index(difficulty))
    return [p.question for p in problems], [DIFFICULTIES[difficulty].target(p) for p in problems]


def rl_dataset(difficulty: str, n: int, seed: int = 0) -> Dataset:
    """RL training prompts with a ``target`` column for the reward functions."""
    problems = task_problems(difficulty, n, RL_SEED + 97 * seed + list(DIFFICULTIES).index(difficulty))
    return Dataset.from_list([{"prompt": p.question, "target": DIFFICULTIES[difficulty].target(p)} for p in problems])


@dataclass
class BasePolicyConfig:
    difficulties: tuple[str, ...] = ("easy", "medium", "hard")
    sft_examples: int = 2000
    eval_prompts: int = 256
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    learning_rate: float = 1e-3
    batch_size: int = 64
    max_steps: int = 3000
    eval_every: int = 25
    target_success: float = 0.3
    seed: int = 0


class _SuccessMonitor(TrainerCallback):
    """Evaluates exact held-out J every ``every`` steps; stops SFT once the mean reaches the target."""

    def __init__(self, tokenizer, evals: dict[str, tuple[list[str], list[str]]], every: int, target: float) -> None:
        self.tokenizer, self.evals, self.every, self.target = tokenizer, evals, every, target
        self.rows: list[dict] = []
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        row = {"step": state.global_step, "seconds": time.perf_counter() - self.started}
        for name, (prompts, targets) in self.evals.items():
            row[f"J_{name}"] = float(exact_success(model, self.tokenizer, prompts, targets).mean())
        row["J_mean"] = sum(row[f"J_{n}"] for n in self.evals) / len(self.evals)
        self.rows.append(row)
        if row["J_mean"] >= self.target:
            control.should_training_stop = True


def train_base_policy(config: BasePolicyConfig, work_dir: str | Path = "/tmp/rlvr-dynamics-sft"):
    """SFT a fresh tiny Llama until held-out J reaches ``target_success``; returns (model, tokenizer, history)."""
    from trl import SFTConfig, SFTTrainer

    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(
        tokenizer, config.hidden_size, config.num_layers, config.num_heads, config.intermediate_size, seed=config.seed
    )
    rows = []
    for index, difficulty in enumerate(config.difficulties):
        task = DIFFICULTIES[difficulty]
        for p in task_problems(difficulty, config.sft_examples, SFT_SEED + 97 * config.seed + index):
            rows.append({"prompt": p.question, "completion": task.target(p) + tokenizer.eos_token})
    monitor = _SuccessMonitor(
        tokenizer,
        {d: eval_set(d, config.eval_prompts, config.seed) for d in config.difficulties},
        config.eval_every,
        config.target_success,
    )
    args = SFTConfig(
        output_dir=str(work_dir),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        max_steps=config.max_steps,
        completion_only_loss=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=config.eval_every,
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[monitor]
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer.model, tokenizer, pd.DataFrame(monitor.rows)


def load_policy(source: str | Path, **kwargs) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local folder or a hub id (no GGUF: convert it first)."""
    path = Path(source)
    if not path.exists() and str(source).startswith((".", "/", "results")):
        raise FileNotFoundError(f"no model at {source!r}: run `dvc repro` (stage 00_base_policy or convert_smollm2) first")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForCausalLM.from_pretrained(str(source), **kwargs)
    return model, tokenizer
