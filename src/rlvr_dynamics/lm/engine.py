"""Run one RL training job: build the ``GRPOConfig``, the trainer and the callbacks, train, collect tables.

:class:`EngineConfig` holds every knob a notebook varies (update rule, optimizer, LoRA, batch
shape, generation, scale-out switches); :func:`grpo_config` translates it into TRL's
``GRPOConfig`` with every default that changed across TRL versions pinned explicitly (spec gap 9);
:func:`train_policy` runs :class:`~rlvr_dynamics.lm.trainer.RLVRTrainer` and returns the per-step
table and the outcome (``completed`` / ``diverged: ...`` / ``collapsed: ...``), never raising on
divergence. ``policy_loss`` picks the loss by name: ``trl`` (the update rule's own TRL loss) or a
logit-level loss of :mod:`rlvr_dynamics.lco.losses` (SFT, PG, PG-IS, PPO-clip, LCO, LCO-KLD/MSE/LCH),
the update rule then only supplying the advantages.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import GRPOConfig

from rlvr_dynamics.lco.losses import LOSSES, LossOptions
from rlvr_dynamics.lm.diagnostics import Diagnostic, DivergenceGuard, StepTable
from rlvr_dynamics.lm.logit_loss import AGGREGATIONS, ANCHORS, SELECTIONS, LogitLoss
from rlvr_dynamics.lm.trainer import BASELINES, UPDATE_RULES, RLVRTrainer, TokenLoss

OPTIMIZERS = {"sgd": "sgd", "adamw": "adamw_torch"}
SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class EngineConfig:
    """One RL run. ``prompts_per_step`` x ``generations`` completions form one optimizer step."""

    update_rule: str = "grpo"
    baseline: str = "mean"
    policy_loss: str = "trl"
    loss_options: dict = field(default_factory=dict)  # LossOptions fields (rho_pos, beta, ...)
    anchor: str = "rollout"
    anchor_topk: int = 0
    loss_aggregation: str = "token_mean"
    keep: str = "all"  # sequences the logit loss trains on (LogitLoss.keep)
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    lr_schedule: str = "constant"
    max_steps: int = 100
    prompts_per_step: int = 16
    generations: int = 8
    max_completion_length: int = 8
    temperature: float = 1.0
    ppo_iterations: int = 4
    clip_epsilon: float = 0.2
    max_grad_norm: float = 0.0
    beta: float = 0.0
    lora_rank: int = 0
    lora_alpha: int = 16
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    progress_bar: bool = False
    collapse_patience: int = 20
    collapse_reward: float = 0.0  # collapse: batch mean reward <= this for collapse_patience steps (-1 for +-1 rewards)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        allowed = {
            "update_rule": tuple(UPDATE_RULES),
            "baseline": BASELINES,
            "optimizer": tuple(OPTIMIZERS),
            "lr_schedule": SCHEDULES,
            "vllm_mode": ("colocate", "server"),
            "policy_loss": ("trl", *LOSSES),
            "anchor": ANCHORS,
            "loss_aggregation": AGGREGATIONS,
            "keep": SELECTIONS,
        }
        for name, values in allowed.items():
            if getattr(self, name) not in values:
                raise ValueError(f"{name} = {getattr(self, name)!r} is invalid: allowed values are {list(values)}")
        for name in ("max_steps", "prompts_per_step", "max_completion_length", "ppo_iterations", "collapse_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)!r} is invalid: allowed values are integers >= 1")
        if self.generations < 2:
            raise ValueError(f"generations = {self.generations} is invalid: allowed values are integers >= 2")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate = {self.learning_rate} is invalid: allowed values are numbers > 0")
        self.logit_loss()  # validates loss_options and anchor_topk

    def logit_loss(self) -> LogitLoss | None:
        """The :class:`LogitLoss` of ``policy_loss`` (``None`` for TRL's own loss)."""
        unknown = sorted(set(self.loss_options) - {f.name for f in dataclasses.fields(LossOptions)})
        if unknown:
            raise ValueError(f"loss_options {unknown} are unknown: allowed keys are "
                             f"{[f.name for f in dataclasses.fields(LossOptions)]}")
        options = LossOptions(**self.loss_options)
        if self.policy_loss == "trl":
            return None
        return LogitLoss(self.policy_loss, options, self.anchor, self.anchor_topk, self.loss_aggregation, self.keep)


def grpo_config(config: EngineConfig, output_dir: str | Path) -> GRPOConfig:
    """TRL's config for ``config``; one generation batch per optimizer step (ppo_clip: reused K times)."""
    rule = UPDATE_RULES[config.update_rule]
    on_gpu = torch.cuda.is_available()
    extra = dict(config.extra)
    if config.gradient_checkpointing and on_gpu:
        extra["gradient_checkpointing"] = True
    with warnings.catch_warnings():  # TRL/transformers deprecation notices about fields we do not set
        warnings.simplefilter("ignore", FutureWarning)
        return GRPOConfig(
            output_dir=str(output_dir),
            loss_type=rule.loss_type,
            scale_rewards=rule.scale_rewards,
            num_iterations=config.ppo_iterations if config.update_rule == "ppo_clip" else 1,
            epsilon=config.clip_epsilon,
            beta=config.beta,
            num_generations=config.generations,
            per_device_train_batch_size=config.prompts_per_step * config.generations,
            gradient_accumulation_steps=1,
            steps_per_generation=1,
            max_completion_length=config.max_completion_length,
            temperature=config.temperature,
            top_p=1.0,
            top_k=0,
            optim=OPTIMIZERS[config.optimizer],
            learning_rate=config.learning_rate,
            lr_scheduler_type=config.lr_schedule,
            warmup_steps=0,
            weight_decay=0.0,
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            max_grad_norm=config.max_grad_norm,
            max_steps=config.max_steps,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=config.seed,
            data_seed=config.seed,
            bf16=config.bf16 and on_gpu,
            use_cpu=not on_gpu,
            use_vllm=config.use_vllm,
            vllm_mode=config.vllm_mode,
            disable_tqdm=not config.progress_bar,
            mask_truncated_completions=False,
            shuffle_dataset=True,
            **extra,
        )


def lora_config(config: EngineConfig):
    """A peft ``LoraConfig`` on every linear layer, or ``None`` for full fine-tuning (``lora_rank = 0``)."""
    if config.lora_rank <= 0:
        return None
    from peft import LoraConfig

    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")


@dataclass
class RunResult:
    steps: pd.DataFrame
    outcome: str
    trainer: RLVRTrainer
    diagnostics: dict[str, Diagnostic]

    @property
    def model(self) -> PreTrainedModel:
        return self.trainer.model


def train_policy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    reward_funcs: list,
    config: EngineConfig,
    diagnostics: list[Diagnostic] = (),
    run_dir: str | Path | None = None,
    reward_weights: list[float] | None = None,
    token_loss: TokenLoss | None = None,
) -> RunResult:
    """Train ``model`` with GRPO-family updates; log per step; return the table and outcome.

    ``train_dataset`` has a ``prompt`` column plus any columns the reward functions read
    (e.g. ``target``). With ``run_dir`` the per-step table goes to ``run_dir/steps.csv`` and DVCLive
    logs to ``run_dir/dvclive``; without it nothing is written.
    """
    guard = DivergenceGuard(config.collapse_patience, config.collapse_reward)
    diagnostics = [guard, *diagnostics]
    work_dir = Path(run_dir) if run_dir is not None else Path("/tmp/rlvr-dynamics-scratch")
    args = grpo_config(config, work_dir / "trainer")
    if reward_weights is not None:
        args.reward_weights = list(reward_weights)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if config.beta > 0 and config.lora_rank <= 0 and not model.config._name_or_path:
        # TRL builds the KL reference from the policy's path; an in-memory model gets a saved copy
        model.save_pretrained(work_dir / "reference_model")
        model.config._name_or_path = str(work_dir / "reference_model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = RLVRTrainer(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=lora_config(config),
            update_rule=config.update_rule,
            baseline=config.baseline,
            token_loss=token_loss or config.logit_loss(),
        )
    for diagnostic in diagnostics:
        trainer.add_callback(diagnostic.bind(trainer))

    def initial() -> dict[str, float]:
        values: dict[str, float] = {}
        for diagnostic in diagnostics:
            values |= diagnostic.initial_metrics()
        return values

    table = StepTable(initial)
    trainer.add_callback(table)
    if not config.progress_bar:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    live = None
    if run_dir is not None:
        from dvclive import Live
        from transformers.integrations import DVCLiveCallback

        live = Live(dir=str(work_dir / "dvclive"), save_dvc_exp=False, dvcyaml=False)
        live.log_params({k: v for k, v in dataclasses.asdict(config).items() if k not in ("extra", "loss_options")}
                        | {f"loss/{k}": v for k, v in config.loss_options.items()})
        trainer.add_callback(DVCLiveCallback(live=live))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    steps = pd.DataFrame(table.rows)
    steps["outcome"] = guard.outcome
    if run_dir is not None:
        steps.to_csv(work_dir / "steps.csv", index=False)
        (work_dir / "outcome.json").write_text(json.dumps({"outcome": guard.outcome, "steps": int(steps.step.max())}))
    return RunResult(steps=steps, outcome=guard.outcome, trainer=trainer, diagnostics={d.name: d for d in diagnostics})
