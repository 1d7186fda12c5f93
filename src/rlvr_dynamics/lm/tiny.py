"""A tiny character-level Llama policy that the HF/TRL stack accepts as is.

The vocabulary is one token per character of the arithmetic tasks plus ``<pad>`` and
``<eos>`` (:func:`build_char_tokenizer`); the model is a ``LlamaForCausalLM`` built from a
config (:func:`build_tiny_llama`), about 0.1M parameters at the default size (spec X2:
2 layers, d_model 64, 4 heads, MLP 256). No BOS token is used anywhere, so a prompt is
exactly its characters and a completion is its characters followed by ``<eos>``.
"""

from __future__ import annotations

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ALPHABET = "0123456789+-*=\nanswer:"
PAD, EOS = "<pad>", "<eos>"


def build_char_tokenizer(alphabet: str = ALPHABET) -> PreTrainedTokenizerFast:
    """One token per character (left padding, as TRL's generation expects)."""
    symbols = list(dict.fromkeys(alphabet))
    vocab = {PAD: 0, EOS: 1} | {ch: i + 2 for i, ch in enumerate(symbols)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, padding_side="left")
    tokenizer.model_max_length = 512
    return tokenizer


def build_tiny_llama(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 256,
    max_length: int = 128,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A randomly initialised Llama of the given size over ``tokenizer``'s vocabulary (seeded)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
