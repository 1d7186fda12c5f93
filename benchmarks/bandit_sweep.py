"""Benchmark: the E2 multi-armed bandit at paper scale for 32 step sizes.

Batched: one :func:`rlvr_dynamics.gradient_gap.run_mab` call advances all 32 runs together
(arrays of shape (32, 100) per step). Baseline: the same work as a Python loop over the
step sizes, one run at a time (arrays of shape (1, 100) per step). Both produce the same
trajectories; the script checks that, then prints both wall times and the ratio.

    python benchmarks/bandit_sweep.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlvr_dynamics.gradient_gap import run_mab

STEP_SIZES = np.logspace(-1, 1, 32)


def batched() -> np.ndarray:
    return run_mab(STEP_SIZES, n_arms=100, steps=10_000)["J"]


def looped() -> np.ndarray:
    return np.concatenate([run_mab([eta], n_arms=100, steps=10_000)["J"] for eta in STEP_SIZES])


def best_time(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    t_batched, J_batched = best_time(batched, args.repeats)
    t_looped, J_looped = best_time(looped, max(1, args.repeats // 2))
    assert np.allclose(J_batched, J_looped, rtol=0, atol=1e-12), "batched and looped runs disagree"
    print("MAB, 100 arms, 10^4 exact REINFORCE steps, 32 step sizes (best of repeats)")
    print(f"{'variant':<28}{'seconds':>10}{'ratio':>10}")
    print(f"{'loop over step sizes':<28}{t_looped:>10.3f}{1.0:>10.1f}")
    print(f"{'one batched run':<28}{t_batched:>10.3f}{t_looped / t_batched:>10.1f}")


if __name__ == "__main__":
    main()
