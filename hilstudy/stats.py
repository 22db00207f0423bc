"""Small-sample inference on seed-paired effects: what a devlog's verdict may claim at a given number of seeds.

The unit of replication is the seed. A hypothesis gives one signed effect per seed (treatment minus control,
positive as claimed; several treatment-control pairs in one seed are averaged first: they share the seed's
demos, BC actor and evaluation episodes, so they are not independent samples). On those n numbers:

- **Test**: the exact one-sided paired randomization (sign-flip) test of the mean effect. Under "no effect"
  (treatment and control exchangeable within a seed) every sign pattern of the n differences is equally
  likely, so the p-value, the share of the 2^n patterns whose mean is at least the observed one, is exact at
  every n, whatever the metric's distribution (bounded, skewed, discrete success rates). Its smallest
  possible value is 2^-n: at alpha = 0.05 nothing can be supported with fewer than 5 seeds
  (`min_seeds_to_decide`). Above `EXACT_MAX_N` seeds the patterns are sampled (a Monte-Carlo p-value
  (1 + hits) / (1 + draws), still a valid test).
- **Interval**: the same test inverted for a shifted effect: the lower (upper) bound is the smallest
  (largest) effect delta that the one-sided test of "effect <= delta" (">= delta") does not reject at alpha.
  Together they are a 1 - 2 alpha two-sided interval (90% at alpha = 0.05) whose bounds are the 1 - alpha
  one-sided bounds, so "the lower bound is above 0" and "the test rejects no effect" are the same statement.
  Exact when the per-seed effects are symmetric about their mean (always so under no effect).
- **Seeds needed** when a verdict is inconclusive: the smallest n (at least `min_seeds_to_decide`) at which a
  one-sided test at alpha detects an effect equal to the hypothesis' registered margin with probability
  `POWER`, at the observed seed-to-seed spread of the effects (the t-test's power, noncentral t; the
  sign-flip test's power is close to it for near-normal effects). This is a planning figure from the margin,
  not "observed power" from the observed effect.
- **Several hypotheses**: each is tested at its own alpha; Holm's step-down adjustment gives the family-wise
  p-values over all hypotheses of a devlog (`holm`). A hypothesis with several metrics claims all of them, so
  it is supported only when every metric is (an intersection-union test: level alpha without adjustment; its
  p-value is the largest of its metrics').

`tests/test_stats.py` measures these error rates by simulation (false positives under no effect, interval
coverage, power) at n = 3, 5, 10 and 20.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

EXACT_MAX_N = 16  # up to this many seeds every sign pattern is enumerated (65,535 subsets); above, they are sampled
MC_DRAWS = 65_535  # sampled sign patterns above EXACT_MAX_N (fixed seed: the same patterns every call)
POWER = 0.8  # the power `seeds_needed` plans for
_TOL = 1e-9  # "at least as extreme" within this (relative): sums of the same floats in another order differ in ulps
_CHUNK = 1 << 22  # rows x patterns per block in the batched functions (~32 MB of float64)


@lru_cache(maxsize=64)
def flip_patterns(n: int) -> tuple[np.ndarray, int]:
    """(F, patterns): F (K x n, float 0/1) marks the seeds whose sign is flipped, one row per pattern other than
    the observed one: all 2^n - 1 non-empty subsets for n <= EXACT_MAX_N, else MC_DRAWS random patterns (a
    random empty one stays: it ties with the observed pattern, as it should). `patterns` is what a p-value
    divides by (2^n, or MC_DRAWS + 1). Flipping the signs of S lowers the sum of the effects by 2 sum(d_S)."""
    if n <= EXACT_MAX_N:
        codes = np.arange(1, 2**n, dtype=np.int64)
        return ((codes[:, None] >> np.arange(n)) & 1).astype(float), 2**n
    return (np.random.default_rng(0).random((MC_DRAWS, n)) < 0.5).astype(float), MC_DRAWS + 1


def _as_rows(d) -> np.ndarray:
    x = np.asarray(d, dtype=float)
    return x.reshape(1, -1) if x.ndim <= 1 else x


def _hits(D: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Per row of D (reps x n): the flip patterns whose effect sum is at least the observed one for the shifted
    effects D - delta, i.e. sum over S of (d_i - delta) <= 0."""
    F, _ = flip_patterns(D.shape[1])
    sizes = F.sum(axis=1)
    out = np.empty(len(D), dtype=np.int64)
    step = max(1, _CHUNK // len(F))
    for i in range(0, len(D), step):
        rows, dl = D[i : i + step], delta[i : i + step, None]
        sums = rows @ F.T
        scale = np.abs(rows).sum(axis=1, keepdims=True) + np.abs(dl) * D.shape[1] + 1e-300
        out[i : i + step] = np.count_nonzero(sums - sizes * dl <= _TOL * scale, axis=1)
    return out


def p_greater(d, delta: float | np.ndarray = 0.0) -> np.ndarray | float:
    """One-sided exact sign-flip p-value of "the mean effect is <= delta" against "> delta". `d`: one row of
    per-seed effects, or a (reps x n) array (one p-value per row; `delta` a scalar or one per row)."""
    D = _as_rows(d)
    if D.shape[1] == 0:
        return 1.0
    _, patterns = flip_patterns(D.shape[1])
    p = (1 + _hits(D, np.broadcast_to(np.asarray(delta, dtype=float), (len(D),)).copy())) / patterns
    return float(p[0]) if np.ndim(d) <= 1 else p


def p_less(d, delta: float | np.ndarray = 0.0) -> np.ndarray | float:
    """One-sided exact sign-flip p-value of "the mean effect is >= delta" against "< delta"."""
    return p_greater(-np.asarray(d, dtype=float), -np.asarray(delta, dtype=float))


def bounds(d, alpha: float) -> tuple[float, float]:
    """(lower, upper): the 1 - alpha one-sided confidence bounds of the mean effect from the inverted sign-flip
    test, for one row of per-seed effects; -inf / +inf where no bound is reachable at this n (2^-n > alpha).

    delta is rejected ("effect > delta" shown) iff (1 + #{subset means <= delta}) / patterns <= alpha, i.e. iff
    fewer than k = floor(alpha * patterns) subset means are <= delta: the lower bound is the k-th smallest
    subset mean (and the upper bound the k-th largest)."""
    d = np.asarray(d, dtype=float).ravel()
    if d.size == 0:
        return -math.inf, math.inf
    F, patterns = flip_patterns(d.size)
    sizes = F.sum(axis=1)
    means = (F @ d)[sizes > 0] / sizes[sizes > 0]
    k = math.floor(alpha * patterns + 1e-9)
    if k < 1:
        return -math.inf, math.inf
    lo = np.partition(means, k - 1)[k - 1]
    hi = np.partition(means, len(means) - k)[len(means) - k]
    return float(lo), float(hi)


def min_seeds_to_decide(alpha: float) -> int:
    """The fewest seeds at which the exact sign-flip test can reach p <= alpha at all (2^-n <= alpha)."""
    return max(1, math.ceil(math.log2(1.0 / alpha) - 1e-12))


def seeds_needed(sd: float, margin: float, alpha: float, power: float = POWER, n_max: int = 1000) -> int | None:
    """The smallest n >= min_seeds_to_decide(alpha) at which a one-sided level-alpha test detects a mean effect of
    `margin` with probability `power` when per-seed effects spread with standard deviation `sd` (the t-test's
    power, noncentral t). None when more than n_max would be needed."""
    from scipy import stats

    n0 = min_seeds_to_decide(alpha)
    if margin <= 0:
        return None
    if not np.isfinite(sd):
        return None  # one seed: the spread is unknown
    if sd <= 0:
        return n0
    for n in range(max(n0, 2), n_max + 1):
        crit = stats.t.ppf(1 - alpha, n - 1)
        if stats.nct.sf(crit, n - 1, margin / (sd / math.sqrt(n))) >= power:
            return n
    return None


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down family-wise adjusted p-values (monotone, capped at 1)."""
    order = sorted(pvalues, key=lambda k: (pvalues[k], k))
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[key]))
        out[key] = running
    return out


@dataclass
class Decision:
    """The verdict on one signed per-seed effect (positive = as claimed)."""

    effect: float  # mean of the per-seed effects
    lo: float  # 1 - alpha lower bound (the 1 - 2 alpha interval's lower end)
    hi: float  # 1 - alpha upper bound
    p: float  # one-sided p-value of "no effect (<= 0)"
    p_below_margin: float  # one-sided p-value of "the effect is >= margin" (small: the effect is below the margin)
    n: int  # seeds
    sd: float  # seed-to-seed standard deviation of the effect (ddof 1; nan below 2 seeds)
    verdict: str  # supported | not supported | inconclusive
    seeds_needed: int | None  # inconclusive: seeds to detect the margin at this spread (None: decided, > 1000, or 1 seed)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def decide_effect(effects, alpha: float, margin: float) -> Decision:
    """supported: p <= alpha (the lower bound is above 0); not supported: the effect is shown to be below the
    margin (p_below_margin <= alpha: no effect that matters, or the opposite one); inconclusive otherwise,
    and always below min_seeds_to_decide(alpha) seeds."""
    d = np.asarray(effects, dtype=float).ravel()
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"effects must be finite and non-empty, got {d.tolist()}")
    p, p_low = p_greater(d, 0.0), p_less(d, margin)
    lo, hi = bounds(d, alpha)
    if p <= alpha:
        verdict = "supported"
    elif p_low <= alpha:
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    sd = float(np.std(d, ddof=1)) if d.size > 1 else float("nan")
    needed = None
    if verdict == "inconclusive":
        needed = seeds_needed(sd, margin, alpha)
    return Decision(float(d.mean()), lo, hi, float(p), float(p_low), int(d.size), sd, verdict, needed)
