"""SmolLM2-135M-Instruct offline: GGUF -> plain fp32 model that TRL accepts, and one GRPO step on it."""

from __future__ import annotations

import pytest
import torch

from rlvr_dynamics.lm.engine import EngineConfig, train_policy
from rlvr_dynamics.lm.rewards import math_verify_reward

smollm2 = pytest.importorskip("rlvr_dynamics.lm.smollm2")


@pytest.fixture(scope="module")
def smol():
    try:
        smollm2.gguf_folder()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return smollm2.load_smollm2()


def test_converted_model_is_plain_float32(smol):
    model, tokenizer = smol
    assert not hasattr(model.config, "quantization_config")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"


def test_one_grpo_step_on_smollm2(smol):
    from datasets import Dataset

    from rlvr_dynamics.gradient_gap_lm import chat_prompt

    model, tokenizer = smol
    torch.set_num_threads(2)
    data = Dataset.from_list(
        [{"prompt": chat_prompt("What is 3+4?"), "target": "7"}, {"prompt": chat_prompt("What is 2+5?"), "target": "7"}]
    )
    config = EngineConfig(
        optimizer="adamw",
        learning_rate=1e-5,
        max_steps=1,
        prompts_per_step=2,
        generations=2,
        max_completion_length=8,
        max_grad_norm=1.0,
    )
    result = train_policy(model, tokenizer, data, [math_verify_reward], config)
    assert result.outcome == "completed" and result.steps.step.max() == 1
    assert torch.isfinite(torch.tensor(result.steps["grad_norm"].dropna().to_numpy())).all()
