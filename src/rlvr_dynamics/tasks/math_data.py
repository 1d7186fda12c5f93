"""GSM8K and MATH500 loaders (hub id or local JSONL) and answer checking with math-verify.

A source is either a local path (a ``.jsonl`` file or a folder holding ``<split>.jsonl``)
or a Hugging Face hub id, loaded with :func:`datasets.load_dataset` (online users). When no
source is given, the folder in the environment variable ``RLVR_DATA_DIR`` is used
(``$RLVR_DATA_DIR/gsm8k/<split>.jsonl``, ``$RLVR_DATA_DIR/math500/test.jsonl``), and without
that variable the hub ids ``openai/gsm8k`` / ``HuggingFaceH4/MATH-500``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

GSM8K_HUB_ID = "openai/gsm8k"
MATH500_HUB_ID = "HuggingFaceH4/MATH-500"
DATA_DIR_VARIABLE = "RLVR_DATA_DIR"


@dataclass(frozen=True)
class Problem:
    """One verifiable question: the prompt text and the reference final answer.

    ``solution`` holds the full worked solution when the loader has one (used by the difficulty
    splits below); ``level`` is the MATH difficulty level as text ("2", "Level 2"), or "" if unknown.
    """

    question: str
    reference: str
    solution: str = ""
    level: str = ""


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def gsm8k_reference(solution: str) -> str:
    """The number after ``####`` in a GSM8K solution, without thousands separators."""
    if "####" not in solution:
        raise ValueError("GSM8K solution has no '####' final answer")
    return solution.split("####")[-1].strip().replace(",", "")


def math_reward(completion: str, reference: str) -> float:
    """1.0 iff the last ``\\boxed{}`` answer of ``completion`` equals ``reference`` (math-verify).

    Without a boxed answer the whole completion is parsed, so plain final numbers count.
    math-verify parses LaTeX / numbers symbolically; nothing in the completion is executed.
    """
    from math_verify import parse, verify

    answer = last_boxed(completion)
    target = parse(f"${reference}$") or parse(reference)
    guess = parse(f"${answer}$") if answer is not None else parse(completion)
    return float(bool(target) and bool(guess) and verify(target, guess))


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _resolve(source: str | os.PathLike | None, subfolder: str, split: str, hub_id: str) -> list[dict]:
    """Rows from ``source``; without one, ``$RLVR_DATA_DIR/<subfolder>`` if set, else ``hub_id``."""
    if source is None:
        base = os.environ.get(DATA_DIR_VARIABLE)
        source = Path(base) / subfolder if base else hub_id
    path = Path(source)
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if path.exists():
        return _read_jsonl(path)
    if str(source).endswith(".jsonl") or Path(source).is_absolute():
        raise FileNotFoundError(f"{path} does not exist")
    from datasets import load_dataset  # hub id (needs network)

    config = "main" if source == GSM8K_HUB_ID else None
    return [dict(row) for row in load_dataset(str(source), config, split=split)]


def _field(row: dict, names: tuple[str, ...], where: str) -> str:
    for name in names:
        if isinstance(row.get(name), str):
            return row[name]
    raise ValueError(f"{where}: missing a text field named one of {list(names)}")


def load_gsm8k(split: str = "test", source: str | os.PathLike | None = None) -> list[Problem]:
    """GSM8K problems of ``split`` ('train' / 'test') with the final number as reference."""
    if split not in ("train", "test"):
        raise ValueError(f"split {split!r} is not one of ['train', 'test']")
    rows = _resolve(source, "gsm8k", split, GSM8K_HUB_ID)
    problems = []
    for i, row in enumerate(rows, start=1):
        where = f"gsm8k {split} row {i}"
        solution = _field(row, ("answer",), where)
        try:
            reference = gsm8k_reference(solution)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        problems.append(Problem(_field(row, ("question",), where), reference, solution=solution))
    return problems


def load_math500(source: str | os.PathLike | None = None) -> list[Problem]:
    """MATH500 test problems; reference = the ``answer`` field of the hub schema, or the
    last ``\\boxed{}`` of the solution in the local ``{question, answer=solution}`` files."""
    rows = _resolve(source, "math500", "test", MATH500_HUB_ID)
    problems = []
    for i, row in enumerate(rows, start=1):
        where = f"math500 row {i}"
        question = _field(row, ("problem", "question"), where)
        if "solution" in row:
            reference = _field(row, ("answer",), where)
            solution = _field(row, ("solution",), where)
        else:
            solution = _field(row, ("answer",), where)
            reference = last_boxed(solution)
            if reference is None:
                raise ValueError(f"{where}: the solution has no \\boxed{{}} answer")
        level = row.get("level")
        problems.append(Problem(question, reference, solution=solution, level="" if level is None else str(level)))
    return problems


