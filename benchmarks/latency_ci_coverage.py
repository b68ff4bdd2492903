"""Coverage of the report's latency CIs when latency drifts in time (simulated AR(1)), ordinary vs block bootstrap.

Each replicate draws n latencies whose log follows an AR(1) process (phi: how long a slow stretch lasts), whose
true median is known, and asks both bootstraps for a 95% CI of the median: the ordinary one (questions resampled
independently, as the report did before) and the report's circular block bootstrap in time order (Politis-White
block length). Prints the share of replicates whose CI holds the true median, and the mean CI widths.

    .venv/bin/python benchmarks/latency_ci_coverage.py [replicates] [n]
"""

from __future__ import annotations

import sys

import numpy as np

from abqa.analysis import stats

MEDIAN_MS = 30.0
SIGMA = 0.3          # stationary SD of log latency


def drifting_latency(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    innovation_sd = SIGMA * np.sqrt(1 - phi ** 2)
    log = np.empty(n)
    log[0] = rng.normal(0, SIGMA)
    for i in range(1, n):
        log[i] = phi * log[i - 1] + rng.normal(0, innovation_sd)
    return MEDIAN_MS * np.exp(log)


def median_ci(values: np.ndarray, block: int, seed: int) -> tuple[float, float]:
    (low, high), = stats.block_bootstrap_cis([values], lambda x: np.array([np.median(x)]), block=block,
                                             n_resamples=500, seed=seed)
    return low, high


def main(replicates: int = 200, n: int = 1000) -> None:
    print(f"{replicates} replicates of {n} latencies, true median {MEDIAN_MS} ms, 95% CIs of the median, 500 resamples")
    print(f"{'phi':>5}  {'ordinary coverage':>17}  {'block coverage':>14}  {'width ratio':>11}  {'mean block':>10}")
    for phi in (0.0, 0.5, 0.9, 0.97):
        rng = np.random.default_rng(int(phi * 1000))
        hits = {"ordinary": 0, "block": 0}
        widths = {"ordinary": [], "block": []}
        blocks = []
        for replicate in range(replicates):
            values = drifting_latency(n, phi, rng)
            block = stats.block_length(values)
            blocks.append(block)
            for name, length in (("ordinary", 1), ("block", block)):
                low, high = median_ci(values, length, replicate)
                hits[name] += low <= MEDIAN_MS <= high
                widths[name].append(high - low)
        ratio = np.mean(widths["block"]) / np.mean(widths["ordinary"])
        print(f"{phi:>5.2f}  {hits['ordinary'] / replicates:>17.1%}  {hits['block'] / replicates:>14.1%}  "
              f"{ratio:>10.2f}x  {np.mean(blocks):>10.1f}")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
