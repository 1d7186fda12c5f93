"""Synthetic verifiable arithmetic tasks generated from a seed.

A problem is ``a op b op c ... =`` with operands of ``n_digits`` digits, evaluated left to
right (no operator precedence, so every step of the scratchpad is one operation). The
canonical completion is the final answer, optionally preceded by one scratchpad line per
operation; difficulty grows with ``n_digits`` and ``n_operands`` (per-prompt success rates
spread between 0 and 1 for a partially trained model), length with ``scratchpad``.

The reward parses the last line of a completion; nothing in it is executed.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np

from rlvr_dynamics.tasks.math_data import Problem

OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
FINAL_ANSWER = re.compile(r"^(?:answer:)?\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class ArithmeticTask:
    """A family of arithmetic problems; ``sample(n, seed)`` draws ``n`` of them."""

    n_digits: int = 1
    n_operands: int = 2
    operators: str = "+"
    scratchpad: bool = False

    def __post_init__(self) -> None:
        if self.n_digits < 1:
            raise ValueError(f"n_digits = {self.n_digits} is invalid: allowed values are integers >= 1")
        if self.n_operands < 2:
            raise ValueError(f"n_operands = {self.n_operands} is invalid: allowed values are integers >= 2")
        if not self.operators or set(self.operators) - set(OPERATIONS):
            raise ValueError(f"operators = {self.operators!r} is invalid: allowed values are non-empty subsets of '+-*'")

    def sample(self, n: int, seed: int) -> list[Problem]:
        rng = np.random.default_rng(seed)
        low, high = (0 if self.n_digits == 1 else 10 ** (self.n_digits - 1)), 10**self.n_digits
        problems = []
        for _ in range(n):
            operands = rng.integers(low, high, size=self.n_operands).tolist()
            ops = rng.choice(list(self.operators), size=self.n_operands - 1).tolist()
            prompt = str(operands[0]) + "".join(f"{op}{x}" for op, x in zip(ops, operands[1:], strict=True)) + "="
            problems.append(Problem(prompt, str(self._steps(operands, ops)[-1][-1])))
        return problems

    @staticmethod
    def _steps(operands: list[int], ops: list[str]) -> list[tuple[int, str, int, int]]:
        steps, value = [], operands[0]
        for op, x in zip(ops, operands[1:], strict=True):
            result = OPERATIONS[op](value, x)
            steps.append((value, op, x, result))
            value = result
        return steps

    def target(self, problem: Problem) -> str:
        """Canonical completion of ``problem`` (used for supervised warm-up)."""
        if not self.scratchpad:
            return problem.reference
        tokens = re.findall(r"\d+|[+\-*]", problem.question.rstrip("="))
        operands, ops = [int(t) for t in tokens[::2]], tokens[1::2]
        lines = [f"{a}{op}{b}={r}" for a, op, b, r in self._steps(operands, ops)]
        return "\n".join(lines + [f"answer:{problem.reference}"])


def extract_final_answer(completion: str) -> int | None:
    """The integer on the last non-empty line (``answer:N`` or ``N``), else ``None``."""
    lines = [line for line in completion.strip().splitlines() if line.strip()]
    match = FINAL_ANSWER.match(lines[-1].strip()) if lines else None
    return int(match.group(1)) if match else None


def arithmetic_reward(completion: str, reference: str) -> float:
    """1.0 iff the final answer of ``completion`` equals the integer ``reference``."""
    answer = extract_final_answer(completion)
    return float(answer is not None and answer == int(reference))
