"""Verifiable tasks: synthetic arithmetic generated from a seed, and GSM8K / MATH500 loaders.

Rewards parse model text and compare it with a reference; model output is never executed.
"""

from rlvr_dynamics.tasks.arithmetic import ArithmeticTask, arithmetic_reward, extract_final_answer
from rlvr_dynamics.tasks.math_data import (
    GSM8K_SPLITS,
    Problem,
    gsm8k_complexity_key,
    gsm8k_difficulty_split,
    last_boxed,
    load_gsm8k,
    load_math500,
    math_level2_proxy,
    math_reward,
)

__all__ = [
    "GSM8K_SPLITS",
    "ArithmeticTask",
    "Problem",
    "arithmetic_reward",
    "extract_final_answer",
    "gsm8k_complexity_key",
    "gsm8k_difficulty_split",
    "last_boxed",
    "load_gsm8k",
    "load_math500",
    "math_level2_proxy",
    "math_reward",
]
