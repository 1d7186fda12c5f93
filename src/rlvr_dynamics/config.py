"""Notebook parameters: one dataclass per notebook, validated before any work starts.

Each field carries its help text and its allowed values in ``metadata`` (CleanRL style).
The same dataclass validates the values DVC takes from ``params.yaml`` (in
:mod:`rlvr_dynamics.pipeline`, before papermill starts) and the values a notebook's own
``parameters`` cell holds (at the top of the notebook).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROFILES = ("cpu", "gpu", "paper")


def param(default: Any, help: str, minimum: float | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with help text and allowed values."""
    metadata = {"help": help, "minimum": minimum, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class ParameterError(ValueError):
    """A parameter is unknown or has a value outside its allowed set."""


def _allowed(f: dataclasses.Field, kind: str) -> str:
    if f.metadata.get("choices"):
        return f"one of {list(f.metadata['choices'])}"
    bound = f.metadata.get("minimum")
    return f"{kind}" + (f" >= {bound}" if bound is not None else "")


def _check_scalar(name: str, value: Any, kind: type, f: dataclasses.Field) -> Any:
    description = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}[kind]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    choices, minimum = f.metadata.get("choices"), f.metadata.get("minimum")
    if ok and choices is not None:
        ok = value in choices
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        raise ParameterError(f"parameter {name!r} = {value!r} is invalid: allowed values are {_allowed(f, description)}")
    return value


