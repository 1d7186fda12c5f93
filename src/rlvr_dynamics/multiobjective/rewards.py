"""The paper's three 0/1 objectives as TRL reward functions (spec E0, [code] rules; check N12).

* accuracy: the last brace-balanced ``\\boxed{...}`` answer checked against the reference with
  math-verify (the spec's verl string normaliser is replaced by the project's symbolic checker;
  both accept ``\\boxed{0.5}`` and ``\\boxed{\\dfrac12}`` for ``\\frac{1}{2}``); no boxed answer scores 0;
* conciseness: 1 iff the completion's token count is strictly below the running mean length of all
  training completions so far, the current batch included; evaluation reads the mean without
  updating it, and before any training batch every response scores 1;
* clarity: a ``\\boxed{}`` with a non-blank argument AND a step-by-step look (at least two enumerator
  matches or two ordinal words), the authors' regexes verbatim.

Model output is only parsed, never executed. The same functions score the synthetic running-sum task
of :mod:`rlvr_dynamics.multiobjective.task` and MATH500 / GSM8K.
"""

from __future__ import annotations

import re

import numpy as np

from rlvr_dynamics.lm.rewards import _text
from rlvr_dynamics.tasks import last_boxed

OBJECTIVES = ("accuracy", "conciseness", "clarity")
BOXED = re.compile(r"\\boxed\{\s*[^}\s][^}]*\}")
ENUMERATOR = re.compile(
    r"(?:(?:^|\s|\()(?:\bstep\s*)?(?:\d+|[a-z]|[ivxlcdm]+)[\)\.\:\-])|(?:(?:^|\s)[-*•]\s+)",
    re.IGNORECASE | re.VERBOSE | re.MULTILINE,
)
ORDINAL = re.compile(r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|next|then)\b", re.IGNORECASE)


def is_correct(text: str, reference: str) -> float:
    """1.0 iff the last boxed answer of ``text`` equals ``reference`` under math-verify."""
    from math_verify import parse, verify

    answer = last_boxed(text)
    if answer is None:
        return 0.0
    try:
        target, guess = parse(f"${reference}$") or parse(reference), parse(f"${answer}$")
        return float(bool(target) and bool(guess) and verify(target, guess))
    except Exception:  # [code]: any failure of the checker scores 0
        return 0.0


def is_clear(text: str) -> float:
    """1.0 iff ``text`` has a non-blank boxed answer and >= 2 enumerators or >= 2 ordinal words."""
    steps = len(ENUMERATOR.findall(text)) >= 2 or len(ORDINAL.findall(text)) >= 2
    return float(bool(BOXED.search(text)) and steps)


def accuracy_reward(completions: list, target: list[str], **_: object) -> list[float]:
    return [is_correct(_text(c), t) for c, t in zip(completions, target, strict=True)]


def clarity_reward(completions: list, **_: object) -> list[float]:
    return [is_clear(_text(c)) for c in completions]


accuracy_reward.__name__ = "accuracy"
clarity_reward.__name__ = "clarity"


class ConcisenessReward:
    """1 iff the completion is strictly shorter (in tokens, EOS included) than the running mean length."""

    __name__ = "conciseness"

    def __init__(self) -> None:
        self.frozen = False
        self.reset()

    def reset(self) -> None:
        self.total_tokens, self.count = 0.0, 0

    @property
    def mean_length(self) -> float | None:
        return self.total_tokens / self.count if self.count else None

    def score_lengths(self, lengths) -> np.ndarray:
        """Scores of ``lengths``; unless ``frozen`` they first join the running mean."""
        lengths = np.asarray(lengths, dtype=np.float64)
        if not self.frozen:
            self.total_tokens += float(lengths.sum())
            self.count += len(lengths)
        mean = self.mean_length
        return np.ones(len(lengths)) if mean is None else (lengths < mean).astype(np.float64)

    def __call__(self, completion_ids: list[list[int]], **_: object) -> list[float]:
        return self.score_lengths([len(ids) for ids in completion_ids]).tolist()


def objective_rewards(conciseness: ConcisenessReward) -> list:
    """The three reward functions in ``OBJECTIVES`` order, for TRL's ``reward_funcs``."""
    return [accuracy_reward, conciseness, clarity_reward]


def evaluate_texts(texts: list[str], lengths: list[int], targets: list[str], conciseness: ConcisenessReward) -> dict[str, float]:
    """Means of the objectives on an evaluation set; the running mean of ``conciseness`` is not updated."""
    frozen, conciseness.frozen = conciseness.frozen, True
    try:
        concise = conciseness.score_lengths(lengths)
    finally:
        conciseness.frozen = frozen
    return {
        "accuracy": float(np.mean([is_correct(t, r) for t, r in zip(texts, targets, strict=True)])),
        "length": float(np.mean(lengths)),
        "clarity": float(np.mean([is_clear(t) for t in texts])),
        "conciseness": float(concise.mean()),
    }
