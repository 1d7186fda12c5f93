"""Tables notebook 08 reads off the per-step table of its runs (spec E1-E5, E7; claims C3, C8, C9).

Every function takes the concatenated per-step table of :func:`rlvr_dynamics.multiobjective.training.run_jobs`
(one row per optimizer step, ``generation_step`` = the training step of the spec) and returns a tidy frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN_KEYS = ["variant", "estimator", "method", "seed"]
OBJECTIVE_NAMES = ("accuracy", "conciseness", "clarity")


def ctwa_traces(steps: pd.DataFrame) -> pd.DataFrame:
    """CTWA's log-weights ``u_m``, per-step covariances ``c_m`` and EMAs ``c_bar_m`` per training step (Fig. 2-3)."""
    columns = {f"ctwa/{kind}_{m}": f"{kind}_{name}" for kind in ("log_weight", "covariance", "covariance_ema")
               for m, name in enumerate(OBJECTIVE_NAMES)}
    rows = steps[steps.method == "ctwa"].dropna(subset=["ctwa/log_weight_0"])
    return rows[RUN_KEYS + ["generation_step", *columns]].rename(columns=columns).reset_index(drop=True)


def ctwa_dynamics(traces: pd.DataFrame, warmup: int = 3) -> pd.DataFrame:
    """C8 per (variant, estimator): increments of ``u_m`` over training and the share of steps after
    ``warmup`` with ``c_bar_m > 0`` (means over seeds)."""
    rows = []
    for key, group in traces.groupby(["variant", "estimator"], sort=False):
        row = dict(zip(["variant", "estimator"], key, strict=True))
        per_seed = []
        for _, run in group.groupby("seed"):
            run = run.sort_values("generation_step")
            later = run[run.generation_step > run.generation_step.min() + warmup]
            values = {}
            for name in OBJECTIVE_NAMES:
                values[f"du_{name}"] = float(run[f"log_weight_{name}"].iloc[-1] - run[f"log_weight_{name}"].iloc[0])
                ema = later[f"covariance_ema_{name}"].dropna()
                values[f"positive_{name}"] = float((ema > 0).mean()) if len(ema) else np.nan
                values[f"mean_ema_{name}"] = float(ema.mean()) if len(ema) else np.nan
            per_seed.append(values)
        rows.append(row | pd.DataFrame(per_seed).mean().to_dict())
    return pd.DataFrame(rows)


def cosine_traces(steps: pd.DataFrame) -> pd.DataFrame:
    """Pairwise per-objective gradient cosines per training step of the runs that logged them (Fig. 4)."""
    pairs = {"grad/cos_0_1": "accuracy-conciseness", "grad/cos_0_2": "accuracy-clarity", "grad/cos_1_2": "conciseness-clarity"}
    rows = steps.dropna(subset=["grad/cos_0_1"]) if "grad/cos_0_1" in steps else steps.iloc[:0].assign(**dict.fromkeys(pairs))
    tidy = rows[RUN_KEYS + ["generation_step", *pairs]].melt(RUN_KEYS + ["generation_step"], var_name="pair", value_name="cosine")
    return tidy.assign(pair=tidy.pair.map(pairs)).reset_index(drop=True)


def cosine_summary(cosines: pd.DataFrame) -> pd.DataFrame:
    """C3 per pair: median cosine, share of steps below -0.05, mean |cos| in the first and the last third."""
    rows = []
    for key, group in cosines.groupby(["variant", "estimator", "pair"], sort=False):
        steps = group.generation_step
        first, last = group[steps <= steps.quantile(1 / 3)], group[steps >= steps.quantile(2 / 3)]
        rows.append(dict(zip(["variant", "estimator", "pair"], key, strict=True)) | {
            "median": float(group.cosine.median()), "share_below_-0.05": float((group.cosine < -0.05).mean()),
            "abs_first_third": float(first.cosine.abs().mean()), "abs_last_third": float(last.cosine.abs().mean())})
    return pd.DataFrame(rows)


def cost_table(steps: pd.DataFrame) -> pd.DataFrame:
    """C9 per method: extra forward/backward passes per training step (counted) and wall time per training
    step relative to Linear (measured; over the main variant and every estimator and seed)."""
    rows = steps[steps.step > 0]
    per_step = rows.groupby(RUN_KEYS + ["generation_step"]).agg(
        seconds=("time/step_seconds", "sum"), forward=("cost/extra_forward", "sum"), backward=("cost/extra_backward", "sum"))
    table = per_step.groupby("method").agg(extra_forward=("forward", "mean"), extra_backward=("backward", "mean"),
                                           seconds_per_step=("seconds", "mean"))
    if "linear" in table.index:
        table["time_vs_linear"] = table.seconds_per_step / table.loc["linear", "seconds_per_step"]
    return table
