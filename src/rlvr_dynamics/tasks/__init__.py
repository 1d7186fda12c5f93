"""Verifiable tasks: synthetic arithmetic generated from a seed, and GSM8K / MATH500 loaders.

Rewards parse model text and compare it with a reference; model output is never executed.
"""

from rlvr_dynamics.tasks.arithmetic import ArithmeticTask, arithmetic_reward, extract_final_answer
from rlvr_dynamics.tasks.math_data import Problem, last_boxed, load_gsm8k, load_math500, math_reward

__all__ = [
    "ArithmeticTask",
    "Problem",
    "arithmetic_reward",
    "extract_final_answer",
    "last_boxed",
    "load_gsm8k",
    "load_math500",
    "math_reward",
]