def validate(cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """Build ``cls`` from ``values``, raising :class:`ParameterError` naming the bad key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}{where}; allowed keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    checked = {}
    for name, value in values.items():
        kind = hints[name]
        if typing.get_origin(kind) is list:
            (inner,) = typing.get_args(kind)
            if not isinstance(value, list | tuple) or not value:
                raise ParameterError(f"parameter {name!r} = {value!r}{where} must be a non-empty list")
            checked[name] = [_check_scalar(f"{name}[{i}]", v, inner, fields[name]) for i, v in enumerate(value)]
        else:
            checked[name] = _check_scalar(name, value, kind, fields[name])
    return cls(**checked)


def from_namespace(cls: type, namespace: Mapping[str, Any]) -> Any:
    """Collect a notebook's parameter variables (e.g. ``globals()``) into a validated ``cls``."""
    return validate(cls, {f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace})


def check_profile(profile: Any) -> str:
    if profile not in PROFILES:
        raise ParameterError(f"parameter 'profile' = {profile!r} is invalid: allowed values are {list(PROFILES)}")
    return profile


@dataclass
class GradientGapBanditParams:
    """Parameters of ``notebooks/01_gradient_gap_bandits.ipynb``."""

    seed: int = param(0, "master seed of every random draw in the notebook", minimum=0)
    mab_arms: int = param(100, "E2: number of arms of the MAB", minimum=2)
    mab_steps: int = param(10_000, "E2: exact REINFORCE steps", minimum=1)
    mab_step_sizes: list[float] = param([0.1, 1.0, 10.0], "E2: step sizes eta", minimum=0.0)
    cb_seeds: int = param(5, "E1: seeds (each redraws scores, pool, eval set, theta_0)", minimum=1)
    cb_steps: int = param(5000, "E1: exact REINFORCE steps K", minimum=1)
    cb_eval_contexts: int = param(500, "E1: fresh evaluation contexts", minimum=1)
    cb_record_every: int = param(10, "E1: record J, M, R every this many steps", minimum=1)
    collapse_steps: int = param(200, "E4/E5: steps of the Theorem 2/4 constructions", minimum=2)
    x1_steps: int = param(20_000, "X1: exact REINFORCE steps per step size", minimum=1)
    x1_grid_points: int = param(120, "X1: log-spaced step sizes in [0.5, 200]", minimum=4)
    x3_lengths: list[int] = param([4, 8, 16, 32, 64], "X3: response lengths T", minimum=1)
    x3_step_sizes: int = param(15, "X3: log-spaced step sizes alpha in [10^0.5, 10^4]", minimum=3)
    x3_seeds: int = param(32, "X3: seeds per (rule, T, alpha)", minimum=1)
    x3_steps: int = param(300, "X3: SGD steps per run", minimum=1)
    x4_length: int = param(8, "X4: response length T", minimum=1)
    x4_seeds: int = param(16, "X4: seeds per (rule, alpha)", minimum=1)
    x4_steps: int = param(1000, "X4: SGD steps per run", minimum=1)
    x4_step_sizes: list[float] = param([3.0, 10.0, 30.0, 100.0], "X4: Dr. GRPO step sizes (GRPO matched at J0)", minimum=0.0)


DIFFICULTY_NAMES = ("easy", "medium", "hard")
UPDATE_RULE_NAMES = ("grpo", "no_std", "dr_grpo", "dr_grpo_std", "reinforce", "ppo_clip")


@dataclass
class BasePolicyParams:
    """Parameters of ``notebooks/00_base_policy.ipynb`` (SFT warm start of the tiny Llama)."""

    seed: int = param(0, "seed of the initialisation, the SFT data and the evaluation prompts", minimum=0)
    difficulties: list[str] = param(list(DIFFICULTY_NAMES), "arithmetic difficulties mixed in SFT", choices=DIFFICULTY_NAMES)
    sft_examples: int = param(2000, "SFT examples per difficulty", minimum=1)
    eval_prompts: int = param(256, "held-out prompts per difficulty for the exact J", minimum=1)
    hidden_size: int = param(64, "d_model of the tiny Llama", minimum=8)
    num_layers: int = param(2, "transformer layers", minimum=1)
    num_heads: int = param(4, "attention heads", minimum=1)
    intermediate_size: int = param(256, "MLP width", minimum=8)
    learning_rate: float = param(1e-3, "SFT learning rate (AdamW)", minimum=0.0)
    batch_size: int = param(64, "SFT batch size", minimum=1)
    max_steps: int = param(3000, "SFT step budget", minimum=1)
    eval_every: int = param(25, "evaluate held-out J every this many steps", minimum=1)
    target_success: float = param(0.3, "stop SFT when mean held-out J reaches this", minimum=0.0)
    torch_threads: int = param(2, "torch CPU threads", minimum=1)


@dataclass
class GradientGapGRPOParams:
    """Parameters of ``notebooks/02_gradient_gap_grpo.ipynb`` (E3 / Fig. 2 and X2 on the LM engine)."""

    seed: int = param(0, "seed of data order, sampling and evaluation sets", minimum=0)
    base_model: str = param("results/00_base_policy/model", "base policy: a folder (repo-relative) or a hub id")
    task: str = param("arithmetic", "arithmetic (unique answers, exact gap) or a real task",
                      choices=("arithmetic", "arithmetic_chat", "gsm8k", "math500"))
    data_dir: str = param("", "local data root holding gsm8k/ and math500/ ('' = $RLVR_DATA_DIR or the hub)")
    difficulties: list[str] = param(list(DIFFICULTY_NAMES), "task difficulties, one Fig. 2 panel each", choices=DIFFICULTY_NAMES)
    optimizer: str = param("sgd", "sgd (plain steps, as in Eq. 3) or adamw", choices=("sgd", "adamw"))
    lr_schedule: str = param("constant", "learning-rate schedule", choices=("constant", "linear", "cosine"))
    main_learning_rate: float = param(0.01, "learning rate of the Fig. 2 runs", minimum=0.0)
    sweep_difficulty: str = param("medium", "difficulty of the learning-rate sweep", choices=DIFFICULTY_NAMES)
    learning_rates: list[float] = param([0.001, 0.01, 0.1, 0.3], "learning-rate sweep (GRPO)", minimum=0.0)
    compare_rules: list[str] = param(["dr_grpo"], "update rules compared with GRPO on the sweep difficulty",
                                     choices=UPDATE_RULE_NAMES)
    compare_learning_rates: list[float] = param([0.01, 0.1], "learning rates of the rule comparison", minimum=0.0)
    steps: int = param(150, "optimizer steps per run", minimum=1)
    prompts_per_step: int = param(32, "prompts per step", minimum=1)
    generations: int = param(8, "completions per prompt (G)", minimum=2)
    max_completion_length: int = param(5, "max new tokens", minimum=1)
    max_grad_norm: float = param(0.0, "gradient clipping (0 = off, the theory's plain steps)", minimum=0.0)
    lora_rank: int = param(0, "LoRA rank (0 = full fine-tuning)", minimum=0)
    bf16: bool = param(False, "bf16 on GPU")
    gradient_checkpointing: bool = param(False, "gradient checkpointing on GPU")
    use_vllm: bool = param(False, "TRL's vLLM generation (paper profile)")
    train_prompts: int = param(4096, "arithmetic: RL training prompts per difficulty", minimum=1)
    eval_prompts: int = param(256, "fixed evaluation prompts (exact J, or sampled accuracy)", minimum=1)
    eval_samples: int = param(5, "real tasks: samples per held-out question (mean@k)", minimum=1)
    eval_every: int = param(25, "real tasks: evaluate accuracy every this many steps", minimum=1)
    probe_prompts: int = param(8, "probe prompts for per-prompt gradient cosines (0 = off)", minimum=0)
    probe_every: int = param(10, "probe every this many steps", minimum=1)
    paper_gap_inner: bool = param(True, "also log the optimizer-aware estimator <dtheta, g> (stores 2 parameter copies)")
    torch_threads: int = param(2, "torch CPU threads", minimum=1)
    progress_bar: bool = param(False, "show TRL's per-step progress bar")


@dataclass
class GRPONormalizationTheoryParams:
    """Parameters of ``notebooks/03_grpo_normalization_theory.ipynb`` (spec E0, E0s; scaled-down plan a1, a2)."""

    seed: int = param(0, "master seed of every random draw in the notebook", minimum=0)
    check_instances: int = param(300, "random log-linear instances for the Lemma 3.1-3.3 bounds", minimum=1)
    n_prompts: int = param(50, "E0: prompts n", minimum=2)
    outputs: int = param(10, "E0: outputs K per prompt", minimum=2)
    p0_lows: list[float] = param([0.3, 0.05, 0.005, 0.0005], "E0: lower ends of the log-uniform p0 ranges "
                                 "(heterogeneity levels)", minimum=1e-12)
    p0_high: float = param(0.6, "E0: upper end of every p0 range", minimum=1e-12)
    exact_seeds: int = param(5, "E0: seeds per heterogeneity level", minimum=1)
    exact_steps: int = param(15_000, "E0: exact steps T", minimum=10)
    random_block_steps: int = param(10_000, "C6/C7: steps of the random-block inequality check", minimum=10)
    equal_step_multipliers: list[float] = param([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
                                                "E0: equal eta = c / X^2 for both methods", minimum=0.0)
    equal_step_seeds: int = param(5, "E0: seeds of the equal-eta sweep", minimum=1)
    relaxed_prompts: int = param(20, "C9: prompts of the overlap toys", minimum=2)
    relaxed_outputs: int = param(6, "C9: outputs per prompt of the overlap toys", minimum=2)
    relaxed_steps: int = param(3000, "C9: steps at the relaxed theorem step sizes", minimum=1)
    shared_strength: float = param(0.7, "C9: weight of the shared correctness direction (Asm. 4 holds)", minimum=0.0)
    slot_strength: float = param(1.0, "C9: weight rho of the shared slot dictionary (Asm. 4 fails)", minimum=0.0)
    sampled_prompts: int = param(100, "E0s: prompts n", minimum=2)
    sampled_p0_low: float = param(0.005, "E0s: lower end of the log-uniform p0 range", minimum=1e-12)
    prompts_per_step: int = param(16, "E0s: prompts per step B", minimum=1)
    generations: int = param(8, "E0s: sampled outputs per prompt G", minimum=2)
    sampled_steps: int = param(4000, "E0s: steps per run", minimum=1)
    sampled_seeds: int = param(3, "E0s: seeds per arm", minimum=1)
    sgd_multipliers: list[float] = param([4.0, 16.0, 64.0], "E0s: SGD learning rates c / X^2", minimum=0.0)
    adam_learning_rates: list[float] = param([0.01, 0.03, 0.1], "E0s: Adam learning rates", minimum=0.0)
    matched_multiplier: float = param(16.0, "E0s: SGD lr of the scale-matched no_std control", minimum=0.0)


@dataclass
class GRPONormalizationPhasesParams:
    """Parameters of ``notebooks/04_grpo_normalization_phases.ipynb`` (spec E1-E6; scaled-down plan a3, a4)."""

    seed: int = param(0, "seed of data order, sampling, probes; run s uses seed + s", minimum=0)
    seeds: int = param(3, "seeds per arm and split", minimum=1)
    base_model: str = param("results/00_base_policy/model", "policy: a folder (repo-relative) or a hub id")
    task: str = param("arithmetic", "arithmetic (tiny policy, exact reward), gsm8k (E6 splits) or math500 (E5 proxy)",
                      choices=("arithmetic", "gsm8k", "math500"))
    data_dir: str = param("", "local data root holding gsm8k/ and math500/ ('' = $RLVR_DATA_DIR or the hub)")
    splits: list[str] = param(["easy", "medium"], "difficulty splits (arithmetic: easy/medium/hard; gsm8k: easy/hard; "
                              "math500: level2)", choices=("easy", "medium", "hard", "level2"))
    loss_aggregation: str = param("dr_grpo", "TRL loss_type of both arms (G5)", choices=("dr_grpo", "grpo"))
    optimizer: str = param("adamw", "optimizer (G1: AdamW)", choices=("sgd", "adamw"))
    learning_rate: float = param(1e-3, "learning rate of the seeded arm comparison", minimum=0.0)
    sweep_split: str = param("medium", "split of the per-arm learning-rate sweep", choices=("easy", "medium", "hard", "level2"))
    sweep_learning_rates: list[float] = param([3e-4, 1e-3, 3e-3], "learning rates of the sweep (seed 0, both arms)",
                                              minimum=0.0)
    steps: int = param(100, "optimizer steps per run (phases at 20% / 60% of the run)", minimum=5)
    prompts_per_step: int = param(16, "prompts per step (G2)", minimum=1)
    generations: int = param(8, "completions per prompt G (G2)", minimum=2)
    max_completion_length: int = param(5, "max new tokens", minimum=1)
    max_grad_norm: float = param(1.0, "gradient clipping (G1: 1.0; its pre-clip norm is logged)", minimum=0.0)
    lora_rank: int = param(0, "LoRA rank on all linear layers, alpha = 2 rank (0 = full fine-tuning)", minimum=0)
    bf16: bool = param(False, "bf16 on GPU")
    gradient_checkpointing: bool = param(False, "gradient checkpointing on GPU")
    use_vllm: bool = param(False, "TRL's vLLM generation")
    train_prompts: int = param(4096, "training prompts per split (arithmetic: generated; real: first N of the split)",
                               minimum=1)
    probe_prompts: int = param(32, "C11: probe prompts for per-prompt gradient cosines (0 = off)", minimum=0)
    probe_samples: int = param(16, "C11: samples G_p per probe prompt", minimum=2)
    probe_checkpoints: int = param(3, "C11/C12: probe checkpoints spread over the run (incl. step 0 and the end)",
                                   minimum=2)
    sketch_dim: int = param(0, "count-sketch size of probe gradients (0 = exact)", minimum=0)
    fisher_prompts: int = param(64, "C12: probe prompts for the Fisher-variance correlation (0 = off)", minimum=0)
    fisher_samples: int = param(4, "C12: samples G_F per prompt for the Fisher proxy", minimum=1)
    variance_samples: int = param(16, "C12: samples G_V per prompt for the reward variance", minimum=2)
    representation_model: str = param("", "C10: second model for representation orthogonality on GSM8K questions "
                                      "('' = only the policy on its own prompts)")
    representation_questions: int = param(300, "C10: GSM8K train questions embedded", minimum=2)
    representation_pairs: int = param(1000, "C10: random pairs", minimum=1)
    torch_threads: int = param(2, "torch CPU threads", minimum=1)
    progress_bar: bool = param(False, "show TRL's per-step progress bar")


@dataclass
class LCOLogitsConvexityParams:
    """Parameters of ``notebooks/05_lco_logits_convexity.ipynb`` (LCO spec §4 N1-N17, §5.1 A1-A3, A5)."""

    seed: int = param(0, "master seed of the random checks, the sampled batches and the dynamics", minimum=0)
    check_cases: int = param(200, "N1-N13, N15-N17: random logit vectors per check", minimum=3)
    flow_vocab: int = param(20, "N14: vocabulary n of the logits-as-parameters toy", minimum=3)
    flow_steps: int = param(3000, "N14: plain GD steps", minimum=1)
    flow_lr: float = param(0.05, "N14: GD step size", minimum=0.0)
    flow_beta: float = param(1.0, "A2: beta of the V2 losses in the toy (sparse A = +-1)", minimum=0.0)
    base_model: str = param("results/00_base_policy/model", "policy of the fixed-batch dynamics (tiny policy or hub id)")
    split: str = param("easy", "arithmetic difficulty of the sampled batch", choices=("easy", "medium", "hard"))
    batch_prompts: int = param(32, "prompts sampled once (1 response each) for the fixed batches", minimum=2)
    dynamics_sequences: int = param(6, "A3: sequences in the fixed batch (the [code] protocol: 6)", minimum=1)
    dynamics_losses: list[str] = param(["sft", "pg", "pg_is", "ppo_clip", "lco", "lco_kld", "lco_mse", "lco_lch"],
                                       "A3: losses of the fixed-batch dynamics",
                                       choices=("sft", "pg", "pg_is", "ppo_clip", "lco", "lco_kld", "lco_mse", "lco_lch"))
    dynamics_optimizer: str = param("adam", "A3: optimizer of the repeated steps ([code]: Adam)", choices=("adam", "sgd"))
    dynamics_lr: float = param(1e-4, "A3: learning rate of the repeated steps", minimum=0.0)
    dynamics_steps: int = param(200, "A3: repeated steps on the fixed batch", minimum=2)
    cosine_sequences: int = param(16, "C18 / Table 4: sequences of the mixed batch (half positive, half negative)",
                                  minimum=2)
    kl_lr: float = param(2e-3, "Table 4: SGD step of the one-update KL", minimum=0.0)
    pretrained_model: str = param("", "A5: a pretrained instruct LM for a fixed batch ('' = skip)")
    pretrained_sequences: int = param(4, "A5: sequences of its fixed batch", minimum=1)
    pretrained_losses: list[str] = param(["pg", "pg_is", "lco"], "A5: losses (Psi = -1 on every token)",
                                         choices=("sft", "pg", "pg_is", "ppo_clip", "lco", "lco_kld", "lco_mse", "lco_lch"))
    pretrained_steps: int = param(15, "A5: repeated Adam steps", minimum=2)
    pretrained_lr: float = param(1e-5, "A5: Adam learning rate", minimum=0.0)
    pretrained_max_new_tokens: int = param(12, "A5: new tokens per sampled response", minimum=1)


LCO_ARMS = ("pg", "pg_is", "reinforce+lco", "lco_kld", "lco_mse", "lco_lch", "pg_is_high_ppl", "pg_is_positives",
            "grpo", "grpo+lco", "ppo", "ppo+lco")  # rlvr_dynamics.lco.training.ARMS (tested to agree)


@dataclass
class LCOTrainingParams:
    """Parameters of ``notebooks/06_lco_training.ipynb`` (LCO spec §5.1 A4, §5.2 B2; gaps G1, G2, G10, G14)."""

    seed: int = param(0, "seed of data order and sampling; run s uses seed + s", minimum=0)
    seeds: int = param(3, "seeds of the main arm comparison and of the perplexity arms", minimum=1)
    base_model: str = param("results/00_base_policy/model", "policy: a folder (repo-relative) or a hub id")
    task: str = param("arithmetic", "arithmetic (tiny policy, exact Pass@k), gsm8k or math500 (math-verify, sampled Pass@k)",
                      choices=("arithmetic", "gsm8k", "math500"))
    data_dir: str = param("", "local data root holding gsm8k/ and math500/ ('' = $RLVR_DATA_DIR or the hub)")
    split: str = param("easy", "arithmetic difficulty (ignored by gsm8k / math500)", choices=("easy", "medium", "hard"))
    arms: list[str] = param(["pg", "pg_is", "reinforce+lco", "lco_kld", "lco_mse", "lco_lch", "grpo", "grpo+lco", "ppo",
                             "ppo+lco"], "arms of the main comparison (C8, C11, C14, C16)", choices=LCO_ARMS)
    learning_rate: float = param(1e-4, "learning rate of every arm in the main comparison (same for all arms)", minimum=0.0)
    lr_sweep_arms: list[str] = param(["pg", "pg_is", "reinforce+lco"], "C10: arms of the learning-rate sweep", choices=LCO_ARMS)
    lr_multipliers: list[float] = param([1.0, 4.0, 16.0], "C10: learning rates = learning_rate x these", minimum=0.0)
    sweep_seeds: int = param(1, "seeds of the learning-rate and rho sweeps", minimum=1)
    rho_pos: float = param(1.8, "V1 rho+ (target ratio for Psi > 0)", minimum=1.0)
    rho_neg: float = param(0.9, "V1 rho- (target ratio for Psi < 0)", minimum=0.0)
    rho_sweep_pos: list[float] = param([1.2, 1.2, 1.7, 1.8, 1.8, 1.8, 1.9, 1.7], "C12: rho+ of the sweep pairs (V1 Table 5)",
                                       minimum=1.0)
    rho_sweep_neg: list[float] = param([0.7, 0.8, 0.8, 0.8, 0.9, 0.95, 0.9, 0.9], "C12: rho- of the sweep pairs", minimum=0.0)
    perplexity_arms: list[str] = param(["pg_is_high_ppl", "pg_is_positives"], "C9: positives-only PG-IS arms",
                                       choices=LCO_ARMS)
    beta: float = param(2.0, "V2 beta of LCO-KLD/MSE/LCH with sparse +-1 advantages (G1: logit shift 0.5)", minimum=0.0)
    clip_epsilon: float = param(0.2, "PPO / PG-IS clip range", minimum=0.0)
    anchor: str = param("rollout", "anchor of the LCO targets (G4)", choices=("rollout", "current"))
    anchor_topk: int = param(0, "store only the top-k rollout logits (+ sampled) as anchor (0 = all; large vocabularies)",
                             minimum=0)
    optimizer: str = param("adamw", "optimizer (G10: AdamW, no weight decay, no warm-up)", choices=("sgd", "adamw"))
    steps: int = param(100, "optimizer steps per run", minimum=2)
    prompts_per_step: int = param(16, "prompts per rollout", minimum=1)
    generations: int = param(4, "responses per prompt (V1: 4)", minimum=2)
    max_completion_length: int = param(5, "max new tokens", minimum=1)
    temperature: float = param(1.0, "sampling temperature of the rollouts", minimum=0.0)
    ppo_iterations: int = param(2, "updates per rollout of the REINFORCE frame and PPO (PG-IS needs > 1)", minimum=1)
    max_grad_norm: float = param(0.0, "gradient clipping (G10: off, so that spikes show; 0 = off)", minimum=0.0)
    lora_rank: int = param(0, "LoRA rank on all linear layers, alpha = 2 rank (0 = full fine-tuning)", minimum=0)
    bf16: bool = param(False, "bf16 on GPU")
    gradient_checkpointing: bool = param(False, "gradient checkpointing on GPU")
    use_vllm: bool = param(False, "TRL's vLLM generation")
    train_prompts: int = param(4096, "training prompts (arithmetic: generated; real: first N after a seeded shuffle)",
                               minimum=1)
    eval_prompts: int = param(256, "held-out prompts for Pass@k", minimum=1)
    eval_every: int = param(10, "evaluate Pass@k every this many steps", minimum=1)
    pass_k: list[int] = param([1, 4, 8], "k of Pass@k (sampled mode: each <= eval_samples)", minimum=1)
    eval_samples: int = param(8, "real tasks: samples per held-out prompt (G14: 8)", minimum=1)
    eval_temperature: float = param(0.6, "real tasks: sampling temperature of the evaluation (G14: 0.6)", minimum=0.0)
    update_kl_every: int = param(1, "C12: log KL(pi_before || pi_after) every this many steps", minimum=1)
    torch_threads: int = param(2, "torch CPU threads", minimum=1)
    progress_bar: bool = param(False, "progress bars (runs, TRL steps)")

    def __post_init__(self) -> None:
        if len(self.rho_sweep_pos) != len(self.rho_sweep_neg):
            raise ParameterError(f"parameters 'rho_sweep_pos' and 'rho_sweep_neg' must have the same length, got "
                                 f"{len(self.rho_sweep_pos)} and {len(self.rho_sweep_neg)}")
        if not 0.0 < self.rho_neg <= 1.0 or any(not 0.0 < r <= 1.0 for r in self.rho_sweep_neg):
            raise ParameterError("parameters 'rho_neg' / 'rho_sweep_neg' are invalid: allowed values are numbers in (0, 1]")
        if self.task != "arithmetic" and max(self.pass_k) > self.eval_samples:
            raise ParameterError(f"parameter 'pass_k' = {self.pass_k} is invalid: each k must be <= eval_samples "
                                 f"= {self.eval_samples} on task {self.task!r}")

    @property
    def rho_pairs(self) -> list[tuple[float, float]]:
        return list(zip(self.rho_sweep_pos, self.rho_sweep_neg, strict=True))


CTWA_METHODS = ("ctwa", "linear", "dynamic", "gradnorm", "lagrangian", "pama", "mgda", "tchebycheff")
CTWA_ESTIMATORS = ("reinforce_pp", "grpo")
STYLE_VARIANTS = ("verbose", "efficient")


@dataclass
class CTWABanditParams:
    """Parameters of ``notebooks/07_ctwa_bandit.ipynb`` (CTWA spec N1-N14; claims C1, C2, C4-C8, C10, C11)."""

    seed: int = param(0, "seed of the theory checks' random instances and of the first bandit run", minimum=0)
    seeds: int = param(10, "bandit runs per (toy, method); run s uses seed + s", minimum=1)
    steps: int = param(400, "bandit steps (N13/N14: 400)", minimum=2)
    learning_rate: float = param(0.1, "SGD step on the softmax logits (N13/N14: 0.1)", minimum=0.0)
    groups: int = param(32, "prompt groups per step B (N13/N14: 32)", minimum=1)
    group_size: int = param(16, "samples per group K (N13/N14: 16)", minimum=2)
    toys: list[str] = param(["A", "B", "B_efficient"], "A: 6-arm trade-off (N13); B: factorised response (N14); "
                            "B_efficient: its efficient-reasoner variant (C2)", choices=("A", "B", "B_efficient"))
    methods: list[str] = param(list(CTWA_METHODS), "weighting methods (E8)", choices=CTWA_METHODS)
    ctwa_weight_lr: float = param(0.2, "CTWA eta_lambda of the toys (N13/N14: 0.2)", minimum=0.0)
    paper_weight_lr: float = param(0.05, "the paper's eta_lambda, run as an extra CTWA arm (timescale caveat)", minimum=0.0)
    progress_bar: bool = param(False, "progress bar over bandit runs")

    def __post_init__(self) -> None:
        for name in ("learning_rate", "ctwa_weight_lr", "paper_weight_lr"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"parameter {name!r} = {getattr(self, name)} is invalid: allowed values are numbers > 0")


@dataclass
class CTWATrainingParams:
    """Parameters of ``notebooks/08_ctwa_training.ipynb`` (CTWA spec E0-E2, E5, E7, Table 1; gaps 2, 4, 5, 9, 13)."""

    seed: int = param(0, "seed of data order, sampling and the tiny base policies; run s uses seed + s", minimum=0)
    seeds: int = param(3, "seeds per (method, estimator)", minimum=1)
    task: str = param("running_sum", "running_sum (tiny policy trained here), math500 (300/100 split, seed 42) or gsm8k",
                      choices=("running_sum", "math500", "gsm8k"))
    base_model: str = param("", "policy folder (repo-relative) or hub id; '' = train the tiny style policies here")
    model_variants: list[str] = param(["verbose", "efficient"], "tiny style mixtures standing in for the paper's models (C2); "
                                      "the first carries the main grid", choices=STYLE_VARIANTS)
    variant_methods: list[str] = param(["linear", "ctwa"], "methods run on the other model variants (C2, C11)",
                                       choices=CTWA_METHODS)
    sft_steps: int = param(600, "SFT steps of each tiny base policy", minimum=1)
    data_dir: str = param("", "local data root holding gsm8k/ and math500/ ('' = $RLVR_DATA_DIR or the hub)")
    methods: list[str] = param(list(CTWA_METHODS), "weighting methods of the main grid (E8)", choices=CTWA_METHODS)
    estimators: list[str] = param(["reinforce_pp", "grpo"], "reinforce_pp: clip-free REINFORCE++ (Fig. 1); grpo: GRPO with "
                                  "clipping (Fig. 5)", choices=CTWA_ESTIMATORS)
    steps: int = param(40, "training steps (rollout batches) per run", minimum=1)
    updates_per_batch: int = param(2, "optimizer steps per rollout batch ([code]: 2 mini-batches)", minimum=1)
    prompts_per_step: int = param(16, "prompts per rollout batch (paper: 32)", minimum=1)
    generations: int = param(8, "completions per prompt K (paper: 16)", minimum=2)
    max_completion_length: int = param(48, "max new tokens of the rollouts (paper: 1024)", minimum=1)
    temperature: float = param(1.0, "rollout temperature", minimum=0.0)
    optimizer: str = param("adamw", "optimizer (paper: AdamW, constant lr)", choices=("sgd", "adamw"))
    learning_rate: float = param(1e-3, "policy learning rate (paper: 1e-6 on 1.5B models)", minimum=0.0)
    max_grad_norm: float = param(1.0, "gradient clipping ([code]: 1.0)", minimum=0.0)
    kl_scale: float = param(1.0, "multiplies Table 1's KL coefficient of each method (0.001 or 0)", minimum=0.0)
    ctwa_targets: list[float] = param([0.15, 0.08, 0.08], "CTWA covariance targets c* (Table 1)", minimum=0.0)
    ctwa_weight_lr: float = param(0.05, "CTWA eta_lambda (Table 1)", minimum=0.0)
    ctwa_tau: float = param(0.1, "CTWA EMA rate tau (Table 1)", minimum=0.0)
    ctwa_fast_weight_lr: float = param(0.5, "eta_lambda of an extra CTWA arm for short runs (first estimator, main variant, "
                                       "label ctwa_eta<value>; 0 = no extra arm)", minimum=0.0)
    ctwa_gate: bool = param(True, "[code] gate_by_obj_targets: no weight increase once a batch mean reaches its gate")
    ctwa_gates: list[float] = param([1.0, 0.95, 0.95], "[code] obj_targets of the gate", minimum=0.0)
    dynamic_regularization: float = param(1e-5, "Dynamic weighting's regularization_factor (gap 13: re-tune per model)",
                                          minimum=0.0)
    gradient_cosine_methods: list[str] = param(["linear"], "runs that log per-objective gradient cosines (Fig. 4, C3)",
                                               choices=CTWA_METHODS)
    train_prompts: int = param(2048, "training prompts (running_sum: generated; math500: the 300 of the split)", minimum=1)
    eval_prompts: int = param(200, "held-out prompts of the greedy evaluation (math500: the 100 test problems)", minimum=1)
    eval_every: int = param(5, "evaluate every this many training steps", minimum=1)
    eval_max_new_tokens: int = param(48, "max new tokens of the greedy evaluation", minimum=1)
    moving_average: int = param(5, "window of the centred moving average of the curves (gap 4)", minimum=1)
    lora_rank: int = param(0, "LoRA rank on all linear layers, alpha = 2 rank (0 = full fine-tuning)", minimum=0)
    bf16: bool = param(False, "bf16 on GPU")
    gradient_checkpointing: bool = param(False, "gradient checkpointing on GPU")
    use_vllm: bool = param(False, "TRL's vLLM generation")
    torch_threads: int = param(2, "torch CPU threads", minimum=1)
    progress_bar: bool = param(False, "progress bars (runs, TRL steps)")

    def __post_init__(self) -> None:
        for name in ("ctwa_targets", "ctwa_gates"):
            if len(getattr(self, name)) != 3:
                raise ParameterError(f"parameter {name!r} = {getattr(self, name)} is invalid: allowed values are 3 numbers, "
                                     "one per objective (accuracy, conciseness, clarity)")
        for name in ("learning_rate", "ctwa_weight_lr", "dynamic_regularization"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"parameter {name!r} = {getattr(self, name)} is invalid: allowed values are numbers > 0")
        if not 0.0 < self.ctwa_tau <= 1.0:
            raise ParameterError(f"parameter 'ctwa_tau' = {self.ctwa_tau} is invalid: allowed values are numbers in (0, 1]")
        if self.task == "running_sum" and self.base_model == "" and not self.model_variants:
            raise ParameterError("parameter 'model_variants' is empty: allowed values are a non-empty subset of "
                                 f"{list(STYLE_VARIANTS)} when the tiny policies are trained here")
        if not self.estimators or not self.methods:
            raise ParameterError("parameters 'estimators' and 'methods' must not be empty")


NOTEBOOK_PARAMS = {
    "00_base_policy": BasePolicyParams,
    "01_gradient_gap_bandits": GradientGapBanditParams,
    "02_gradient_gap_grpo": GradientGapGRPOParams,
    "03_grpo_normalization_theory": GRPONormalizationTheoryParams,
    "04_grpo_normalization_phases": GRPONormalizationPhasesParams,
    "05_lco_logits_convexity": LCOLogitsConvexityParams,
    "06_lco_training": LCOTrainingParams,
    "07_ctwa_bandit": CTWABanditParams,
    "08_ctwa_training": CTWATrainingParams,
}