# --- Difficulty splits (reproduction spec E6 / gap G8 for GSM8K, E5 / gap G9 for MATH) ---

GSM8K_SPLITS = ("easy", "hard")
GSM8K_TRAIN_SIZE = 7473
GSM8K_EASY_SIZE = 4695
GSM8K_HARD_SIZE = 1909
_CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")
_MATH_LEVEL_2 = re.compile(r"(?:level\s*)?2", re.IGNORECASE)


def gsm8k_complexity_key(solution: str) -> tuple[int, int, int]:
    """Solution-complexity key of a GSM8K solution (spec E6, gap G8).

    Computed on the reasoning, i.e. the text before the first ``####`` (the whole text when there
    is none): (number of non-empty lines, number of ``<<...>>`` calculator annotations, character
    length of the reasoning with surrounding whitespace stripped). The final-answer line is not counted.
    """
    reasoning = solution.split("####", 1)[0].strip()
    lines = sum(1 for line in reasoning.splitlines() if line.strip())
    return lines, len(_CALCULATOR_ANNOTATION.findall(reasoning)), len(reasoning)


def _gsm8k_split_sizes(n: int) -> tuple[int, int]:
    easy = round(n * GSM8K_EASY_SIZE / GSM8K_TRAIN_SIZE)
    hard = min(round(n * GSM8K_HARD_SIZE / GSM8K_TRAIN_SIZE), n - easy)
    return easy, hard


def gsm8k_difficulty_split(problems: list[Problem], split: str) -> list[Problem]:
    """Easy or Hard GSM8K problems by solution complexity (spec E6, gap G8).

    The paper splits GSM8K train (7,473 rows) into Easy (N = 4,695) and Hard (N = 1,909) and drops
    the 869 in between. Deterministic proxy: sort by :func:`gsm8k_complexity_key` (stable, ties by
    original index); Easy = the first 4,695, Hard = the last 1,909. Other sizes n scale both
    proportionally (easy = round(n * 4695 / 7473), hard = round(n * 1909 / 7473), capped so the two
    never overlap). The selected problems come back in their original order. Needs ``solution``.
    """
    if split not in GSM8K_SPLITS:
        raise ValueError(f"split {split!r} is not one of {list(GSM8K_SPLITS)}")
    missing = [i for i, problem in enumerate(problems) if not problem.solution]
    if missing:
        raise ValueError(f"problem {missing[0]} has no solution text; load it with load_gsm8k")
    n = len(problems)
    easy, hard = _gsm8k_split_sizes(n)
    order = sorted(range(n), key=lambda i: (gsm8k_complexity_key(problems[i].solution), i))
    chosen = order[:easy] if split == "easy" else order[n - hard :]
    return [problems[i] for i in sorted(chosen)]


def math_level2_proxy(problems: list[Problem]) -> list[Problem]:
    """MATH Level-2 problems, or a proxy for them when levels are unknown (spec E5, gap G9).

    If the problems carry a ``level`` (hub schema of HuggingFaceH4/MATH-500: 2 or "Level 2"), the
    level-2 ones are returned. Deviation: the local ``math500/test.jsonl`` has no level field, so
    there the proxy is the shortest-solution 40% (round(0.4 * n); 200 of 500) by solution character
    length, stable ties by index. A mix of rows with and without a level is refused (ValueError).
    The selected problems come back in their original order.
    """
    with_level = sum(1 for problem in problems if problem.level.strip())
    if with_level == len(problems) and problems:
        return [problem for problem in problems if _MATH_LEVEL_2.fullmatch(problem.level.strip())]
    if with_level:
        raise ValueError(f"{with_level} of {len(problems)} problems have a level: all or none must")
    keep = round(len(problems) * 2 / 5)
    order = sorted(range(len(problems)), key=lambda i: (len(problems[i].solution), i))
    return [problems[i] for i in sorted(order[:keep])]
