"""GSM8K and MATH500 loaders (hub id or local JSONL) and answer checking with math-verify.

A source is either a local path (a ``.jsonl`` file or a folder holding ``<split>.jsonl``)
or a Hugging Face hub id, loaded with :func:`datasets.load_dataset` (online users). When no
source is given, the folder in the environment variable ``RLVR_DATA_DIR`` is used
(``$RLVR_DATA_DIR/gsm8k/<split>.jsonl``, ``$RLVR_DATA_DIR/math500/test.jsonl``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

GSM8K_HUB_ID = "openai/gsm8k"
MATH500_HUB_ID = "HuggingFaceH4/MATH-500"
DATA_DIR_VARIABLE = "RLVR_DATA_DIR"


@dataclass(frozen=True)
class Problem:
    """One verifiable question: the prompt text and the reference final answer."""

    question: str
    reference: str


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


def _resolve(source: str | os.PathLike | None, subfolder: str, split: str) -> list[dict]:
    if source is None:
        base = os.environ.get(DATA_DIR_VARIABLE)
        if not base:
            raise ValueError(f"no data source: pass a hub id or a local path, or set {DATA_DIR_VARIABLE}")
        source = Path(base) / subfolder
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
    rows = _resolve(source, "gsm8k", split)
    problems = []
    for i, row in enumerate(rows, start=1):
        where = f"gsm8k {split} row {i}"
        try:
            reference = gsm8k_reference(_field(row, ("answer",), where))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        problems.append(Problem(_field(row, ("question",), where), reference))
    return problems


def load_math500(source: str | os.PathLike | None = None) -> list[Problem]:
    """MATH500 test problems; reference = the ``answer`` field of the hub schema, or the
    last ``\\boxed{}`` of the solution in the local ``{question, answer=solution}`` files."""
    rows = _resolve(source, "math500", "test")
    problems = []
    for i, row in enumerate(rows, start=1):
        where = f"math500 row {i}"
        question = _field(row, ("problem", "question"), where)
        if "solution" in row:
            reference = _field(row, ("answer",), where)
        else:
            reference = last_boxed(_field(row, ("answer",), where))
            if reference is None:
                raise ValueError(f"{where}: the solution has no \\boxed{{}} answer")
        problems.append(Problem(question, reference))
    return problems
