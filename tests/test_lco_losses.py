"""LCO spec checks N1-N13, N15-N17 on the per-token losses, each next to a control that a wrong formula fails.

The regression tests at the end pin down defects these checks found in an earlier :mod:`rlvr_dynamics.lco.losses`
(float32 rho, 1 - pi_i from exp(log pi_i), the cap on lowered tokens, log-cosh near 0, bf16 confident tokens).
"""

import math
from dataclasses import replace

import pytest
import torch

from rlvr_dynamics.lco import checks as chk
from rlvr_dynamics.lco.losses import LCO_LOSSES, LOSSES, LossOptions, log_cosh, per_token_loss, v1_target_logprobs

CASES = 30
EXACT_RHO = LossOptions(rho_pos=1.5, rho_neg=0.5)  # exact in float32 (see test_v1_rho_is_float64)
F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with chk.single_thread():
        yield


@pytest.fixture
def batches():
    return chk.random_tokens(1234, CASES)


def _wrong(form):
    """A closed form that a correct comparison must reject."""
    return lambda name, tokens, options: form(tokens, options)


# ------------------------------------------------------------------ N1-N3 (C1)
def test_n1_softmax_jacobian():
    assert chk.check_softmax_jacobian(0, CASES)["max_error"] <= 1e-12


@pytest.mark.parametrize("name", ["sft", "pg", "pg_is", *LCO_LOSSES])
def test_n2_gradient_matches_closed_form(name, batches):
    assert chk.max_gradient_error(name, batches, EXACT_RHO) <= 1e-10


def test_n2_ppo_regions():
    out = chk.check_gradients(7, CASES, EXACT_RHO)
    assert out["ppo_active"] <= 1e-10
    assert out["ppo_active_max_abs"] > 1e-3  # the active region really moves
    assert out["ppo_clipped_high_max_abs"] == 0.0
    assert out["ppo_clipped_low_max_abs"] == 0.0


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("lco", lambda t, o: t.probs - chk.reference_v1_target(t.anchor, t.actions, t.advantages, o)),  # no |Psi|
        ("lco_mse", lambda t, o: chk.closed_form_gradient("lco_mse", t, o) / 2),  # no factor 2
        ("pg_is", lambda t, o: t.advantages[:, None] * (t.probs - t.one_hot)),  # no ratio pi_i / pi_old
        ("lco_lch", lambda t, o: chk.closed_form_gradient("lco_mse", t, o) / 2),  # residual instead of tanh
    ],
)
def test_n2_detects_wrong_closed_form(name, wrong, batches):
    assert chk.max_gradient_error(name, batches, EXACT_RHO, closed_form=_wrong(wrong)) > 1e-3


def test_n3_sft_hessian():
    out = chk.check_sft_hessian(0, CASES)
    assert out["formula_error"] <= 1e-12
    assert out["min_eigenvalue"] >= -1e-10
    assert out["max_null_residual"] <= 1e-10


@pytest.mark.parametrize("name", LOSSES)
def test_hessian_matches_closed_form(name, batches):
    assert chk.max_hessian_error(name, batches, EXACT_RHO) <= 1e-8


def test_hessian_comparison_detects_missing_factor(batches):
    wrong = _wrong(lambda t, o: softmax_hessian(t))  # V1-LCO without |Psi|
    assert chk.max_hessian_error("lco", batches, EXACT_RHO, closed_form=wrong) > 1e-3
    half = _wrong(lambda t, o: chk.closed_form_hessian("lco_mse", t, o) / 2)  # MSE Hessian I instead of 2 I
    assert chk.max_hessian_error("lco_mse", batches, EXACT_RHO, closed_form=half) > 0.5
    mse_half = LossOptions(mse_half=True)
    assert chk.max_hessian_error("lco_mse", batches, mse_half) <= 1e-12  # the 1/2 option is honoured


def softmax_hessian(tokens):
    return chk.softmax_fisher(tokens.probs)


