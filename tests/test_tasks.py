"""Synthetic arithmetic tasks and the GSM8K / MATH500 loaders on the shared local files."""

import json
import os
from pathlib import Path

import pytest

from rlvr_dynamics.tasks import (
    ArithmeticTask,
    arithmetic_reward,
    extract_final_answer,
    last_boxed,
    load_gsm8k,
    load_math500,
    math_reward,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RLVR_DATA_DIR", ROOT.parent / "shared" / "data"))
needs_shared = pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"no local datasets at {SHARED_DATA}")


def test_arithmetic_is_seeded_and_verifiable():
    task = ArithmeticTask(n_digits=2, n_operands=3, operators="+-*", scratchpad=True)
    problems = task.sample(50, seed=3)
    assert problems == task.sample(50, seed=3) and problems != task.sample(50, seed=4)
    for problem in problems:
        target = task.target(problem)
        assert arithmetic_reward(target, problem.reference) == 1.0
        assert arithmetic_reward(target + "1", problem.reference) == 0.0
        assert target.count("\n") == 2  # one scratchpad line per operation, then the answer


def test_left_to_right_value_and_plain_target():
    task = ArithmeticTask(n_digits=1, n_operands=3, operators="*")
    problem = task.sample(1, seed=0)[0]
    a, b, c = (int(x) for x in problem.question.rstrip("=").split("*"))
    assert problem.reference == str(a * b * c) == task.target(problem)


def test_final_answer_extraction_never_executes_text():
    assert extract_final_answer("3+4=7\nanswer:7") == 7
    assert extract_final_answer("  -12 \n") == -12
    assert extract_final_answer("__import__('os')") is None
    assert extract_final_answer("2+2") is None
    assert extract_final_answer("") is None


def test_invalid_task_parameters_are_named():
    with pytest.raises(ValueError, match="operators = '/' is invalid"):
        ArithmeticTask(operators="/")
    with pytest.raises(ValueError, match="n_operands = 1 is invalid"):
        ArithmeticTask(n_operands=1)


def test_last_boxed_balances_braces():
    assert last_boxed(r"so \boxed{1} then \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert last_boxed("no box") is None


def test_math_reward_uses_math_verify():
    assert math_reward(r"The answer is \boxed{0.5}", r"\frac{1}{2}") == 1.0
    assert math_reward(r"\boxed{3}", "4") == 0.0
    assert math_reward("so she makes 18 dollars", "18") == 1.0


@needs_shared
def test_gsm8k_local_files():
    test = load_gsm8k("test", SHARED_DATA / "gsm8k")
    assert len(test) == 1319 and test[0].reference == "18"
    assert len(load_gsm8k("train", SHARED_DATA / "gsm8k" / "train.jsonl")) == 7473


@needs_shared
def test_math500_local_file_and_environment_variable(monkeypatch):
    monkeypatch.setenv("RLVR_DATA_DIR", str(SHARED_DATA))
    problems = load_math500()
    assert len(problems) == 500
    assert all(p.reference for p in problems)
    assert math_reward(rf"\boxed{{{problems[0].reference}}}", problems[0].reference) == 1.0


def test_corrupt_line_names_file_and_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"test.jsonl:2: not valid JSON"):
        load_gsm8k("test", path)
    path.write_text(json.dumps({"question": "q", "answer": "no final answer"}) + "\n")
    with pytest.raises(ValueError, match="gsm8k test row 1: GSM8K solution has no '####'"):
        load_gsm8k("test", path)
    with pytest.raises(ValueError, match=r"split 'dev' is not one of"):
        load_gsm8k("dev", path)
