"""The LCO losses inside the engine: selection by name, anchors, aggregation, +-1 rewards, update KL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlvr_dynamics.lco.losses import LOSSES, LossOptions, per_token_loss, v1_target_logprobs
from rlvr_dynamics.lm import diagnostics as diag
from rlvr_dynamics.lm.engine import EngineConfig, train_policy
from rlvr_dynamics.lm.logit_loss import LogitLoss, compress_anchor, expand_anchor
from rlvr_dynamics.lm.rewards import SignedReward
from rlvr_dynamics.lm.tiny import build_tiny_llama

torch.set_num_threads(1)


def odd_length(completions, **_):
    return [float(len(c) % 2) for c in completions]


def tiny(tokenizer, seed=0):
    return build_tiny_llama(tokenizer, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=seed)


def config(**overrides) -> EngineConfig:
    base = {"max_steps": 2, "prompts_per_step": 4, "generations": 4, "max_completion_length": 4, "learning_rate": 0.05,
            "optimizer": "adamw", "collapse_reward": -1.0}
    return EngineConfig(**(base | overrides))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("rule", ["grpo", "ppo_clip"])
def test_every_logit_loss_trains_in_the_engine(loss, rule, tokenizer, dataset):
    model = tiny(tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    result = train_policy(model, tokenizer, dataset, [SignedReward(odd_length)],
                          config(update_rule=rule, policy_loss=loss, ppo_iterations=2, max_steps=3),
                          [diag.GradNorms(), diag.UpdateKL()])
    assert result.outcome == "completed"
    steps = result.steps.iloc[1:]
    assert np.isfinite(steps["policy/action_prob"]).all() and np.isfinite(steps["entropy"]).all()
    assert (steps["policy/update_kl"] >= 0).all()
    moved = sum(float((p.detach() - b).abs().sum()) for p, b in zip(result.model.parameters(), before, strict=True))
    assert moved > 0


def test_ppo_host_stores_the_rollout_anchor_and_reuses_it(tokenizer, dataset):
    seen = []

    class Spy(LogitLoss):
        def __call__(self, trainer, logps, old, advantages, mask, inputs):
            seen.append(("anchor_logits" in inputs, torch.allclose(inputs.get("anchor_logits", logps.new_zeros(1)).float()
                                                                   if "anchor_logits" in inputs else logps.new_zeros(1),
                                                                   inputs["completion_logits"].detach().float(), atol=1e-5)))
            return super().__call__(trainer, logps, old, advantages, mask, inputs)

    train_policy(tiny(tokenizer), tokenizer, dataset, [SignedReward(odd_length)],
                 config(update_rule="ppo_clip", ppo_iterations=2, max_steps=2), token_loss=Spy("lco"))
    assert [s[0] for s in seen] == [True, True]
    assert seen[0][1] and not seen[1][1]  # first update: anchor = current logits; second: the stored rollout


def test_baseline_none_gives_the_raw_signed_reward(tokenizer, dataset):
    result = train_policy(tiny(tokenizer), tokenizer, dataset, [SignedReward(odd_length)],
                          config(update_rule="reinforce", baseline="none", policy_loss="pg", max_steps=1))
    batch = result.trainer.last_batch
    assert set(batch.rewards.tolist()) <= {-1.0, 1.0}
    np.testing.assert_allclose(batch.advantages.numpy(), batch.rewards.numpy())


def test_token_mean_and_sign_split_aggregation():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 6, (3, 4))
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    adv = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    inputs = {"completion_logits": logits, "completion_ids": ids}
    logps = F.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    per_token = per_token_loss("pg", logits, ids, adv[:, None].expand(3, 4))
    token_mean = LogitLoss("pg")(None, logps, logps.detach(), adv, mask, inputs)
    assert float(token_mean) == pytest.approx(float((per_token * mask).sum() / mask.sum()))
    split = LogitLoss("pg", aggregation="sign_split")(None, logps, logps.detach(), adv, mask, inputs)
    pos, neg = mask * (adv[:, None] > 0), mask * (adv[:, None] < 0)
    expected = (per_token * pos).sum() / pos.sum() + (per_token * neg).sum() / neg.sum()
    assert float(split) == pytest.approx(float(expected))


def test_compressed_anchor_keeps_the_stored_entries_and_the_rest_mass():
    torch.manual_seed(1)
    old, now = 3 * torch.randn(5, 40), 3 * torch.randn(5, 40)
    actions = torch.randint(0, 40, (5,))
    full = expand_anchor(now, actions, compress_anchor(old, actions, k=40))
    assert torch.allclose(F.log_softmax(full, -1), F.log_softmax(old, -1), atol=1e-5)
    stored = compress_anchor(old, actions, k=4)
    anchor = expand_anchor(now, actions, stored)
    log_old, log_anchor = F.log_softmax(old, -1), F.log_softmax(anchor, -1)
    kept = torch.zeros_like(old, dtype=torch.bool).scatter(-1, stored["anchor_top_index"], True)
    kept = kept.scatter(-1, actions[:, None], True)
    assert torch.allclose(log_anchor[kept], log_old[kept], atol=1e-5)
    rest = lambda lp: torch.logsumexp(lp.masked_fill(kept, -torch.inf), -1)  # noqa: E731
    assert torch.allclose(rest(log_anchor), rest(log_old), atol=1e-5)
    # the V1 target on the sampled token is exact: rho pi_old,i
    adv = torch.ones(5)
    target = v1_target_logprobs(anchor, actions, adv).gather(-1, actions[:, None]).exp().squeeze(-1)
    expected = torch.clamp(1.8 * log_old.gather(-1, actions[:, None]).exp().squeeze(-1), max=0.99)
    assert torch.allclose(target, torch.maximum(expected, log_old.gather(-1, actions[:, None]).exp().squeeze(-1)), atol=1e-5)


def test_compressed_anchor_trains(tokenizer, dataset):
    result = train_policy(tiny(tokenizer), tokenizer, dataset, [SignedReward(odd_length)],
                          config(update_rule="ppo_clip", ppo_iterations=2, policy_loss="lco_kld", anchor_topk=3))
    assert result.outcome == "completed"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("policy_loss", "lco_v3", "policy_loss"), ("anchor", "old", "anchor"), ("loss_aggregation", "sum", "loss_aggregation"),
    ("loss_options", {"rho_neg": 1.5}, "rho_neg"), ("loss_options", {"gamma": 1.0}, "gamma"),
])
def test_bad_loss_settings_name_the_parameter(field, value, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(**{field: value})


def test_update_kl_is_zero_without_an_update(tokenizer, dataset):
    result = train_policy(tiny(tokenizer), tokenizer, dataset, [SignedReward(odd_length)],
                          config(policy_loss="lco", learning_rate=1e-12, loss_options={"rho_pos": 1.0, "rho_neg": 1.0}),
                          [diag.UpdateKL()])
    assert result.steps["policy/update_kl"].dropna().abs().max() < 1e-9


def test_loss_options_reach_the_loss():
    cfg = EngineConfig(policy_loss="lco_mse", loss_options={"beta": 0.5, "mse_half": True}, anchor="current")
    loss = cfg.logit_loss()
    assert loss.options == LossOptions(beta=0.5, mse_half=True) and loss.anchor == "current"
    assert EngineConfig().logit_loss() is None


def test_lco_launcher_dry_run_validates(capsys, tmp_path):
    from rlvr_dynamics.lco import training

    assert training.main(["--profile", "paper", "--arm", "grpo+lco", "--dry-run", "--run-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert '"policy_loss": "lco"' in out and '"use_vllm": true' in out
    assert training.main(["--profile", "paper", "--arm", "grpo+lcox", "--dry-run", "--run-dir", str(tmp_path)]) == 2
    assert "allowed values" in capsys.readouterr().out


def test_arm_names_agree_with_the_config():
    from rlvr_dynamics.config import LCO_ARMS, LCOTrainingParams
    from rlvr_dynamics.lco.training import ARMS, experiment_jobs

    assert tuple(ARMS) == LCO_ARMS
    jobs = experiment_jobs(LCOTrainingParams())
    keys = [(j.arm, j.lr, j.seed, j.rho) for j in jobs]
    assert len(keys) == len(set(keys))  # shared runs are listed once
    assert {j.experiment for j in jobs} == {"main", "lr_sweep", "rho_sweep", "high_ppl"}
