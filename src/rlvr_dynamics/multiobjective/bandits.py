"""The two interference bandits of the CTWA spec (N13, N14) with every weighting method (float64 numpy).

* Toy A (N13): one context, six arms with fixed (accuracy, conciseness, clarity) attributes; the arm that is
  good at everything is rare, so the objectives genuinely trade off.
* Toy B (N14): a contextual, parameter-shared "3-token response" (reasoning steps k, filler v, format f from
  three softmaxes shared by all prompts); prompt difficulty d per group, ``acc = 1[k >= d]``,
  ``length = 100 + 80 k + 40 v``, conciseness = below the running mean of all training lengths, clarity = f.
  ``B_efficient`` is the spec's "efficient reasoner" (``length = 100 + 20 k + 80 v``), the model variant of C2.

One loop (:func:`simulate`) serves all eight methods of :mod:`rlvr_dynamics.multiobjective.methods`: sample
``groups x group_size`` responses, rewards, REINFORCE++ whitening (unweighted over the batch, as in N13/N14),
the statistics each method needs (per-objective gradient Gramian, surrogate losses, PAMA's ratio to the
initial policy), SGD ascent ``theta += lr mean_i A_i (e_{y_i} - p)`` per factor, then CTWA's post-update
completion weights ``w_i = A_i rho_i`` (toy B: ``A_i`` times the mean ratio over factors, N14). Every run
also logs the CTWA statistic ``c_m`` of its own update and its EMA, so Linear's covariances can be compared
(N13). The expected objectives are exact (enumerated), not sampled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rlvr_dynamics.multiobjective.methods import ObjectiveBatch, ctwa_covariances, make_method
from rlvr_dynamics.multiobjective.rewards import ConcisenessReward
from rlvr_dynamics.simulator import softmax

TOYS = ("A", "B", "B_efficient")
ARM_ATTRIBUTES = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=np.float64)
ARM_PROBS = np.array([0.6, 0.05, 0.15, 0.15, 0.002, 0.048])
FACTOR_PROBS = (np.array([0.05, 0.15, 0.3, 0.3, 0.2]), np.array([0.1, 0.1, 0.2, 0.3, 0.3]), np.array([0.8, 0.2]))
DIFFICULTY = (np.array([1, 2, 3, 4]), np.array([0.2, 0.3, 0.3, 0.2]))
LENGTHS = {"B": (100.0, 80.0, 40.0), "B_efficient": (100.0, 20.0, 80.0)}  # base, per step k, per filler v
DYNAMIC_REGULARIZATION = 0.01  # gap 13: lr^2 <g, g> / reg is O(0.01-0.1) per step at lr 0.1 on these toys


def _factors(toy: str) -> list[np.ndarray]:
    return [np.log(ARM_PROBS / ARM_PROBS.sum())] if toy == "A" else [np.log(p) for p in FACTOR_PROBS]


def expected_objectives(toy: str, logits: list[np.ndarray]) -> dict[str, float]:
    """Exact E[acc], E[clar] and E[len] (toy B) or E[conc] (toy A) of the current policy."""
    probs = [softmax(z) for z in logits]
    if toy == "A":
        acc, conc, clar = probs[0] @ ARM_ATTRIBUTES
        return {"E_accuracy": acc, "E_conciseness": conc, "E_clarity": clar}
    k, v, f = probs
    values, weights = DIFFICULTY
    accuracy = sum(w * k[d:].sum() for d, w in zip(values, weights, strict=True))
    base, per_k, per_v = LENGTHS[toy]
    return {"E_accuracy": accuracy, "E_length": base + per_k * (k @ np.arange(5)) + per_v * (v @ np.arange(5)),
            "E_clarity": f[1]}


def _sample(toy: str, probs: list[np.ndarray], rng: np.random.Generator, groups: int, size: int, conciseness):
    """Actions (N, factors) and rewards (N, 3) of one batch."""
    n = groups * size
    actions = np.stack([rng.choice(len(p), size=n, p=p) for p in probs], axis=1)
    if toy == "A":
        return actions, ARM_ATTRIBUTES[actions[:, 0]]
    difficulty = np.repeat(rng.choice(DIFFICULTY[0], size=groups, p=DIFFICULTY[1]), size)
    base, per_k, per_v = LENGTHS[toy]
    length = base + per_k * actions[:, 0] + per_v * actions[:, 1]
    rewards = np.stack([(actions[:, 0] >= difficulty).astype(float), conciseness.score_lengths(length),
                        actions[:, 2].astype(float)], axis=1)
    return actions, rewards


def _gradient(probs: list[np.ndarray], actions: np.ndarray, advantages: np.ndarray) -> list[np.ndarray]:
    """Per factor: ``mean_i A_i (e_{a_i} - p)``, the sampled policy gradient of the softmax logits."""
    grads = []
    for factor, p in enumerate(probs):
        counts = np.zeros(len(p))
        np.add.at(counts, actions[:, factor], advantages)
        grads.append(counts / len(advantages) - advantages.mean() * p)
    return grads


def _log_prob(probs: list[np.ndarray], actions: np.ndarray) -> np.ndarray:
    return sum(np.log(p[actions[:, f]]) for f, p in enumerate(probs))


def simulate(toy: str, method_name: str, seed: int, steps: int = 400, lr: float = 0.1, groups: int = 32,
             group_size: int = 16, method_options: dict | None = None, tau: float = 0.1) -> pd.DataFrame:
    """One run; a row per step with the exact objectives before the step, the method's state and ``c_m``."""
    if toy not in TOYS:
        raise ValueError(f"toy = {toy!r} is invalid: allowed values are {list(TOYS)}")
    options = dict(method_options or {})
    if method_name == "dynamic":
        options.setdefault("regularization_factor", DYNAMIC_REGULARIZATION)
    method = make_method(method_name, **options)
    rng = np.random.default_rng(seed)
    logits = _factors(toy)
    reference = [softmax(z) for z in logits]
    conciseness = ConcisenessReward()
    ema, rows = None, []
    for step in range(steps):
        probs = [softmax(z) for z in logits]
        actions, rewards = _sample(toy, probs, rng, groups, group_size, conciseness)
        batch = ObjectiveBatch(rewards, group_size, np.ones(len(rewards)), "reinforce_pp", learning_rate=lr)
        if method.needs & {"gramian", "losses"}:
            per_objective = batch.objective_advantages()
            flat = np.stack([np.concatenate(_gradient(probs, actions, per_objective[:, m])) for m in range(3)])
            batch.gramian, batch.losses = flat @ flat.T, -per_objective.mean(axis=0)
        old_log_prob = _log_prob(probs, actions)
        ratio_to_reference = np.exp(old_log_prob - _log_prob(reference, actions))
        if "unclipped_fraction" in method.needs:
            batch.unclipped_fraction = (ratio_to_reference <= 1.0 + method.epsilon).astype(float)
        if method.timing == "before":
            method.update(batch)
        advantages = method.advantages(batch)
        if method.combine == "pama":
            advantages = advantages * ratio_to_reference * (ratio_to_reference <= 1.0 + method.epsilon)
        row = {"step": step} | expected_objectives(toy, logits) | method.state()
        logits = [z + lr * g for z, g in zip(logits, _gradient(probs, actions, advantages), strict=True)]
        new_probs = [softmax(z) for z in logits]
        factor_ratios = np.stack([new_probs[f][actions[:, f]] / probs[f][actions[:, f]] for f in range(len(probs))], axis=1)
        batch.completion_weights = advantages * factor_ratios.mean(axis=1)
        covariance = ctwa_covariances(rewards, batch.completion_weights, group_size)
        ema = covariance if ema is None else (1 - tau) * ema + tau * covariance
        if method.timing == "after":
            method.update(batch)
        row |= {f"c_{m}": c for m, c in enumerate(covariance)} | {f"c_bar_{m}": c for m, c in enumerate(ema)}
        row |= {f"batch_mean_{m}": r for m, r in enumerate(rewards.mean(axis=0))}
        rows.append(row)
    final = {"step": steps} | expected_objectives(toy, logits) | method.state()
    return pd.DataFrame(rows + [final]).assign(toy=toy, method=method_name, seed=seed)


