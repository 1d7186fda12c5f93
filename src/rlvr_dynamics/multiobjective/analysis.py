"""Interference, per-method scores and Pareto summaries of per-objective curves (spec "Claims" preamble, gap 4).

Curves are tidy frames with one row per evaluation point and the columns ``step``, ``accuracy``,
``length`` and ``clarity``. Every objective is turned into an *improvement* over its step-0 value:
absolute for accuracy and clarity, relative for length (shorter is better, so the improvement is
``-(len_t - len_0) / len_0``). The spec's operational definition of interference: the moving-averaged
test value of at least one objective ends, or stays for at least 20 % of training, worse than at step 0
by more than its tolerance while at least one other objective improves by more than its tolerance.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

OBJECTIVE_COLUMNS = ("accuracy", "length", "clarity")
TOLERANCES = {"accuracy": 0.03, "length": 0.05, "clarity": 0.05}  # spec: 3 points, 5 % relative, 0.05


def moving_average(curve: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    """Centred rolling mean over ``window`` evaluation points (gap 4), per objective column."""
    smoothed = curve.sort_values("step").reset_index(drop=True).copy()
    for column in OBJECTIVE_COLUMNS:
        smoothed[column] = smoothed[column].rolling(window, center=True, min_periods=1).mean()
    return smoothed


def smooth(curve: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    """The curve with its step-0 point kept raw and the moving average over the later points (the step-0
    model is the same for every method, so its value must not be blurred into the first evaluations)."""
    ordered = curve.sort_values("step")
    return pd.concat([ordered.iloc[:1], moving_average(ordered.iloc[1:], window)], ignore_index=True)


def improvements(curve: pd.DataFrame) -> pd.DataFrame:
    """Improvement of each objective over step 0, in its own units (see the module docstring)."""
    curve = curve.sort_values("step").reset_index(drop=True)
    start = curve.iloc[0]
    out = pd.DataFrame({"step": curve.step})
    out["accuracy"] = curve.accuracy - start.accuracy
    out["clarity"] = curve.clarity - start.clarity
    out["length"] = -(curve.length - start.length) / max(float(start.length), 1e-9)
    return out


def interference(curve: pd.DataFrame, window: int = 5, persistence: float = 0.2) -> dict:
    """The spec's interference test on one (seed-averaged) curve, plus the interference score.

    ``score`` is the worst final improvement in units of its tolerance (negative: an objective was
    sacrificed); ``degraded``/``improved`` list the objectives beyond tolerance at the end (or, for
    ``degraded``, during at least ``persistence`` of the evaluation points).
    """
    change = improvements(smooth(curve, window))
    final = change.iloc[-1]
    later = change.iloc[1:]
    degraded, improved, scores = [], [], {}
    for column in OBJECTIVE_COLUMNS:
        tolerance = TOLERANCES[column]
        scores[column] = float(final[column] / tolerance)
        below = (later[column] < -tolerance).mean() if len(later) else 0.0
        if final[column] < -tolerance or below >= persistence:
            degraded.append(column)
        if final[column] > tolerance:
            improved.append(column)
    fires = bool(degraded) and any(column not in degraded for column in improved)
    return {"interference": fires, "score": min(scores.values()), "degraded": ",".join(degraded),
            "improved": ",".join(improved)} | {f"change_{c}": float(final[c]) for c in OBJECTIVE_COLUMNS}


def pareto_front(points: pd.DataFrame) -> pd.Series:
    """Whether each row of ``points`` (improvement columns, larger is better) is non-dominated."""
    values = points[list(OBJECTIVE_COLUMNS)].to_numpy()
    dominated = [
        any((other >= row).all() and (other > row).any() for j, other in enumerate(values) if j != i)
        for i, row in enumerate(values)
    ]
    return pd.Series(~np.asarray(dominated, dtype=bool), index=points.index)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact volume dominated by ``points`` (maximisation) above ``reference``, by grid decomposition."""
    points = np.asarray(points, dtype=np.float64)
    points = points[(points > reference).all(axis=1)]
    if len(points) == 0:
        return 0.0
    axes = [np.unique(np.concatenate([[reference[d]], points[:, d]])) for d in range(points.shape[1])]
    volume = 0.0
    for cell in itertools.product(*[range(len(axis) - 1) for axis in axes]):
        upper = np.array([axes[d][i + 1] for d, i in enumerate(cell)])
        if (points >= upper).all(axis=1).any():
            volume += float(np.prod([axes[d][i + 1] - axes[d][i] for d, i in enumerate(cell)]))
    return volume


def method_summary(curves: pd.DataFrame, by: list[str], window: int = 5) -> pd.DataFrame:
    """Per group of ``by`` (e.g. model, estimator, method): the seed-averaged curve's interference test,
    its final improvements, Pareto membership within each (``by`` minus method) block, and the
    hypervolume of its final improvement point over step 0 (0 when any objective got worse)."""
    rows = []
    for key, group in curves.groupby(by, sort=False):
        mean_curve = group.groupby("step", as_index=False)[list(OBJECTIVE_COLUMNS)].mean()
        rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)) | interference(mean_curve, window))
    table = pd.DataFrame(rows)
    block = [column for column in by if column != "method"]
    changes = table.rename(columns={f"change_{c}": c for c in OBJECTIVE_COLUMNS})
    table["pareto"] = False
    for _, members in (changes.groupby(block) if block else [(None, changes)]):
        table.loc[members.index, "pareto"] = pareto_front(members)
    table["hypervolume"] = [
        hypervolume(row[list(OBJECTIVE_COLUMNS)].to_numpy()[None, :], np.zeros(len(OBJECTIVE_COLUMNS)))
        for _, row in changes.iterrows()
    ]
    return table
