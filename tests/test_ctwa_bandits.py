"""The interference bandits (spec N13, N14) with the eight methods: the spec's thresholds, determinism, no NaN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlvr_dynamics.multiobjective import bandits as B
from rlvr_dynamics.multiobjective.methods import METHODS

SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def toy_a() -> pd.DataFrame:
    frame = B.run_grid(["A"], ["linear", "ctwa"], SEEDS, options={"ctwa": {"weight_learning_rate": 0.2, "gate_targets": None}})
    return B.final_summary(frame).set_index("method")


@pytest.fixture(scope="module")
def toy_b() -> pd.DataFrame:
    frame = B.run_grid(["B", "B_efficient"], ["linear", "ctwa", "lagrangian"], SEEDS,
                       options={"ctwa": {"weight_learning_rate": 0.2}})
    return B.final_summary(frame).set_index(["toy", "method"])


def test_n13_linear_loses_accuracy(toy_a):
    linear = toy_a.loc["linear"]
    assert linear.min_accuracy <= 0.05
    assert linear.final_conciseness > 0.99 and linear.final_clarity > 0.99  # spec: final E = (0.003, 0.997, 0.998)


def test_n13_ctwa_protects_accuracy(toy_a):
    ctwa = toy_a.loc["ctwa"]
    assert ctwa.negative_c_bar_acc <= 0.05 and ctwa.min_accuracy >= 0.4 and ctwa.final_accuracy >= 0.85


def test_n14_thresholds(toy_b):
    linear, ctwa, lagrangian = (toy_b.loc[("B", m)] for m in ("linear", "ctwa", "lagrangian"))
    assert linear.final_accuracy <= linear.initial_accuracy - 0.08
    assert ctwa.final_accuracy >= linear.final_accuracy + 0.15
    assert ctwa.final_length <= 0.9 * 400 and ctwa.final_clarity >= 0.95
    assert lagrangian.final_accuracy >= 0.95 and lagrangian.final_length >= 0.98 * 400
    assert ctwa.all_c_bar_positive >= 0.9  # Fig. 3's pattern on toy B


def test_efficient_variant_has_no_interference(toy_b):
    linear = toy_b.loc[("B_efficient", "linear")]
    assert linear.initial_accuracy == pytest.approx(0.62)
    assert linear.final_accuracy > 0.9 and linear.final_length < linear.initial_length


def test_runs_are_deterministic():
    first, second = (B.simulate("B", "ctwa", 5, steps=30) for _ in range(2))
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("toy", B.TOYS)
def test_every_method_runs_without_nan(toy):
    for name in METHODS:
        frame = B.simulate(toy, name, 0, steps=25)
        assert np.isfinite(frame.E_accuracy).all() and np.isfinite(frame.filter(like="weight/").to_numpy()).all()


def test_bad_toy_is_named():
    with pytest.raises(ValueError, match="toy = 'C' is invalid"):
        B.simulate("C", "linear", 0)
