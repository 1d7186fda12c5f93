"""The three objectives (spec N12) and the running-sum style task of notebook 08."""

from __future__ import annotations

import pytest

from rlvr_dynamics.multiobjective import task
from rlvr_dynamics.multiobjective.rewards import (
    ConcisenessReward,
    accuracy_reward,
    clarity_reward,
    evaluate_texts,
    is_clear,
    is_correct,
    objective_rewards,
)


# ------------------------------------------------------------------ N12
@pytest.mark.parametrize(("text", "reference", "expected"), [
    ("so the answer is \\boxed{0.5}", "\\frac{1}{2}", 1.0),
    ("\\boxed{\\dfrac12}", "\\frac{1}{2}", 1.0),
    ("the answer is 1/2", "\\frac{1}{2}", 0.0),  # no boxed answer
    ("first \\boxed{3} then \\boxed{7}", "7", 1.0),  # the last boxed counts
    ("first \\boxed{7} then \\boxed{3}", "7", 0.0),
    ("\\boxed{x^{2}}", "x^2", 1.0),  # braces balanced
])
def test_accuracy(text, reference, expected):
    assert is_correct(text, reference) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("We compute 2+3 = 5. Then 5*2 = 10. \\boxed{10}", 1.0),
    ("First we add, then we multiply: \\boxed{10}", 1.0),
    ("The answer is \\boxed{3}", 0.0),
    ("\\boxed{ }", 0.0),
    ("1. add 2. multiply, no boxed answer", 0.0),
])
def test_clarity(text, expected):
    assert is_clear(text) == expected


def test_conciseness_running_mean():
    reward = ConcisenessReward()
    assert reward.score_lengths([100, 300]).tolist() == [1.0, 0.0]  # mean 200 includes the current batch
    reward.frozen = True
    assert reward.score_lengths([199, 200]).tolist() == [1.0, 0.0]
    assert reward.mean_length == 200  # evaluation does not move the mean
    assert ConcisenessReward()(completion_ids=[[1] * 5, [1] * 50]) == [1.0, 0.0]  # the first batch sets the mean (27.5)


def test_conciseness_before_training_scores_one():
    reward = ConcisenessReward()
    reward.frozen = True
    assert reward.score_lengths([10, 1000]).tolist() == [1.0, 1.0]


def test_trl_signatures_and_evaluation():
    conciseness = ConcisenessReward()
    funcs = objective_rewards(conciseness)
    assert [f.__name__ for f in funcs] == ["accuracy", "conciseness", "clarity"]
    completions = ["1.3+5=8 2.8+7=5 \\boxed{5}", "\\boxed{4}"]
    assert accuracy_reward(completions, target=["5", "5"]) == [1.0, 0.0]
    assert clarity_reward([[{"role": "assistant", "content": completions[0]}]]) == [1.0]
    scores = evaluate_texts(completions, [26, 10], ["5", "5"], conciseness)
    assert scores == {"accuracy": 0.5, "length": 18.0, "clarity": 0.5, "conciseness": 1.0}
    assert conciseness.count == 0


# ------------------------------------------------------------------ the style task
def test_styles_score_as_designed():
    prompt = "3572="
    answers = {style: task.completion(prompt, style) for style in task.STYLES}
    assert answers["plain"] == "3+5=8 8+7=5 5+2=7 \\boxed{7}"
    assert answers["enumerated"] == "1.3+5=8 2.8+7=5 3.5+2=7 \\boxed{7}"
    assert all(is_correct(text, "7") == 1.0 for text in answers.values())
    assert {style: is_clear(text) for style, text in answers.items()} == {
        "direct": 0.0, "plain": 0.0, "enumerated": 1.0, "verbose": 0.0}
    lengths = {style: len(text) for style, text in answers.items()}
    assert lengths["direct"] < lengths["plain"] < lengths["enumerated"] < lengths["verbose"]
    assert is_correct(task.completion(prompt, "plain", boxed=False), "7") == 0.0
    assert set("".join(answers.values())) <= set(task.ALPHABET)


def test_problems_and_sft_data_are_seeded():
    assert task.problems(20, 3) == task.problems(20, 3) != task.problems(20, 4)
    first = task.sft_examples(task.STYLE_MIXES["verbose"], 50, 0, "<eos>")
    assert first == task.sft_examples(task.STYLE_MIXES["verbose"], 50, 0, "<eos>")
    assert all(row["completion"].endswith("<eos>") for row in first)
    efficient = task.sft_examples(task.STYLE_MIXES["efficient"], 200, 0, "<eos>")
    assert not any(row["completion"].startswith(("\\boxed", "0<", "1<")) for row in efficient)  # no direct answers
    assert task.eval_set(10)[0] != [row["prompt"] for row in task.rl_dataset(10)]  # separate seed streams


def test_style_mix_validation_names_the_field():
    with pytest.raises(ValueError, match="verbose = -0.1 is invalid"):
        task.StyleMix(direct=0.5, plain=0.6, enumerated=0.0, verbose=-0.1)
    with pytest.raises(ValueError, match="sum to 1.2"):
        task.StyleMix(direct=0.5, plain=0.5, enumerated=0.2, verbose=0.0)
    with pytest.raises(ValueError, match="mix = 'terse' is invalid"):
        task.StylePolicyConfig(mix="terse")


def test_style_policy_sft_is_deterministic_and_speaks_the_alphabet(tmp_path):
    import torch

    config = task.StylePolicyConfig(sft_examples=128, max_steps=4, batch_size=16)
    first, tokenizer, history = task.train_style_policy(config, tmp_path / "a")
    second, _, _ = task.train_style_policy(config, tmp_path / "b")
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert first.config.use_cache and len(history) >= 1
    encoded = tokenizer(["3572="], return_tensors="pt", add_special_tokens=False)
    output = first.generate(**encoded, do_sample=False, max_new_tokens=10, pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(output[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    assert set(text) <= set(task.ALPHABET)
