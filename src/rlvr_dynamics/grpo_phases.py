"""The language-model part of "Why GRPO Needs Normalization" (§4; spec E1-E6) on the one engine.

Two arms differ only in the advantage (spec E4): ``standard`` = (r - mean) / (std + 1e-4) and
``no_std`` = r - mean, with the same loss aggregation (default TRL ``dr_grpo``: the token sum
over a constant, proportional to the sequence-level gradient of the theory, spec G5; ``grpo``
as a sensitivity run). Accuracy is the training-rollout mean reward (F24, gap G10), smoothed
with EMA alpha = 0.18, and Delta = EMA(standard) - EMA(no_std) is read per phase (F31).

Tasks: ``arithmetic`` (the tiny base policy of stage 00, splits = difficulties, exact binary
reward), ``gsm8k`` (E6 complexity-proxy Easy / Hard splits of GSM8K train) and ``math500``
(split ``level2``: the E5 proxy for MATH Level 2), both with math-verify rewards and the
Qwen2.5-Math CoT chat prompt.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset

from rlvr_dynamics import phase_analysis as phases
from rlvr_dynamics.gradient_gap_lm import chat_prompt
from rlvr_dynamics.lm import diagnostics as diag
from rlvr_dynamics.lm.base_policy import DIFFICULTIES, eval_set, load_policy, rl_dataset
from rlvr_dynamics.lm.engine import EngineConfig, RunResult, train_policy
from rlvr_dynamics.lm.probe_diagnostics import FisherVariance, GradientCosines, exact_answer_score, text_score
from rlvr_dynamics.lm.rewards import ExactCompletionReward, math_verify_reward
from rlvr_dynamics.paths import repo_path
from rlvr_dynamics.tasks import GSM8K_SPLITS, gsm8k_difficulty_split, load_gsm8k, load_math500, math_level2_proxy, math_reward

ARMS = ("standard", "no_std")
TASK_SPLITS = {"arithmetic": tuple(DIFFICULTIES), "gsm8k": GSM8K_SPLITS, "math500": ("level2",)}
RULES = {("standard", "dr_grpo"): "dr_grpo_std", ("no_std", "dr_grpo"): "dr_grpo",
         ("standard", "grpo"): "grpo", ("no_std", "grpo"): "no_std"}


def check_splits(task: str, splits: list[str]) -> None:
    """A clear error before any work when a split does not belong to the task."""
    allowed = TASK_SPLITS[task]
    bad = [s for s in splits if s not in allowed]
    if bad:
        raise ValueError(f"parameter 'splits' = {bad} is invalid for task {task!r}: allowed values are {list(allowed)}")


def update_rule(arm: str, aggregation: str) -> str:
    if (arm, aggregation) not in RULES:
        raise ValueError(f"arm {arm!r} / loss_aggregation {aggregation!r}: allowed arms {list(ARMS)}, "
                         "aggregations ['dr_grpo', 'grpo']")
    return RULES[(arm, aggregation)]


def real_problems(task: str, split: str, data_dir: str) -> list:
    """GSM8K Easy/Hard (E6 proxy) or the MATH Level-2 proxy (E5), from a local folder or the hub."""
    if task == "gsm8k":
        problems = load_gsm8k("train", Path(data_dir) / "gsm8k" if data_dir else None)
        return gsm8k_difficulty_split(problems, split)
    return math_level2_proxy(load_math500(Path(data_dir) / "math500" if data_dir else None))


def task_data(params, split: str, tokenizer) -> tuple[Dataset, list, list[str], list, object]:
    """(train dataset, probe prompts, probe references, reward functions, probe score) of one split."""
    n = max(params.probe_prompts, params.fisher_prompts)
    if params.task == "arithmetic":
        dataset = rl_dataset(split, params.train_prompts, params.seed)
        prompts, targets = eval_set(split, n, params.seed)
        return dataset, prompts, targets, [ExactCompletionReward(tokenizer)], exact_answer_score(tokenizer)
    problems = real_problems(params.task, split, params.data_dir)
    order = list(range(len(problems)))
    random.Random(params.seed).shuffle(order)
    problems = [problems[i] for i in order]
    dataset = Dataset.from_list([{"prompt": chat_prompt(p.question), "target": p.reference}
                                 for p in problems[: params.train_prompts]])
    probes = problems[:n]  # the spec takes probes from the run's own split (G23)
    return (dataset, [chat_prompt(p.question) for p in probes], [p.reference for p in probes], [math_verify_reward],
            text_score(tokenizer, math_reward))


def engine_config(params, arm: str, learning_rate: float, seed: int) -> EngineConfig:
    return EngineConfig(
        update_rule=update_rule(arm, params.loss_aggregation), optimizer=params.optimizer, learning_rate=learning_rate,
        max_steps=params.steps, prompts_per_step=params.prompts_per_step, generations=params.generations,
        max_completion_length=params.max_completion_length, max_grad_norm=params.max_grad_norm,
        lora_rank=params.lora_rank, lora_alpha=2 * params.lora_rank if params.lora_rank else 16, seed=seed,
        bf16=params.bf16, gradient_checkpointing=params.gradient_checkpointing, use_vllm=params.use_vllm,
        progress_bar=params.progress_bar,
    )


def run_arm(params, split: str, arm: str, learning_rate: float, seed: int, probes: bool,
            run_dir: Path | None = None) -> RunResult:
    """One run of notebook 04 (``params``: :class:`rlvr_dynamics.config.GRPONormalizationPhasesParams`)."""
    torch.set_num_threads(params.torch_threads)
    model, tokenizer = load_policy(repo_path(params.base_model))
    dataset, prompts, references, rewards, score = task_data(params, split, tokenizer)
    diagnostics = [diag.GradNorms(), diag.GroupStats(), diag.GainFactor()]
    if probes:
        every = max(1, params.steps // max(1, params.probe_checkpoints - 1))
        n_cos, n_fisher = params.probe_prompts, params.fisher_prompts
        if n_cos > 1:
            diagnostics.append(GradientCosines(prompts[:n_cos], references[:n_cos], score, params.probe_samples, every,
                                               params.max_completion_length, sketch_dim=params.sketch_dim,
                                               seed=params.seed))
        if n_fisher > 2:
            diagnostics.append(FisherVariance(prompts[:n_fisher], references[:n_fisher], score, params.variance_samples,
                                              params.fisher_samples, every, params.max_completion_length,
                                              seed=params.seed))
    config = engine_config(params, arm, learning_rate, seed)
    return train_policy(model, tokenizer, dataset, rewards, config, diagnostics, run_dir)


# ------------------------------------------------------------------ analysis (F24, F31)
def smoothed_accuracy(steps: pd.DataFrame) -> pd.DataFrame:
    """Per-step rollout accuracy (``groups/J_mean``, F24) and its EMA (alpha 0.18) of one run."""
    rows = steps.dropna(subset=["groups/J_mean"])[["step", "groups/J_mean"]].rename(columns={"groups/J_mean": "accuracy"})
    return rows.assign(ema=phases.ema(rows.accuracy.to_numpy()))


def gap_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Delta_t = EMA(standard) - EMA(no_std) per split and seed (paired by seed), from per-run EMA curves
    with columns split, arm, seed, step, ema."""
    wide = curves.pivot_table(index=["split", "seed", "step"], columns="arm", values="ema").dropna()
    return wide.assign(delta=wide["standard"] - wide["no_std"]).reset_index()