# ------------------------------------------------------------------ N4-N5 (C2, C3)
def test_n4_pg_hessian_sign():
    out = chk.check_pg_hessian(0, CASES)
    assert out["formula_error"] <= 1e-12
    assert out["min_eig_pos"] >= -1e-10
    assert out["max_eig_neg"] <= 1e-10
    assert out["not_negative"] == 0


def test_n4_negative_pg_is_not_psd(batches):
    for tokens in batches:
        negative = replace(tokens, advantages=-tokens.advantages.abs())
        lam_min = chk.eigenvalues(chk.autograd_hessian("pg", negative))[:, 0]
        assert (lam_min < -1e-6).all()


def test_n5_pg_is_exact_convexity_region():
    out = chk.check_pg_is_hessian(0, 60)
    assert out["formula_error"] <= 1e-8
    assert out["curvature_error"] <= 1e-10
    assert out["mismatches"] == 0
    assert out["psd"] > 0 and out["indefinite"] > 0  # both sides of the statement were exercised
    assert out["ppo_active_error"] <= 1e-8
    assert out["ppo_clipped_max_abs"] == 0.0


def _single(logits, action, advantage):
    z = torch.tensor([logits], dtype=F64)
    actions = torch.tensor([action])
    return chk.Tokens(z, z.clone(), actions, torch.tensor([advantage], dtype=F64),
                      torch.log_softmax(z, -1)[:, action])


def test_n5_pg_is_positive_low_probability_is_indefinite():
    tokens = _single([0.0, 1.0, 2.0, -1.0], 0, 1.0)  # Psi > 0, pi_i < 1/2
    eig = chk.eigenvalues(chk.autograd_hessian("pg_is", tokens))[0]
    assert eig[0] < -1e-3 and eig[-1] > 1e-3
    assert not chk.pg_is_psd(chk.autograd_hessian("pg_is", tokens), tokens)[0]


def test_n5_pg_is_positive_high_probability_is_psd_papers_overstate():
    tokens = _single([3.0, 1.0, 0.0, -1.0], 0, 1.0)  # Psi > 0, pi_i >= 1/2: PSD (spec G24)
    assert float(tokens.sampled_prob) > 0.5
    assert chk.pg_is_psd(chk.autograd_hessian("pg_is", tokens), tokens)[0]
    negative = replace(tokens, advantages=-tokens.advantages)  # Psi < 0: indefinite for n >= 3
    assert not chk.pg_is_psd(chk.autograd_hessian("pg_is", negative), negative)[0]


# ------------------------------------------------------------------ N6-N8 (C6)
def test_n6_v1_target_forms():
    out = chk.check_v1_target(0, CASES, EXACT_RHO, rhos=(0.5, 0.75, 1.5, 3.0))
    assert out["ratio_sampled"] <= 1e-10
    assert out["delta_z_form"] <= 1e-12
    assert out["log_odds_form"] <= 1e-12
    assert out["cap_violations"] == 0 and out["infeasible"] > 0
    assert out["shift_finite_when_infeasible"] == 0


def test_n6_cap_applied_and_reference_differs_from_raw_rho():
    tokens = _single([2.0, 0.0, -1.0], 0, 1.0)  # pi_i ~ 0.84: 1.8 pi_i > 1, infeasible
    target = chk.builder_probs(tokens, LossOptions())
    assert torch.isfinite(target).all() and abs(float(target.sum()) - 1) < 1e-12
    assert float(target[0, 0]) == pytest.approx(0.99, abs=1e-12)
    assert not torch.isfinite(chk.v1_logit_shift(tokens.sampled_prob, 1.8)).all()


def test_n7_zero_loss_and_gradient_at_target():
    out = chk.check_zero_at_target(0, CASES, EXACT_RHO)
    for name in LCO_LOSSES:
        assert out[f"{name}_loss"] <= 1e-12 and out[f"{name}_grad"] <= 1e-12, name
    assert out["lco_mse_shift_zero"] == 0 and out["lco_lch_shift_zero"] == 0


