"""Reward functions in TRL's signature ``f(prompts, completions, completion_ids, **columns) -> list[float]``.

Every reward parses text or compares token ids; model output is never executed.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from rlvr_dynamics.tasks import arithmetic_reward, math_reward


class ExactCompletionReward:
    """1 iff the completion is exactly ``target`` followed by EOS (spec X2: O+_q = {o*_q}).

    Compares token ids, so a completion truncated before its EOS earns 0; this is what makes
    the teacher-forced J_q = pi(o*_q | q) of :mod:`rlvr_dynamics.lm.exact` the exact success rate.
    """

    __name__ = "exact_answer"

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def __call__(self, completion_ids: list[list[int]], target: list[str], **_: object) -> list[float]:
        encode = self.tokenizer
        wanted = {t: encode(t, add_special_tokens=False)["input_ids"] + [encode.eos_token_id] for t in set(target)}
        return [float(list(ids) == wanted[t]) for ids, t in zip(completion_ids, target, strict=True)]


def final_answer_reward(completions: list, target: list[str], **_: object) -> list[float]:
    """Arithmetic tasks with a scratchpad: 1 iff the last line's integer equals ``target``."""
    return [arithmetic_reward(_text(c), t) for c, t in zip(completions, target, strict=True)]


def math_verify_reward(completions: list, target: list[str], **_: object) -> list[float]:
    """GSM8K / MATH500: the last ``\\boxed{}`` (or last number) checked with math-verify."""
    return [math_reward(_text(c), t) for c, t in zip(completions, target, strict=True)]


def _text(completion: str | list[dict]) -> str:
    """TRL passes plain strings, or a list of chat messages for conversational prompts."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


final_answer_reward.__name__ = "final_answer"
math_verify_reward.__name__ = "math_verify"


class SignedReward:
    """+1 for a correct, -1 for a wrong completion (2 r - 1 of a 0/1 reward): LCO V1's rule-based reward."""

    def __init__(self, reward) -> None:
        self.reward = reward
        self.__name__ = f"signed_{getattr(reward, '__name__', 'reward')}"

    def __call__(self, *args, **kwargs) -> list[float]:
        return [2.0 * r - 1.0 for r in self.reward(*args, **kwargs)]
