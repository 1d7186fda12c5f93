"""Synthetic arithmetic tasks and the GSM8K / MATH500 loaders on the shared local files."""

import json
import os
from pathlib import Path

import pytest

from rlvr_dynamics.tasks import (
    GSM8K_SPLITS,
    ArithmeticTask,
    Problem,
    arithmetic_reward,
    extract_final_answer,
    gsm8k_complexity_key,
    gsm8k_difficulty_split,
    last_boxed,
    load_gsm8k,
    load_math500,
    math_level2_proxy,
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


def test_gsm8k_complexity_key_counts_the_reasoning_before_the_final_answer():
    solution = "a <<1+1=2>>2\nb <<2*3=6>>6\n\n#### 6"
    # non-empty lines, calculator annotations, length of the stripped text before '####'
    assert gsm8k_complexity_key(solution) == (2, 2, len("a <<1+1=2>>2\nb <<2*3=6>>6"))
    assert gsm8k_complexity_key("just text") == (1, 0, 9)


def test_gsm8k_difficulty_split_on_real_train(shared_data):
    problems = load_gsm8k("train", shared_data / "gsm8k")
    assert all(p.solution and "####" in p.solution for p in problems)
    easy = gsm8k_difficulty_split(problems, "easy")
    hard = gsm8k_difficulty_split(problems, "hard")
    assert (len(easy), len(hard)) == (4695, 1909)
    assert easy == gsm8k_difficulty_split(problems, "easy") and hard == gsm8k_difficulty_split(problems, "hard")
    index = {id(p): i for i, p in enumerate(problems)}
    assert not {index[id(p)] for p in easy} & {index[id(p)] for p in hard}
    assert max(gsm8k_complexity_key(p.solution) for p in easy) <= min(gsm8k_complexity_key(p.solution) for p in hard)


def test_gsm8k_difficulty_split_scales_and_names_bad_split():
    problems = [Problem(f"q{i}", str(i), solution="x\n" * (i % 7 + 1) + f"#### {i}") for i in range(100)]
    easy, hard = gsm8k_difficulty_split(problems, "easy"), gsm8k_difficulty_split(problems, "hard")
    assert (len(easy), len(hard)) == (round(100 * 4695 / 7473), round(100 * 1909 / 7473)) == (63, 26)
    assert not {p.question for p in easy} & {p.question for p in hard}
    assert GSM8K_SPLITS == ("easy", "hard")
    with pytest.raises(ValueError, match=r"split 'medium' is not one of \['easy', 'hard'\]"):
        gsm8k_difficulty_split(problems, "medium")


def test_math_level2_proxy_on_local_file(shared_data):
    problems = load_math500(shared_data / "math500")
    assert all(p.solution and not p.level for p in problems)
    chosen = math_level2_proxy(problems)
    assert len(chosen) == 200 and chosen == math_level2_proxy(problems)
    kept = {id(p) for p in chosen}
    excluded = [p for p in problems if id(p) not in kept]
    assert max(len(p.solution) for p in chosen) <= min(len(p.solution) for p in excluded)


def test_math_level2_proxy_uses_level_field(tmp_path):
    rows = [
        {"problem": f"p{i}", "solution": "s" * (10 - i), "answer": str(i), "level": level}
        for i, level in enumerate([1, 2, "Level 2", "Level 3", 5, 2])
    ]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    problems = load_math500(path)
    assert [p.level for p in problems] == ["1", "2", "Level 2", "Level 3", "5", "2"]
    assert problems[0].solution == "s" * 10
    assert [p.question for p in math_level2_proxy(problems)] == ["p1", "p2", "p5"]
    with pytest.raises(ValueError, match="have a level"):
        math_level2_proxy([*problems, Problem("q", "1", solution="s")])