def test_n8_lco_hessians():
    out = chk.check_lco_hessians(0, CASES, EXACT_RHO)
    for name in LCO_LOSSES:
        assert out[f"{name}_error"] <= 1e-8, name
    assert out["lco_neg_min_eig"] <= 1e-10 and out["lco_kld_neg_min_eig"] <= 1e-10
    assert out["lch_eigs_outside_0_1"] == 0


# ------------------------------------------------------------------ N9-N11 (C18, C7)
def test_n9_first_order_equivalence():
    out = chk.check_first_order_equivalence(0, CASES, EXACT_RHO)
    assert out["lco_cos_gap"] <= 1e-12 and out["lco_kld_cos_gap"] <= 1e-12
    assert out["lco_ratio_uncapped"] <= 1e-10 and out["lco_ratio_capped"] <= 1e-10
    assert out["lco_kld_ratio"] <= 1e-10
    assert out["pg_is_vs_pg"] == 0.0


def test_n9_detects_wrong_ratio(batches):
    tokens = chk.at_anchor(batches[1], torch.ones_like(batches[1].advantages))
    g, g_pg = chk.autograd_gradient("lco", tokens, EXACT_RHO), chk.autograd_gradient("pg", tokens, EXACT_RHO)
    p = tokens.sampled_prob
    keep = 1.5 * p < 0.99
    ratio = (g.norm(dim=-1) / g_pg.norm(dim=-1))[keep]
    right = (0.5 * p / (1 - p))[keep]
    assert torch.allclose(ratio, right, rtol=1e-8)
    assert not torch.allclose(ratio, (0.5 * p)[keep], rtol=1e-3)  # without 1 / (1 - pi_i)


def test_n10_optimal_policy():
    out = chk.check_optimal_policy(0, CASES)
    assert out["max_prob_error"] <= 1e-6
    assert out["closed_form_beaten_by"] <= 1e-12


def test_n10_objective_hessian_matches_autograd():
    gen = torch.Generator().manual_seed(3)
    z, a, z_old = (torch.randn(6, generator=gen, dtype=F64) for _ in range(3))
    log_old = torch.log_softmax(z_old, -1)

    def objective(x):
        log_pi = torch.log_softmax(x, -1)
        return (log_pi.exp() * (a - 1.5 * (log_pi - log_old))).sum()

    auto = torch.autograd.functional.hessian(objective, z).numpy()
    mine = chk.regularised_objective_hessian(z.numpy(), a.numpy(), log_old.numpy(), 1.5)
    assert abs(auto - mine).max() <= 1e-12


def test_n10_closed_form_beats_a_wrong_target():
    gen = torch.Generator().manual_seed(5)
    z_old, a = (torch.randn(8, generator=gen, dtype=F64).numpy() for _ in range(2))
    log_old = z_old - torch.logsumexp(torch.from_numpy(z_old), 0).item()
    best = chk.regularised_objective(z_old + a / 2.0, a, log_old, 2.0)[0]
    assert chk.regularised_objective(z_old + a, a, log_old, 2.0)[0] < best - 1e-3  # A instead of A / beta


def test_n11_shift():
    out = chk.check_shift(0, CASES)
    assert out["argmin_error"] <= 1e-10
    assert out["kld_shift_change"] <= 1e-12


# ------------------------------------------------------------------ N12-N15 (C4)
def test_n12_gradient_norm_bounds():
    out = chk.check_gradient_bounds(0, draws=1500)
    assert out["mse_identity"] <= 1e-12
    assert all(out[key] == 0 for key in out if key != "mse_identity")


