"""Prompt-representation orthogonality (claim C10, paper §4.1 / Fig. 1) on a tiny random Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvr_dynamics.lm import representations as rep
from rlvr_dynamics.lm.tiny import build_tiny_llama

torch.set_num_threads(1)

TEXTS = ["1+2=", "12*34=", "7", "99-1=\nanswer:", "3*3*3=", "45+54=", "0", "8-8=\n"]


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_llama(tokenizer, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=64)


def manual_hidden(model, tokenizer, text: str) -> torch.Tensor:
    """hidden_states[-2] of one unpadded text, (T, D)."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True).hidden_states[-2][0]


def test_tokenizer_pads_left(tokenizer):
    assert tokenizer.padding_side == "left"


def test_mean_pooling_matches_manual_and_is_batch_invariant(model, tokenizer):
    batched = rep.prompt_representations(model, tokenizer, TEXTS, pooling="mean", batch_size=4)["mean"]
    single = rep.prompt_representations(model, tokenizer, TEXTS, pooling="mean", batch_size=1)["mean"]
    assert batched.shape == (len(TEXTS), 32) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, single, atol=1e-5)
    manual = np.stack([manual_hidden(model, tokenizer, t).mean(dim=0).double().numpy() for t in TEXTS])
    np.testing.assert_allclose(batched, manual, atol=1e-5)


def test_pool_hidden_states_masked_mean_left_padded():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    hidden[1, 0] = float("nan")  # a padded position must not leak into the pool
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    pooled = rep.pool_hidden_states(hidden, mask, "mean")
    torch.testing.assert_close(pooled[0], hidden[0].mean(dim=0))
    torch.testing.assert_close(pooled[1], hidden[1, 2:].mean(dim=0))


def test_last_pooling_picks_last_real_token(model, tokenizer):
    last = rep.prompt_representations(model, tokenizer, TEXTS, pooling="last", batch_size=4)["last"]
    manual = np.stack([manual_hidden(model, tokenizer, t)[-1].double().numpy() for t in TEXTS])
    np.testing.assert_allclose(last, manual, atol=1e-5)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert rep.last_token_index(right).tolist() == [1, 3]
    assert rep.last_token_index(left).tolist() == [3, 3]


def test_training_mode_restored(model, tokenizer):
    model.train()
    rep.prompt_representations(model, tokenizer, TEXTS[:2])
    assert model.training
    model.eval()
    rep.prompt_representations(model, tokenizer, TEXTS[:2])
    assert not model.training


def test_centred_rows_sum_to_zero():
    vectors = np.random.default_rng(0).normal(3.0, 1.0, size=(20, 7))
    np.testing.assert_allclose(rep.center_rows(vectors).sum(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(rep.center_rows(torch.tensor(vectors)).sum(axis=0), 0.0, atol=1e-10)


def test_random_pairs_distinct_ordered_deterministic():
    pairs = rep.random_pairs(50, 300, seed=3)
    assert pairs.shape == (300, 2) and pairs.dtype == np.int64
    assert np.all(pairs[:, 0] < pairs[:, 1]) and pairs.min() >= 0 and pairs.max() < 50
    assert len({tuple(p) for p in pairs.tolist()}) == 300
    np.testing.assert_array_equal(pairs, rep.random_pairs(50, 300, seed=3))
    assert not np.array_equal(pairs, rep.random_pairs(50, 300, seed=4))


def test_random_pairs_all_when_too_many():
    pairs = rep.random_pairs(5, 100, seed=0)
    assert pairs.shape == (10, 2)
    assert {tuple(p) for p in pairs.tolist()} == {(i, j) for i in range(5) for j in range(i + 1, 5)}
    assert rep.random_pairs(1, 10).shape == (0, 2)


def test_random_pairs_unranking_covers_every_pair():
    """Drawing all but one pair exercises the index -> (i, j) map on every row."""
    n = 9
    pairs = rep.random_pairs(n, n * (n - 1) // 2 - 1, seed=1)
    assert np.all(pairs[:, 0] < pairs[:, 1]) and len({tuple(p) for p in pairs.tolist()}) == len(pairs)


def test_gaussian_cosines_spec_check_16():
    vectors = torch.from_numpy(np.random.default_rng(0).standard_normal((100, 10_000)))
    cosines = rep.pairwise_cosines(vectors)
    stats = rep.cosine_statistics(cosines)
    assert cosines.shape == (100 * 99 // 2,) and cosines.dtype == np.float64
    assert abs(stats["mean"]) < 0.003
    assert abs(stats["std"] - 0.01) < 0.001
    assert stats["frac_small"] == 1.0
    assert stats["n_pairs"] == 4950 and stats["n_dropped"] == 0


def test_hand_cosines_and_zero_rows():
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    cosines = rep.pairwise_cosines(vectors)  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    np.testing.assert_allclose(cosines[[0, 1, 3]], [0.0, 1.0, 0.0], atol=1e-12)
    assert np.isnan(cosines[[2, 4, 5]]).all()
    stats = rep.cosine_statistics(cosines)
    assert stats["n_pairs"] == 3 and stats["n_dropped"] == 3
    assert stats["mean"] == pytest.approx(1 / 3) and stats["frac_positive"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(rep.pair_cosines(vectors, np.array([[0, 2], [0, 1]])), [1.0, 0.0], atol=1e-12)
    assert rep.pair_cosines(vectors, np.array([[0, 1]]))[0] == pytest.approx(0.0)


def test_representation_orthogonality_table(model, tokenizer):
    table = rep.representation_orthogonality(model, tokenizer, TEXTS, n_pairs=10, seed=0, batch_size=3)
    assert list(table.columns) == ["pooling", "centred", "mean_abs_cos", "std_abs_cos", "frac_below_0.15", "n_texts", "n_pairs"]
    assert list(zip(table.pooling, table.centred, strict=True)) == [
        ("mean", False),
        ("mean", True),
        ("last", False),
        ("last", True),
    ]
    assert (table.n_texts == len(TEXTS)).all() and (table.n_pairs == 10).all()
    assert table["frac_below_0.15"].between(0, 1).all() and table.mean_abs_cos.between(0, 1).all()


def test_bad_pooling_raises_before_work(tokenizer):
    class Exploding(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("model must not run")

    with pytest.raises(ValueError, match="pooling"):
        rep.representation_orthogonality(Exploding(), tokenizer, TEXTS, pooling=("mean", "max"))
    with pytest.raises(ValueError, match="pooling"):
        rep.prompt_representations(Exploding(), tokenizer, TEXTS, pooling="cls")
