"""CTWA theory checks (spec N1-N8, N10, N11): each row at its tolerance, the documented failure, negative controls."""

from __future__ import annotations

import numpy as np
import pytest

from rlvr_dynamics.multiobjective import theory as T
from rlvr_dynamics.simulator import softmax


@pytest.fixture(scope="module")
def table():
    return T.check_table(0)


def test_every_check_behaves_as_the_spec_says(table):
    bad = table[table.holds != table.expected]
    assert bad.empty, bad.to_string()
    assert set(table.check) == {"N1", "N2", "N3", "N4", "N5", "N6", "N7", "N8", "N10", "N11"}


def test_checks_hold_for_another_seed():
    table = T.check_table(1)
    assert (table.holds == table.expected).all()


def test_n11_counterexample_numbers():
    values = T.theorem_6_5(np.array([0.8, 0.7]), np.array([0.08, 0.06]), 10.0)
    assert values["p_best"] == pytest.approx(0.5498, abs=5e-5)
    assert values["gamma"] == pytest.approx(40.53, abs=5e-3)
    assert values["mu"] == pytest.approx(9.80, abs=5e-3)
    assert values["half_grad_sq"] == pytest.approx(0.0613, abs=5e-5)
    assert values["mu_gap"] == pytest.approx(0.441, abs=5e-4)
    assert values["half_grad_sq"] < values["mu_gap"]


def test_n6_sign_counterexample():
    p, r, w = np.array([0.2, 0.64, 0.16]), np.array([0.0, 0.0, 1.0]), np.array([-1.5, 1.3, 0.8])
    assert T.covariance(p, r, w) == pytest.approx(0.0224, abs=5e-5)
    assert T.vanilla_coefficient(p, r, w) == pytest.approx(-0.0251, abs=5e-5)


def test_negative_control_vanilla_gradient_does_not_follow_the_covariance():
    rng = np.random.default_rng(3)
    theta, w, r = rng.normal(size=8), rng.normal(size=8), rng.integers(0, 2, 8).astype(float)
    p = softmax(theta)
    vanilla = (softmax(theta + 1e-6 * p * (w - p @ w)) @ r - p @ r) / 1e-6
    assert abs(vanilla - T.covariance(p, r, w)) > 1e-3  # the law is specific to the natural-gradient geometry
    natural = (softmax(theta + 1e-6 * T.natural_direction(p, w)) @ r - p @ r) / 1e-6
    assert natural == pytest.approx(T.covariance(p, r, w), abs=1e-6)


def test_two_mode_reverses_when_the_score_prefers_the_good_mode():
    falling = T.two_mode(0.3, 0.8, 0.5, 1.0, 0.0, 0.5, 30)
    rising = T.two_mode(0.3, 0.5, 0.8, 1.0, 0.0, 0.5, 30)
    assert (np.diff(falling.expected_r) < 0).all() and (np.diff(rising.expected_r) > 0).all()
    assert (rising.covariance > 0).all()


def test_clip_indicator_eq6():
    advantage = np.array([1.0, 1.0, -1.0, -1.0])
    ratio = np.array([1.1, 1.3, 0.7, 1.3])
    np.testing.assert_array_equal(T.clip_indicator(advantage, ratio, 0.2), [1.0, 0.0, 0.0, 1.0])
