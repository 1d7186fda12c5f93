"""Notebook 08: the eight weighting methods on the one engine, three objectives (spec E0-E2, E5, E7).

A run is (model variant, estimator, method, seed). The estimators follow E0: ``reinforce_pp`` is
verl's REINFORCE++ (batch-whitened scores) with clipping off (ratio bounds 1 -/+ 100), ``grpo`` the
group-normalised advantage with PPO clipping eps = 0.2; both reuse each rollout for
``updates_per_batch`` optimizer steps ([code]: two mini-batch updates per step), so the clipped
GRPO surrogate and CTWA's post-update ratios move. The KL coefficient of each method is Table 1's
(0.001 for CTWA, Linear, Dynamic, Tchebycheff; 0 for Lagrangian, MGDA, GradNorm, PAMA) times
``kl_scale``.

Tasks: ``running_sum`` (the tiny character policy trained here on the style mixture of
:mod:`rlvr_dynamics.multiobjective.task`; each model variant is a style mixture, the stand-in for the
paper's three Qwen models, C2), ``math500`` (the 300/100 train/test split of the released code,
rebuilt with seed 42, E0) and ``gsm8k``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from rlvr_dynamics.lm.base_policy import load_policy
from rlvr_dynamics.lm.diagnostics import GradNorms
from rlvr_dynamics.lm.engine import EngineConfig, train_policy
from rlvr_dynamics.multiobjective import task as style_task
from rlvr_dynamics.multiobjective.control import ObjectiveControl
from rlvr_dynamics.multiobjective.evaluation import ObjectiveEval
from rlvr_dynamics.multiobjective.methods import make_method
from rlvr_dynamics.multiobjective.rewards import ConcisenessReward, objective_rewards
from rlvr_dynamics.paths import repo_path
from rlvr_dynamics.tasks import load_gsm8k, load_math500

MATH_SUFFIX = " Let's think step by step and output the final answer within \\boxed{}."  # E0 prompt [code]
CLIP_EPSILON = {"reinforce_pp": 100.0, "grpo": 0.2}  # E0: clip ratios 100 = no clipping; GRPO eps 0.2


def math500_split(n: int = 500, seed: int = 42) -> dict[str, np.ndarray]:
    """E0 [code]: indices of the train (300), test (100) and val (100) splits of MATH500 in HF order."""
    perm = np.random.default_rng(seed).permutation(n)
    rest, train = perm[: n - 300], perm[n - 300 :]
    inner = np.random.default_rng(seed).permutation(len(rest))
    half = len(rest) // 2
    return {"train": train, "val": rest[inner[:half]], "test": rest[inner[half:]]}


# ------------------------------------------------------------------ data and models
@dataclass
class TaskData:
    train: Dataset
    eval_prompts: list
    eval_targets: list[str]


def task_data(params) -> TaskData:
    if params.task == "running_sum":
        prompts, targets = style_task.eval_set(params.eval_prompts, params.seed)
        return TaskData(style_task.rl_dataset(params.train_prompts, params.seed), prompts, targets)
    root = Path(params.data_dir) if params.data_dir else None

    def chat(question: str) -> list[dict]:
        return [{"role": "user", "content": question + MATH_SUFFIX}]

    if params.task == "math500":
        problems = load_math500(root / "math500" if root else None)
        split = math500_split(len(problems))
        train, held_out = [problems[i] for i in split["train"]], [problems[i] for i in split["test"]]
    else:
        train = load_gsm8k("train", root / "gsm8k" if root else None)[: params.train_prompts]
        held_out = load_gsm8k("test", root / "gsm8k" if root else None)
    held_out = held_out[: params.eval_prompts]
    rows = [{"prompt": chat(p.question), "target": p.reference} for p in train[: params.train_prompts]]
    return TaskData(Dataset.from_list(rows), [chat(p.question) for p in held_out], [p.reference for p in held_out])


def base_policies(params, work_dir: Path) -> dict[str, Path]:
    """Variant name -> model folder: the tiny style policies trained here (once per variant, kept in
    ``work_dir/base_models``) or ``base_model``."""
    (work_dir / "base_models").mkdir(parents=True, exist_ok=True)
    if params.base_model:
        return {"base": repo_path(params.base_model)}
    folders = {}
    for variant in params.model_variants:
        folder = work_dir / "base_models" / variant
        if not (folder / "config.json").exists():
            config = style_task.StylePolicyConfig(mix=variant, max_steps=params.sft_steps, seed=params.seed)
            model, tokenizer, _ = style_task.train_style_policy(config, Path(tempfile.mkdtemp(prefix="ctwa-sft-")))
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        folders[variant] = folder
    return folders


# ------------------------------------------------------------------ runs
def engine_config(params, method_name: str, estimator: str, seed: int) -> EngineConfig:
    kl = make_method(method_name).kl_coefficient * params.kl_scale
    return EngineConfig(
        update_rule="ppo_clip", optimizer=params.optimizer, learning_rate=params.learning_rate,
        max_steps=params.steps * params.updates_per_batch, prompts_per_step=params.prompts_per_step,
        generations=params.generations, max_completion_length=params.max_completion_length, temperature=params.temperature,
        ppo_iterations=params.updates_per_batch, clip_epsilon=CLIP_EPSILON[estimator], max_grad_norm=params.max_grad_norm,
        beta=kl, lora_rank=params.lora_rank, lora_alpha=2 * params.lora_rank if params.lora_rank else 16, seed=seed,
        bf16=params.bf16, gradient_checkpointing=params.gradient_checkpointing, use_vllm=params.use_vllm,
        progress_bar=params.progress_bar, collapse_patience=params.steps * params.updates_per_batch + 1,
    )


def method_options(params, method_name: str, ctwa_weight_lr: float | None = None) -> dict:
    if method_name == "ctwa":
        eta = params.ctwa_weight_lr if ctwa_weight_lr is None else ctwa_weight_lr
        return {"targets": tuple(params.ctwa_targets), "weight_learning_rate": eta, "tau": params.ctwa_tau,
                "gate_targets": tuple(params.ctwa_gates) if params.ctwa_gate else None}
    if method_name == "dynamic":
        return {"regularization_factor": params.dynamic_regularization}
    return {}


def run_method(params, model_dir: Path, method_name: str, estimator: str, seed: int, run_dir: Path | None = None,
               ctwa_weight_lr: float | None = None) -> pd.DataFrame:
    """One training run: the per-step table (engine metrics, method state, greedy test objectives).
    ``ctwa_weight_lr`` overrides CTWA's eta_lambda; such a run is labelled ``ctwa_eta<value>``."""
    torch.set_num_threads(params.torch_threads)
    model, tokenizer = load_policy(model_dir)
    data = task_data(params)
    conciseness = ConcisenessReward()
    method = make_method(method_name, **method_options(params, method_name, ctwa_weight_lr))
    control = ObjectiveControl(method, estimator, CLIP_EPSILON[estimator],
                               gradient_cosines=method_name in params.gradient_cosine_methods)
    evaluation = ObjectiveEval(data.eval_prompts, data.eval_targets, conciseness, params.eval_every * params.updates_per_batch,
                               params.eval_max_new_tokens)
    config = engine_config(params, method_name, estimator, seed)
    started = time.perf_counter()
    result = train_policy(model, tokenizer, data.train, objective_rewards(conciseness), config,
                          [GradNorms(), control, evaluation], run_dir)
    steps = result.steps
    steps["generation_step"] = np.ceil(steps.step / params.updates_per_batch).astype(int)
    label = method_name if ctwa_weight_lr is None else f"ctwa_eta{ctwa_weight_lr:g}"
    return steps.assign(method=label, estimator=estimator, seed=seed, outcome=result.outcome,
                        seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class Job:
    variant: str
    estimator: str
    method: str
    seed: int
    ctwa_weight_lr: float | None = None


def experiment_jobs(params, variants: list[str]) -> list[Job]:
    """Main grid on the first variant (every method x estimator x seed), the extra CTWA arm
    (``ctwa_fast_weight_lr``, first estimator) and the model-dependence runs (``variant_methods`` on the
    other variants, first estimator)."""
    main, others = variants[0], variants[1:]
    jobs = [Job(main, e, m, params.seed + s) for e in params.estimators for s in range(params.seeds) for m in params.methods]
    if params.ctwa_fast_weight_lr > 0:
        eta = params.ctwa_fast_weight_lr
        jobs += [Job(main, params.estimators[0], "ctwa", params.seed + s, eta) for s in range(params.seeds)]
    jobs += [Job(v, params.estimators[0], m, params.seed + s) for v in others for s in range(params.seeds)
             for m in params.variant_methods]
    return jobs


def run_jobs(params, jobs: list[Job], models: dict[str, Path], run_root: Path | None = None) -> pd.DataFrame:
    frames = []
    for job in tqdm(jobs, desc="runs", disable=not params.progress_bar):
        label = job.method if job.ctwa_weight_lr is None else f"ctwa_eta{job.ctwa_weight_lr:g}"
        run_dir = None if run_root is None else run_root / f"{job.variant}_{job.estimator}_{label}_s{job.seed}"
        frames.append(run_method(params, models[job.variant], job.method, job.estimator, job.seed, run_dir,
                                 job.ctwa_weight_lr).assign(variant=job.variant))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------ analysis
EVAL_COLUMNS = {"eval/accuracy": "accuracy", "eval/length": "length", "eval/clarity": "clarity"}


def eval_curves(steps: pd.DataFrame) -> pd.DataFrame:
    """Tidy test curves: one row per (variant, estimator, method, seed, evaluation step)."""
    keys = ["variant", "estimator", "method", "seed"]
    rows = steps.dropna(subset=list(EVAL_COLUMNS))[keys + ["generation_step", *EVAL_COLUMNS]]
    return rows.rename(columns=EVAL_COLUMNS | {"generation_step": "step"}).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    """One run of notebook 08 outside the notebook, for ``accelerate launch`` on several GPUs.

    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m rlvr_dynamics.multiobjective.training \\
        --profile paper --method ctwa --estimator reinforce_pp --run-dir results/launched/ctwa
    """
    import argparse
    import dataclasses
    import json

    from rlvr_dynamics.config import CTWA_ESTIMATORS, CTWA_METHODS, ParameterError
    from rlvr_dynamics.pipeline import ROOT, load_params, resolve_stage_params

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="cpu / gpu / paper (default: params.yaml's)")
    parser.add_argument("--method", default="ctwa", help=f"one of {list(CTWA_METHODS)}")
    parser.add_argument("--estimator", default="reinforce_pp", help=f"one of {list(CTWA_ESTIMATORS)}")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the profile's)")
    parser.add_argument("--run-dir", type=Path, required=True, help="where steps.csv and dvclive/ go")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--dry-run", action="store_true", help="resolve and validate everything, train nothing")
    args = parser.parse_args(argv)
    try:
        _, params = resolve_stage_params("08_ctwa_training", load_params(args.params), args.profile)
        if args.method not in CTWA_METHODS:
            raise ValueError(f"--method {args.method!r} is invalid: allowed values are {list(CTWA_METHODS)}")
        if args.estimator not in CLIP_EPSILON:
            raise ValueError(f"--estimator {args.estimator!r} is invalid: allowed values are {list(CTWA_ESTIMATORS)}")
        seed = args.seed if args.seed is not None else params.seed
        engine = engine_config(params, args.method, args.estimator, seed)
        make_method(args.method, **method_options(params, args.method))
    except (ParameterError, ValueError) as error:
        print(f"error: {error}")
        return 2
    if args.dry_run:
        print(json.dumps(dataclasses.asdict(engine), default=str))
        return 0
    models = base_policies(params, args.run_dir)
    steps = run_method(params, next(iter(models.values())), args.method, args.estimator, seed, run_dir=args.run_dir)
    print(f"{steps.outcome.iloc[-1]}; steps table in {args.run_dir / 'steps.csv'}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