def test_n12_detects_too_tight_bound():
    gen = torch.Generator().manual_seed(0)
    z, z_star = (3 * torch.randn(500, 8, generator=gen, dtype=F64) for _ in range(2))
    norm, bound = chk.norm_bounds(z, z_star)["lco_kld"]
    assert chk.count_violations(norm, bound) == 0
    assert chk.count_violations(norm, bound / 2) > 0  # sqrt(KL / 2) instead of sqrt(2 KL)


def test_n13_coordinate_monotonicity():
    out = chk.check_coordinate_monotonicity(0, CASES, options=EXACT_RHO)
    assert all(out[f"{name}_increases"] == 0 for name in LCO_LOSSES)
    assert out["pg_is_monotone_paths"] == 0
    assert out["pg_grad_decreases"] == 0 and out["pg_loss_increases"] == 0


def test_n13_detects_non_monotone_pg_is():
    tokens = _single([0.0, 0.5, -0.3, 1.0], 0, -1.0)
    path = chk.probability_path(tokens, torch.tensor([0.9], dtype=F64), torch.tensor([0.1], dtype=F64), 101)
    _, grad = chk.coordinate_path("pg_is", tokens, path)
    assert int(chk.increases(grad)[0]) > 0 and int(chk.increases(-grad)[0]) > 0
    peak = torch.sigmoid(path[0] - torch.logsumexp(tokens.logits[0, 1:], 0))[grad[0].argmax()]
    assert abs(float(peak) - 0.5) < 0.02  # |pi_i (1 - pi_i)| peaks at pi_i = 1/2
    target = chk.coordinate_target("lco", tokens, EXACT_RHO)
    _, lco_grad = chk.coordinate_path("lco", tokens, chk.linear_path(target + 4, target, 101), EXACT_RHO)
    assert int(chk.increases(lco_grad)[0]) == 0


@pytest.mark.parametrize("half", [False, True])
def test_n15_linearised_convergence(half):
    out = chk.check_linearised_convergence(0, cases=20, steps=30, options=LossOptions(entries="all", mse_half=half))
    assert out["recursion_error"] <= 1e-10
    assert out["rate_violations"] == 0
    assert out["max_radius"] < 1


# ------------------------------------------------------------------ N16-N17 (C6)
def test_n16_log_cosh():
    out = chk.check_log_cosh(0, CASES)
    assert out["absolute_error"] <= 1e-12
    assert out["gradient_error"] <= 1e-12
    assert out["large_relative_error"] <= 1e-12 and out["large_not_finite"] == 0
    assert out["large_gradient_error"] == 0.0
    moderate = torch.linspace(0.1, 20, 200, dtype=F64)
    rel = ((log_cosh(moderate) - chk.log_cosh_reference(moderate)) / chk.log_cosh_reference(moderate)).abs().max()
    assert rel <= 1e-12


def test_n17_precision_float32_targets():
    out = chk.check_precision(0, CASES)
    assert out["min_kl"] >= -1e-6
    assert out["not_float32"] == 0 and out["not_finite"] == 0
    assert out["zero_target_entries"] > 0


# ------------------------------------------------------------------ regressions: defects these checks found in losses.py
def test_v1_rho_is_float64():
    z = torch.zeros(1, 4, dtype=F64)
    target = v1_target_logprobs(z, torch.tensor([0]), torch.tensor([1.0], dtype=F64)).exp()
    assert float(target[0, 0]) / 0.25 == pytest.approx(1.8, rel=1e-12)


def test_v1_target_normalised_for_confident_token():
    z = torch.tensor([[25.0, 0.0, 0.0]], dtype=F64)
    target = v1_target_logprobs(z, torch.tensor([0]), torch.tensor([-1.0], dtype=F64), LossOptions(rho_neg=0.5)).exp()
    assert abs(float(target.sum()) - 1) <= 1e-12


def test_v1_rho_one_keeps_confident_negative_token():
    z = torch.tensor([[6.0, 0.0, 0.0]], dtype=F64)
    target = v1_target_logprobs(z, torch.tensor([0]), torch.tensor([-1.0], dtype=F64), LossOptions(rho_pos=1.0, rho_neg=1.0))
    assert torch.allclose(target.exp(), torch.softmax(z, -1), atol=1e-12)


