"""Training-phase statistics of the normalization paper (§4.3-4.4; spec F18, F24, F29-F31, E4).

Pure numpy / pandas / scipy, shared by the theory and the language-model notebooks:

* :func:`ema` -- EMA smoothing with alpha = 0.18 on the new point (F24, gap G11: pandas ``adjust=False``).
* :func:`gain_factor` / :func:`running_gain_factor` -- C(T) and the running estimate C_hat(t) (F18, F30).
* :func:`phase_of` and :func:`phase_gaps` -- the paper's windows I/II/III scaled to the run (0-20%,
  20-60%, 60-100% of 0-100-300-500) and per-phase mean gap and OLS slope (F31).
* :func:`data_driven_phases` -- the secondary phase rule from gradient-cosine statistics (E4).
* :func:`pearson` / :func:`pooled_correlation` -- Pearson r with its t-test and the Fisher-z test
  across iterations (F29, Table 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

EMA_ALPHA = 0.18
PHASES = ("I", "II", "III")
PHASE_EDGES = (0.0, 0.2, 0.6, 1.0)  # 0-100-300-500 of a 500-step run (Fig. 3)


def ema(values, alpha: float = EMA_ALPHA) -> np.ndarray:
    """``s_0 = x_0``, ``s_t = alpha x_t + (1 - alpha) s_{t-1}`` (F24)."""
    return pd.Series(np.asarray(values, dtype=np.float64)).ewm(alpha=alpha, adjust=False).mean().to_numpy()


def gain_factor(std: np.ndarray) -> float:
    """C(T) = (8/3) mean over prompts and iterations of the Bernoulli std sqrt(V) (F18); < 1 iff mean < 3/8."""
    return float(8.0 / 3.0 * np.mean(std))


def running_gain_factor(batch_mean_std) -> np.ndarray:
    """C_hat(t) = (8/3) (1/t) sum_{s<=t} sigma_bar_s (F30, a running estimate of C(T))."""
    values = np.asarray(batch_mean_std, dtype=np.float64)
    return 8.0 / 3.0 * np.cumsum(values) / np.arange(1, len(values) + 1)


def phase_of(step, total_steps: int) -> np.ndarray:
    """Phase label per step: I for t < 0.2 T, II for t < 0.6 T, else III (the paper's windows, scaled)."""
    fraction = np.asarray(step, dtype=np.float64) / total_steps
    return np.array(PHASES)[np.searchsorted(PHASE_EDGES[1:-1], fraction, side="right")]


def ols_slope(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def phase_gaps(steps, delta, total_steps: int) -> pd.DataFrame:
    """Per phase: mean Delta, OLS slope of Delta on the step, Delta at the phase end (F31)."""
    steps, delta = np.asarray(steps), np.asarray(delta, dtype=np.float64)
    labels = phase_of(steps, total_steps)
    rows = []
    for phase in PHASES:
        mask = labels == phase
        rows.append({
            "phase": phase,
            "mean_delta": float(delta[mask].mean()) if mask.any() else float("nan"),
            "slope": ols_slope(steps[mask], delta[mask]),
            "delta_end": float(delta[mask][-1]) if mask.any() else float("nan"),
        })
    return pd.DataFrame(rows)


def delta_at(steps, delta, fraction: float, total_steps: int) -> float:
    """Delta at the step nearest ``fraction * total_steps`` (e.g. 0.6 for iteration 300 of 500)."""
    steps = np.asarray(steps)
    return float(np.asarray(delta)[np.abs(steps - fraction * total_steps).argmin()])


def data_driven_phases(cosines: pd.DataFrame) -> dict[str, float]:
    """Secondary phase rule (spec E4) from probe statistics with columns ``step``, ``mean``, ``std``.

    Phase I ends at the first probe where cos-mean > 0.02 or cos-std > 1.3 x its step-0 value;
    Phase III starts at the first probe where cos-std > 2 x its step-0 value (nan if never).
    """
    rows = cosines.sort_values("step")
    std0 = float(rows["std"].iloc[0])
    end_one = rows[(rows["mean"] > 0.02) | (rows["std"] > 1.3 * std0)]
    start_three = rows[rows["std"] > 2 * std0]
    return {
        "phase_I_end": float(end_one.step.iloc[0]) if len(end_one) else float("nan"),
        "phase_III_start": float(start_three.step.iloc[0]) if len(start_three) else float("nan"),
    }


def pearson(x, y) -> tuple[float, float]:
    """Pearson r and its two-sided p-value from ``t = r sqrt(m-2) / sqrt(1-r^2)`` (F29); nan if degenerate."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    result = stats.pearsonr(x, y)
    return float(result.statistic), float(result.pvalue)


def pooled_correlation(r_values) -> dict[str, float]:
    """Mean r over iterations and the one-sample t-test of atanh(r) against 0 (F29, Table 1)."""
    r = np.asarray([v for v in r_values if np.isfinite(v)], dtype=np.float64)
    if len(r) == 0:
        return {"mean_r": float("nan"), "p_value": float("nan"), "iterations": 0}
    z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    p = float(stats.ttest_1samp(z, 0.0).pvalue) if len(r) > 1 and np.ptp(z) > 0 else float("nan")
    return {"mean_r": float(r.mean()), "p_value": p, "iterations": int(len(r))}