def phase_table(gaps: pd.DataFrame, total_steps: int) -> pd.DataFrame:
    """Per split and phase: mean Delta and its s.e. across seeds, mean slope (F31)."""
    rows = []
    for (split, seed), frame in gaps.groupby(["split", "seed"]):
        table = phases.phase_gaps(frame.step, frame.delta, total_steps)
        rows += [{"split": split, "seed": seed, **r} for r in table.to_dict("records")]
        rows.append({"split": split, "seed": seed, "phase": "at 60%",
                     "mean_delta": phases.delta_at(frame.step, frame.delta, 0.6, total_steps)})
    per_seed = pd.DataFrame(rows)
    grouped = per_seed.groupby(["split", "phase"], sort=False)
    table = grouped.agg(mean_delta=("mean_delta", "mean"), slope=("slope", "mean"), seeds=("seed", "nunique"))
    table["se"] = grouped.mean_delta.std(ddof=1) / np.sqrt(table.seeds)
    table["positive_seeds"] = grouped.mean_delta.apply(lambda d: float((d > 0).mean()))
    return table.reset_index()


# ------------------------------------------------------------------ C12 (Table 1, F29)
def fisher_correlations(rows: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Same-iteration and mismatched-iteration correlations of the Fisher proxy F with V = p(1-p).

    ``rows``: :class:`~rlvr_dynamics.lm.probe_diagnostics.FisherVariance` rows (step, prompt, F, V, length).
    Same iteration: Pearson r across prompts at every probe step, pooled with the Fisher-z t-test (F29).
    Mismatched (spec E3 ambiguity, both reported): (b) F at step t against V of the *same* prompts at
    t' != t, averaged over pairs of steps; (a) a permutation null, F against V of shuffled prompts.
    ``partial_r``: same-iteration r after regressing both on completion length (spec E3 caution).
    """
    per_step = {step: frame.sort_values("prompt") for step, frame in rows.groupby("step")}
    same = [phases.pearson(f.F, f.V)[0] for f in per_step.values()]
    pooled = phases.pooled_correlation(same)
    mismatched = [phases.pearson(a.F.to_numpy(), b.V.to_numpy())[0]
                  for ta, a in per_step.items() for tb, b in per_step.items() if ta != tb and len(a) == len(b)]
    rng = np.random.default_rng(seed)
    shuffled = [phases.pearson(f.F.to_numpy(), rng.permutation(f.V.to_numpy()))[0] for f in per_step.values()]

    def residual(y: pd.Series, x: pd.Series) -> np.ndarray:
        if np.ptp(x) == 0:
            return (y - y.mean()).to_numpy()
        slope, intercept = np.polyfit(x, y, 1)
        return (y - (slope * x + intercept)).to_numpy()

    partial = [phases.pearson(residual(f.F, f.length), residual(f.V, f.length))[0] for f in per_step.values()]
    def finite_mean(values: list[float]) -> float:
        kept = [v for v in values if np.isfinite(v)]
        return float(np.mean(kept)) if kept else float("nan")

    return {
        "same_r": pooled["mean_r"], "same_p": pooled["p_value"], "iterations": pooled["iterations"],
        "same_r_steps": same,
        "mismatched_r": finite_mean(mismatched),
        "shuffled_r": finite_mean(shuffled),
        "partial_r": finite_mean(partial),
    }