def run_grid(toys: list[str], methods: list[str], seeds: list[int], progress: bool = False,
             options: dict[str, dict] | None = None, **kwargs) -> pd.DataFrame:
    """Every (toy, method, seed); ``options`` maps a method name to its options (e.g. CTWA's eta)."""
    runs = [(t, m, s) for t in toys for m in methods for s in seeds]
    frames = [simulate(t, m, s, method_options=(options or {}).get(m), **kwargs)
              for t, m, s in tqdm(runs, desc="bandit runs", disable=not progress)]
    return pd.concat(frames, ignore_index=True)


def final_summary(frame: pd.DataFrame, warmup: int = 10) -> pd.DataFrame:
    """Per toy x method (means over seeds): initial/final/min E[acc], final E[len] or E[conc], E[clar], and the
    share of steps after ``warmup`` with ``c_bar_acc < -0.01`` (N13) or with every ``c_bar_m > 0`` (N14)."""
    rows = []
    for (toy, method), group in frame.groupby(["toy", "method"], sort=False):
        per_seed = []
        for _, run in group.groupby("seed"):
            later = run[(run.step > warmup) & run.c_bar_0.notna()]
            values = {"initial_accuracy": run.E_accuracy.iloc[0], "final_accuracy": run.E_accuracy.iloc[-1],
                      "min_accuracy": run.E_accuracy.min(), "final_clarity": run.E_clarity.iloc[-1],
                      "negative_c_bar_acc": float((later.c_bar_0 < -0.01).mean()),
                      "all_c_bar_positive": float((later[["c_bar_0", "c_bar_1", "c_bar_2"]] > 0).all(axis=1).mean())}
            second = "E_length" if "E_length" in run and run.E_length.notna().any() else "E_conciseness"
            values[f"initial_{second[2:]}"] = run[second].iloc[0]
            values[f"final_{second[2:]}"] = run[second].iloc[-1]
            per_seed.append(values)
        rows.append({"toy": toy, "method": method, "seeds": len(per_seed)} | pd.DataFrame(per_seed).mean().to_dict())
    return pd.DataFrame(rows)
