"""Engine overhead against plain TRL: the same tiny-LM GRPO run, side by side.

Runs the ~0.13M-parameter character Llama (random init) for the same number of steps with
(a) plain ``trl.GRPOTrainer``, (b) our ``RLVRTrainer`` with the step-level diagnostics on
(pre-clip gradient norms per group, group statistics, reward-advantage covariances, the paper's
gap estimator incl. the <dtheta, g> variant, divergence guard, per-step table), and separately
(c) with the exact-gap evaluation (256 prompts, one backward per step) and (d) per-prompt probe
gradients (8 prompts every 10 steps), which cost more by design. Prints seconds per step and the
ratio to plain TRL (target for (b): <= 1.10). Each variant is timed ``--repeats`` times, best kept.

    python benchmarks/engine_overhead.py [--steps 60] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import GRPOTrainer

from rlvr_dynamics.lm import diagnostics as diag
from rlvr_dynamics.lm.base_policy import eval_set, rl_dataset
from rlvr_dynamics.lm.engine import EngineConfig, grpo_config, train_policy
from rlvr_dynamics.lm.rewards import ExactCompletionReward
from rlvr_dynamics.lm.tiny import build_char_tokenizer, build_tiny_llama


def plain_trl(config: EngineConfig, tokenizer, dataset) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(
            model=build_tiny_llama(tokenizer, seed=config.seed),
            reward_funcs=[ExactCompletionReward(tokenizer)],
            args=grpo_config(config, "/tmp/rlvr-bench"),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def engine(config: EngineConfig, tokenizer, dataset, diagnostics) -> float:
    model = build_tiny_llama(tokenizer, seed=config.seed)
    start = time.perf_counter()
    train_policy(model, tokenizer, dataset, [ExactCompletionReward(tokenizer)], config, diagnostics)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = build_char_tokenizer()
    dataset = rl_dataset("medium", 2048)
    prompts, targets = eval_set("medium", 256)
    config = EngineConfig(max_steps=args.steps, prompts_per_step=16, generations=8, max_completion_length=6, learning_rate=0.01)
    variants = {
        "plain TRL GRPOTrainer": lambda: plain_trl(config, tokenizer, dataset),
        "engine, step diagnostics": lambda: engine(
            config, tokenizer, dataset, [diag.GradNorms(), diag.GroupStats(), diag.PaperGapEstimator(inner=True)]
        ),
        "engine + exact gap (256 prompts)": lambda: engine(
            config,
            tokenizer,
            dataset,
            [diag.GradNorms(), diag.GroupStats(), diag.PaperGapEstimator(inner=True), diag.ExactGap(prompts, targets)],
        ),
        "engine + probe gradients (8 / 10 steps)": lambda: engine(
            config,
            tokenizer,
            dataset,
            [
                diag.GradNorms(),
                diag.GroupStats(),
                diag.PaperGapEstimator(inner=True),
                diag.ProbeGradients(prompts[:8], targets[:8], every=10),
            ],
        ),
    }
    best = {name: float("inf") for name in variants}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit every variant
        for name, run in variants.items():
            best[name] = min(best[name], run())
    baseline = best["plain TRL GRPOTrainer"]
    print(f"{args.steps} steps, 16 prompts x 8 generations x <= 6 tokens, {args.threads} threads, best of {args.repeats}")
    print(f"{'variant':42s} {'s/step':>8s} {'steps/s':>8s} {'ratio':>6s}")
    for name, seconds in best.items():
        print(f"{name:42s} {seconds / args.steps:8.4f} {args.steps / seconds:8.1f} {seconds / baseline:6.2f}")


if __name__ == "__main__":
    main()
