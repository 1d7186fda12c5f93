"""The language-model part of the gradient-gap paper (E3 / Fig. 2, scaled-down X2) on the one engine.

:func:`run_grpo` builds one run from the notebook's parameters: the base policy (the tiny SFT
Llama of stage ``00_base_policy``, the converted SmolLM2, or any hub id / folder), the task
(arithmetic difficulty with a unique answer, or GSM8K / MATH500), the reward, the diagnostics,
and trains it with :func:`rlvr_dynamics.lm.engine.train_policy`. With a unique-answer task the
cumulative gap alignment is *exact* (:class:`~rlvr_dynamics.lm.diagnostics.ExactGap`); otherwise
the paper's estimator is used and accuracy is sampled (mean@5).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from scipy.optimize import curve_fit
from scipy.stats import spearmanr

from rlvr_dynamics.lm import diagnostics as diag
from rlvr_dynamics.lm.base_policy import DIFFICULTIES, eval_set, load_policy, rl_dataset
from rlvr_dynamics.lm.engine import EngineConfig, RunResult, train_policy
from rlvr_dynamics.lm.rewards import ExactCompletionReward, math_verify_reward
from rlvr_dynamics.lm.sampled_eval import SampledAccuracy
from rlvr_dynamics.paths import repo_path
from rlvr_dynamics.tasks import load_gsm8k, load_math500, math_reward

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
REAL_TASKS = ("gsm8k", "math500", "arithmetic_chat")


def chat_prompt(question: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def real_task_split(task: str, difficulty: str, data_dir: str, n_eval: int, seed: int) -> tuple[Dataset, list, list[str]]:
    """(train dataset, held-out chat prompts, references) with a seeded 80/20 split (spec E3)."""
    if task == "gsm8k":
        problems = load_gsm8k("train", Path(data_dir) / "gsm8k" if data_dir else None)
    elif task == "math500":
        problems = load_math500(Path(data_dir) / "math500" if data_dir else None)
    else:
        problems = DIFFICULTIES[difficulty].sample(2000, 40_000 + seed)
        problems = [type(p)(f"What is {p.question.rstrip('=')}?", p.reference) for p in problems]
    order = list(range(len(problems)))
    random.Random(seed).shuffle(order)
    cut = int(0.8 * len(order))
    train = [problems[i] for i in order[:cut]]
    held = [problems[i] for i in order[cut:]][:n_eval]
    dataset = Dataset.from_list([{"prompt": chat_prompt(p.question), "target": p.reference} for p in train])
    return dataset, [chat_prompt(p.question) for p in held], [p.reference for p in held]


def engine_config(params, update_rule: str, learning_rate: float) -> EngineConfig:
    """The engine settings of one run of notebook 02 (validated by ``EngineConfig``)."""
    return EngineConfig(
        update_rule=update_rule,
        optimizer=params.optimizer,
        learning_rate=learning_rate,
        lr_schedule=params.lr_schedule,
        max_steps=params.steps,
        prompts_per_step=params.prompts_per_step,
        generations=params.generations,
        max_completion_length=params.max_completion_length,
        max_grad_norm=params.max_grad_norm,
        lora_rank=params.lora_rank,
        seed=params.seed,
        bf16=params.bf16,
        gradient_checkpointing=params.gradient_checkpointing,
        use_vllm=params.use_vllm,
        progress_bar=params.progress_bar,
    )


def run_grpo(params, difficulty: str, update_rule: str, learning_rate: float, run_dir: Path | None = None) -> RunResult:
    """One GRPO-family run of notebook 02 (``params``: :class:`rlvr_dynamics.config.GradientGapGRPOParams`)."""
    torch.set_num_threads(params.torch_threads)
    model, tokenizer = load_policy(repo_path(params.base_model))
    engine = engine_config(params, update_rule, learning_rate)
    diagnostics = [diag.GradNorms(), diag.GroupStats(), diag.PaperGapEstimator(inner=params.paper_gap_inner)]
    if params.task == "arithmetic":
        dataset = rl_dataset(difficulty, params.train_prompts, params.seed)
        prompts, targets = eval_set(difficulty, params.eval_prompts, params.seed)
        rewards = [ExactCompletionReward(tokenizer)]
        diagnostics += [diag.ExactGap(prompts, targets)]
        if params.probe_prompts > 0:
            n = params.probe_prompts
            diagnostics += [diag.ProbeGradients(prompts[:n], targets[:n], params.probe_every)]
    else:
        dataset, prompts, references = real_task_split(
            params.task, difficulty, params.data_dir, params.eval_prompts, params.seed
        )
        rewards = [math_verify_reward]
        diagnostics += [SampledAccuracy(prompts, references, math_reward, params.eval_samples, params.eval_every,
                                        params.max_completion_length, params.seed)]
    return train_policy(model, tokenizer, dataset, rewards, engine, diagnostics, run_dir)


def accuracy_column(steps: pd.DataFrame) -> str:
    return "exact/J" if "exact/J" in steps else "val/accuracy"


def alignment_column(steps: pd.DataFrame) -> str:
    return "exact/M" if "exact/M" in steps else "paper/M"


def logistic_fit(m: np.ndarray, j: np.ndarray) -> tuple[float, float, float]:
    """Least-squares fit J ~ sigmoid(a + b M) (C3 iii); returns (a, b, R^2 on J)."""
    m, j = np.asarray(m, float), np.asarray(j, float)
    keep = np.isfinite(m) & np.isfinite(j)
    m, j = m[keep], j[keep]
    scale = max(float(np.max(np.abs(m))), 1e-12)

    def model(x, a, b):
        return 1.0 / (1.0 + np.exp(-(a + b * x / scale)))

    clipped = np.clip(j, 1e-6, 1 - 1e-6)
    a0 = math.log(clipped[0] / (1 - clipped[0]))
    try:
        (a, b), _ = curve_fit(model, m, j, p0=(a0, 0.0), maxfev=20_000)
    except RuntimeError:
        return float("nan"), float("nan"), float("nan")
    residual = np.sum((j - model(m, a, b)) ** 2)
    total = np.sum((j - j.mean()) ** 2)
    return float(a), float(b / scale), float(1 - residual / total) if total > 0 else float("nan")


def monotone_relation(steps: pd.DataFrame) -> dict[str, float]:
    """Spearman rho(M, J) and the logistic fit of one run (rows with a measured J only)."""
    acc, align = accuracy_column(steps), alignment_column(steps)
    rows = steps[[align, acc]].dropna()
    a, b, r2 = logistic_fit(rows[align].to_numpy(), rows[acc].to_numpy())
    rho = spearmanr(rows[align], rows[acc]).statistic if len(rows) > 2 else float("nan")
    return {"spearman": float(rho), "a": a, "b": b, "r2": r2, "points": len(rows)}


def logit_mismatch(steps: pd.DataFrame) -> float:
    """|logit J_K - logit J_0 - S_K| (first-order prediction of Eq. 3 with the exact signed sum)."""
    rows = steps[["exact/J", "exact/S"]].dropna()
    j0, jk, s = rows["exact/J"].iloc[0], rows["exact/J"].iloc[-1], rows["exact/S"].iloc[-1]
    return float(abs(math.log(jk / (1 - jk)) - math.log(j0 / (1 - j0)) - s))


def run_summary(steps: pd.DataFrame) -> dict[str, float]:
    acc, align = accuracy_column(steps), alignment_column(steps)
    values = steps[acc].dropna()
    return {
        "J0": float(values.iloc[0]),
        "J_final": float(values.iloc[-1]),
        "J_max": float(values.max()),
        "M_final": float(steps[align].dropna().iloc[-1]),
        "steps": int(steps.step.max()),
        "outcome": str(steps.outcome.iloc[-1]),
    }


def sweep_verdict(summary: pd.DataFrame, tolerance: float = 0.02) -> pd.Series:
    """Per learning rate: 'improves' (J_final > J0 + tol), 'collapse' (J_final < 0.5 J0 or a stop
    outcome), else 'plateau'."""
    def verdict(row) -> str:
        if row.outcome != "completed" or row.J_final < 0.5 * row.J0:
            return "collapse"
        return "improves" if row.J_final > row.J0 + tolerance else "plateau"

    return summary.apply(verdict, axis=1)


def main(argv: list[str] | None = None) -> int:
    """One run of notebook 02 outside the notebook, for ``accelerate launch`` on several GPUs.

    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m rlvr_dynamics.gradient_gap_lm \\
        --profile paper --rule grpo --lr 5e-6 --run-dir results/launched/e3a-grpo
    """
    import argparse
    import dataclasses

    from rlvr_dynamics.config import ParameterError
    from rlvr_dynamics.pipeline import ROOT, load_params, resolve_stage_params

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="cpu / gpu / paper (default: params.yaml's)")
    parser.add_argument("--difficulty", default=None, help="arithmetic difficulty (default: sweep_difficulty)")
    parser.add_argument("--rule", default="grpo", help="update rule")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: main_learning_rate)")
    parser.add_argument("--run-dir", type=Path, required=True, help="where steps.csv and dvclive/ go")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--dry-run", action="store_true", help="resolve and validate everything, train nothing")
    args = parser.parse_args(argv)
    try:
        _, params = resolve_stage_params("02_gradient_gap_grpo", load_params(args.params), args.profile)
        lr = args.lr if args.lr is not None else params.main_learning_rate
        engine = engine_config(params, args.rule, lr)
    except (ParameterError, ValueError) as error:
        print(f"error: {error}")
        return 2
    difficulty = args.difficulty or params.sweep_difficulty
    if args.dry_run:
        print(json.dumps(dataclasses.asdict(engine), default=str))
        return 0
    result = run_grpo(params, difficulty, args.rule, lr, args.run_dir)
    print(f"{result.outcome}; steps table in {args.run_dir / 'steps.csv'}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
