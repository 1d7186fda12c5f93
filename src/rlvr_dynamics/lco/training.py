"""Notebook 06: REINFORCE / PPO / GRPO with and without LCO on the one engine (spec §5.1 A4, §5.2 B2).

An *arm* is a host algorithm (which advantages, how often a rollout is reused) plus a policy loss
of :mod:`rlvr_dynamics.lco.losses`:

================  ==========================================================================
REINFORCE frame   V1 §5 / §6.2: Psi = the +-1 reward on every token (no baseline), each rollout
                  used for ``ppo_iterations`` updates so that the ratio of PG-IS moves.
                  ``pg`` (plain PG, V1 Fig. 9), ``pg_is`` (PPO-clipped PG-IS, V1 Fig. 6),
                  ``reinforce+lco`` (V1 LCO), and V2's sparse rule-reward LCO (Table 5):
                  ``lco_kld``, ``lco_mse``, ``lco_lch``; ``pg_is_high_ppl`` / ``pg_is_positives``
                  train PG-IS only on the high-perplexity half of the positives / on all of
                  them (V1 §6.4 Fig. 8, C9).
GRPO              group-normalised advantages, one update per rollout: ``grpo`` (TRL's loss),
                  ``grpo+lco``.
PPO               GRPO advantages with ``ppo_iterations`` clipped updates (critic-free PPO of the
                  scaled plan A4): ``ppo`` (TRL's loss), ``ppo+lco`` (rollout-anchored target).
================  ==========================================================================

Evaluation: Pass@k on held-out prompts, exact for the tiny policy's unique-answer task (teacher
forcing) and sampled (8 at temperature 0.6, G14) for GSM8K / MATH500.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from rlvr_dynamics.gradient_gap_lm import chat_prompt
from rlvr_dynamics.lm import diagnostics as diag
from rlvr_dynamics.lm.base_policy import eval_set, load_policy, rl_dataset
from rlvr_dynamics.lm.engine import EngineConfig, train_policy
from rlvr_dynamics.lm.rewards import ExactCompletionReward, SignedReward, math_verify_reward
from rlvr_dynamics.lm.sampled_eval import PassAtK
from rlvr_dynamics.paths import repo_path
from rlvr_dynamics.tasks import load_gsm8k, load_math500, math_reward


@dataclass(frozen=True)
class Arm:
    update_rule: str
    baseline: str
    policy_loss: str
    keep: str = "all"


REINFORCE_FRAME = {"update_rule": "ppo_clip", "baseline": "none"}
ARMS = {
    "pg": Arm(**REINFORCE_FRAME, policy_loss="pg"),
    "pg_is": Arm(**REINFORCE_FRAME, policy_loss="ppo_clip"),
    "reinforce+lco": Arm(**REINFORCE_FRAME, policy_loss="lco"),
    "lco_kld": Arm(**REINFORCE_FRAME, policy_loss="lco_kld"),
    "lco_mse": Arm(**REINFORCE_FRAME, policy_loss="lco_mse"),
    "lco_lch": Arm(**REINFORCE_FRAME, policy_loss="lco_lch"),
    "pg_is_high_ppl": Arm(**REINFORCE_FRAME, policy_loss="ppo_clip", keep="high_perplexity_positives"),
    "pg_is_positives": Arm(**REINFORCE_FRAME, policy_loss="ppo_clip", keep="positives"),
    "grpo": Arm("grpo", "mean", "trl"),
    "grpo+lco": Arm("grpo", "mean", "lco"),
    "ppo": Arm("ppo_clip", "mean", "trl"),
    "ppo+lco": Arm("ppo_clip", "mean", "lco"),
}
HOSTS = {"pg": "reinforce+lco", "grpo": "grpo+lco", "ppo": "ppo+lco"}  # base arm -> its +LCO arm (C11)
V1_RHO_PAIRS = [(1.2, 0.7), (1.2, 0.8), (1.7, 0.8), (1.8, 0.8), (1.8, 0.9), (1.8, 0.95), (1.9, 0.9), (1.7, 0.9)]


def check_arms(arms: list[str], name: str = "arms") -> None:
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ValueError(f"parameter {name!r} has invalid arms {bad}: allowed values are {list(ARMS)}")


# ------------------------------------------------------------------ data
@dataclass
class TaskData:
    train: Dataset
    eval_prompts: list
    eval_references: list[str]
    reward: object
    exact: bool


def task_data(params, tokenizer) -> TaskData:
    """Training prompts, held-out prompts, the +-1 reward and the Pass@k mode of ``params.task``."""
    if params.task == "arithmetic":
        prompts, references = eval_set(params.split, params.eval_prompts, params.seed)
        return TaskData(rl_dataset(params.split, params.train_prompts, params.seed), prompts, references,
                        SignedReward(ExactCompletionReward(tokenizer)), exact=True)
    root = Path(params.data_dir) if params.data_dir else None
    if params.task == "gsm8k":
        train = load_gsm8k("train", root / "gsm8k" if root else None)
        held_out = load_gsm8k("test", root / "gsm8k" if root else None)
    else:  # math500: a seeded 80/20 split of the 500 problems
        problems = load_math500(root / "math500" if root else None)
        random.Random(params.seed).shuffle(problems)
        cut = int(0.8 * len(problems))
        train, held_out = problems[:cut], problems[cut:]
    order = list(range(len(train)))
    random.Random(params.seed).shuffle(order)
    rows = [{"prompt": chat_prompt(train[i].question), "target": train[i].reference} for i in order[: params.train_prompts]]
    held_out = held_out[: params.eval_prompts]
    return TaskData(Dataset.from_list(rows), [chat_prompt(p.question) for p in held_out], [p.reference for p in held_out],
                    SignedReward(math_verify_reward), exact=False)


# ------------------------------------------------------------------ runs
def engine_config(params, arm: str, learning_rate: float, seed: int, rho: tuple[float, float] | None = None) -> EngineConfig:
    spec = ARMS[arm]
    rho_pos, rho_neg = rho or (params.rho_pos, params.rho_neg)
    return EngineConfig(
        update_rule=spec.update_rule, baseline=spec.baseline, policy_loss=spec.policy_loss, keep=spec.keep,
        loss_options={"rho_pos": rho_pos, "rho_neg": rho_neg, "beta": params.beta, "clip_epsilon": params.clip_epsilon},
        anchor=params.anchor, anchor_topk=params.anchor_topk,
        optimizer=params.optimizer, learning_rate=learning_rate, max_steps=params.steps,
        prompts_per_step=params.prompts_per_step, generations=params.generations,
        max_completion_length=params.max_completion_length, temperature=params.temperature,
        ppo_iterations=params.ppo_iterations, clip_epsilon=params.clip_epsilon, max_grad_norm=params.max_grad_norm,
        lora_rank=params.lora_rank, lora_alpha=2 * params.lora_rank if params.lora_rank else 16, seed=seed,
        bf16=params.bf16, gradient_checkpointing=params.gradient_checkpointing, use_vllm=params.use_vllm,
        progress_bar=params.progress_bar, collapse_reward=-1.0, collapse_patience=params.steps + 1,
    )


def run_arm(params, arm: str, learning_rate: float, seed: int, rho: tuple[float, float] | None = None,
            run_dir: Path | None = None) -> pd.DataFrame:
    """One training run; the per-step table with ``arm, seed, lr, rho_pos, rho_neg, seconds`` columns."""
    torch.set_num_threads(params.torch_threads)
    model, tokenizer = load_policy(repo_path(params.base_model))
    data = task_data(params, tokenizer)
    evaluation = PassAtK(data.eval_prompts, data.eval_references, tuple(params.pass_k), params.eval_every,
                         mode="exact" if data.exact else "sampled", reward=math_reward, samples=params.eval_samples,
                         temperature=params.eval_temperature, max_new_tokens=params.max_completion_length, seed=params.seed)
    config = engine_config(params, arm, learning_rate, seed, rho)
    started = time.perf_counter()
    result = train_policy(model, tokenizer, data.train, [data.reward], config,
                          [diag.GradNorms(), diag.UpdateKL(params.update_kl_every), evaluation], run_dir)
    rho_pos, rho_neg = rho or (params.rho_pos, params.rho_neg)
    return result.steps.assign(arm=arm, seed=seed, lr=learning_rate, rho_pos=rho_pos, rho_neg=rho_neg,
                               seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class Job:
    experiment: str
    arm: str
    lr: float
    seed: int
    rho: tuple[float, float] | None = None


def experiment_jobs(params) -> list[Job]:
    """Every run of the notebook; runs shared between experiments are listed once (first experiment)."""
    jobs = [Job("main", arm, params.learning_rate, params.seed + s) for s in range(params.seeds) for arm in params.arms]
    jobs += [Job("lr_sweep", arm, params.learning_rate * m, params.seed + s)
             for m in params.lr_multipliers for s in range(params.sweep_seeds) for arm in params.lr_sweep_arms]
    jobs += [Job("rho_sweep", "reinforce+lco", params.learning_rate, params.seed + s, tuple(pair))
             for pair in params.rho_pairs for s in range(params.sweep_seeds)]
    jobs += [Job("high_ppl", arm, params.learning_rate, params.seed + s)
             for s in range(params.seeds) for arm in params.perplexity_arms]
    unique: dict[tuple, Job] = {}
    for job in jobs:
        rho = job.rho if job.rho is not None and tuple(job.rho) != (params.rho_pos, params.rho_neg) else None
        unique.setdefault((job.arm, job.lr, job.seed, rho), job)
    return list(unique.values())


def run_jobs(params, jobs: list[Job], run_root: Path | None = None) -> pd.DataFrame:
    """All runs, one tidy per-step table; a progress bar over runs when ``params.progress_bar``."""
    frames = []
    for job in tqdm(jobs, desc="runs", disable=not params.progress_bar):
        run_dir = None if run_root is None else run_root / f"{job.arm}_lr{job.lr:g}_s{job.seed}" / (
            f"rho{job.rho[0]:g}_{job.rho[1]:g}" if job.rho else "")
        frames.append(run_arm(params, job.arm, job.lr, job.seed, job.rho, run_dir).assign(experiment=job.experiment))
    return pd.concat(frames, ignore_index=True)


def select(frame: pd.DataFrame, params, arm: str | None = None, lr: float | None = None,
           rho: tuple[float, float] | None = None) -> pd.DataFrame:
    """Rows (of the step table or the run summary) of ``arm`` (default: every arm) at learning rate
    ``lr`` (default: the main one) and ``rho`` (default: the main pair)."""
    lr = params.learning_rate if lr is None else lr
    rho_pos, rho_neg = rho or (params.rho_pos, params.rho_neg)
    keep = np.isclose(frame.lr, lr) & np.isclose(frame.rho_pos, rho_pos) & np.isclose(frame.rho_neg, rho_neg)
    if arm is not None:
        keep &= frame.arm == arm
    return frame[keep]


# ------------------------------------------------------------------ analysis
def eval_curve(run: pd.DataFrame, k: int = 1) -> pd.Series:
    """Pass@k against the optimizer step of one run."""
    column = f"eval/pass@{k}"
    rows = run.dropna(subset=[column])
    return pd.Series(rows[column].to_numpy(), index=rows.step.to_numpy())


def run_summary(run: pd.DataFrame, ks: list[int], samples_per_step: int) -> dict[str, float]:
    """Accuracy, collapse and gradient-norm volatility of one run (C8's criteria)."""
    curve = eval_curve(run)
    grad = run["grad_norms/total_preclip"].dropna().to_numpy()
    late = grad[len(grad) // 2 :]
    late = late[np.isfinite(late)]
    log_steps = np.diff(np.log(np.clip(late, 1e-12, None)))
    peak = float(curve.max())
    summary = {
        "initial_pass@1": float(curve.iloc[0]), "peak_pass@1": peak, "final_pass@1": float(curve.iloc[-1]),
        "collapsed": bool(peak > 0 and curve.iloc[-1] < 0.8 * peak and curve.idxmax() < curve.index[-1]),
        "grad_max_over_median": float(late.max() / np.median(late)) if len(late) else float("nan"),
        "grad_log_step_std": float(np.std(log_steps)) if len(log_steps) else float("nan"),
        "grad_median_late": float(np.median(late)) if len(late) else float("nan"),
        "action_prob_final": float(run["policy/action_prob"].dropna().iloc[-1]),
        "entropy_final": float(run["entropy"].dropna().iloc[-1]) if "entropy" in run else float("nan"),
        "update_kl_mean": float(run["policy/update_kl"].mean()) if "policy/update_kl" in run else float("nan"),
        "seconds": float(run.seconds.iloc[0]),
        "samples": float(run.step.max() * samples_per_step),
    }
    for k in ks:
        summary[f"final_pass@{k}"] = float(eval_curve(run, k).iloc[-1])
    return summary


def summary_table(steps: pd.DataFrame, params) -> pd.DataFrame:
    """One row per run (arm, lr, seed, rho) with :func:`run_summary`."""
    per_step = params.prompts_per_step * params.generations
    rows = []
    for key, run in steps.groupby(["arm", "lr", "seed", "rho_pos", "rho_neg"], sort=False):
        rows.append(dict(zip(("arm", "lr", "seed", "rho_pos", "rho_neg"), key, strict=True))
                    | run_summary(run, params.pass_k, per_step))
    return pd.DataFrame(rows)


def mean_over_seeds(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    grouped = table.groupby(["arm", "lr", "rho_pos", "rho_neg"], sort=False)[columns]
    return grouped.mean().join(grouped.std(ddof=1), rsuffix="_std").join(grouped.size().rename("seeds")).reset_index()


def samples_to_reach(curve: pd.Series, target: float, samples_per_step: int) -> float:
    """Training samples until a Pass@1 curve (indexed by step) first reaches ``target`` (inf if never; V2 Fig. 7)."""
    reached = curve[curve >= target - 1e-12]
    return float(reached.index[0] * samples_per_step) if len(reached) else float("inf")


def main(argv: list[str] | None = None) -> int:
    """One run of notebook 06 outside the notebook, for ``accelerate launch`` on several GPUs.

    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m rlvr_dynamics.lco.training \\
        --profile paper --arm grpo+lco --lr 5e-6 --run-dir results/launched/lco-grpo
    """
    import argparse
    import dataclasses
    import json

    from rlvr_dynamics.config import ParameterError
    from rlvr_dynamics.pipeline import ROOT, load_params, resolve_stage_params

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="cpu / gpu / paper (default: params.yaml's)")
    parser.add_argument("--arm", default="grpo+lco", help=f"one of {list(ARMS)}")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: learning_rate)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the profile's)")
    parser.add_argument("--run-dir", type=Path, required=True, help="where steps.csv and dvclive/ go")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--dry-run", action="store_true", help="resolve and validate everything, train nothing")
    args = parser.parse_args(argv)
    try:
        _, params = resolve_stage_params("06_lco_training", load_params(args.params), args.profile)
        check_arms([args.arm], "--arm")
        lr = args.lr if args.lr is not None else params.learning_rate
        seed = args.seed if args.seed is not None else params.seed
        engine = engine_config(params, args.arm, lr, seed)
    except (ParameterError, ValueError) as error:
        print(f"error: {error}")
        return 2
    if args.dry_run:
        print(json.dumps(dataclasses.asdict(engine), default=str))
        return 0
    steps = run_arm(params, args.arm, lr, seed, run_dir=args.run_dir)
    print(f"{steps.outcome.iloc[-1]}; steps table in {args.run_dir / 'steps.csv'}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