def test_log_cosh_relative_accuracy_near_zero():
    assert chk.check_log_cosh(0, CASES)["relative_error"] <= 1e-12


def test_v1_lco_bf16_confident_negative_token():
    z = torch.tensor([[18.0, 0.0, 0.0, 1.0]]).to(torch.bfloat16)
    loss = per_token_loss("lco", z, torch.tensor([0]), torch.tensor([-1.0]))
    exact = per_token_loss("lco", z.double(), torch.tensor([0]), torch.tensor([-1.0], dtype=F64))
    assert abs(float(loss) - float(exact)) <= 1e-4 * max(1.0, float(exact))


# ------------------------------------------------------------------ API
@pytest.mark.parametrize(
    ("field", "value"),
    [("rho_neg", 1.5), ("rho_pos", 0.5), ("p_max", 1.0), ("beta", 0.0), ("entries", "most"), ("clip_epsilon", 1.2),
     ("min_prob_gate", -0.1), ("neg_beta_scale", 0.0), ("entries_topk", -1)],
)
def test_loss_options_validation_names_the_parameter(field, value):
    with pytest.raises(ValueError, match=field):
        LossOptions(**{field: value})


def test_unknown_loss_lists_allowed_values():
    z = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="nope") as info:
        per_token_loss("nope", z, torch.zeros(2, dtype=torch.long))
    assert all(name in str(info.value) for name in LOSSES)


@pytest.mark.parametrize("name", LOSSES)
def test_leading_dims_match_token_by_token(name):
    gen = torch.Generator().manual_seed(11)
    batch, steps, vocab = 2, 3, 16
    z = 2 * torch.randn(batch, steps, vocab, generator=gen, dtype=F64)
    anchor = z + 0.5 * torch.randn(batch, steps, vocab, generator=gen, dtype=F64)
    actions = torch.randint(vocab, (batch, steps), generator=gen)
    adv = torch.randn(batch, steps, generator=gen, dtype=F64)
    old = torch.log_softmax(anchor, -1).gather(-1, actions[..., None])[..., 0]
    loss = per_token_loss(name, z, actions, adv, anchor, old)
    assert loss.shape == (batch, steps)
    for b in range(batch):
        for t in range(steps):
            single = per_token_loss(name, z[b, t], actions[b, t], adv[b, t], anchor[b, t], old[b, t])
            assert float(single) == pytest.approx(float(loss[b, t]), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_bf16_logits_give_finite_losses_and_gradients(name):
    gen = torch.Generator().manual_seed(12)
    z = (2 * torch.randn(2, 4, 32, generator=gen)).to(torch.bfloat16).requires_grad_(True)
    actions = torch.randint(32, (2, 4), generator=gen)
    adv = torch.tensor([[1.0, -1.0, 0.5, -2.0], [0.0, 1.0, -1.0, 1.0]])
    loss = per_token_loss(name, z, actions, adv, anchor=z.detach() + 0.5)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    assert loss.shape == (2, 4) and torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert grad.dtype == torch.bfloat16
    if name in LCO_LOSSES:
        assert loss.dtype == torch.float32  # targets built in float32 (N17)


def test_check_table_shape_and_determinism():
    first, second = chk.check_table(3, cases=12), chk.check_table(3, cases=12)
    assert list(first.columns) == ["claim", "check", "identity", "value", "tolerance", "holds"]
    assert first.equals(second)
    assert set(first["claim"]) == {"C1", "C2", "C3", "C4", "C6", "C7", "C18"}
    expected_checks = {f"N{k}" for k in range(1, 18) if k != 14}
    assert set(first["check"]) == expected_checks
    assert (first["holds"] == (first["value"] <= first["tolerance"])).all()
    assert not math.isnan(first["value"].sum())
