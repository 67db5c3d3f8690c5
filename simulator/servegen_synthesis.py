"""A SYNTHESIS, not a recorded trace: per-request arrivals and token counts re-created from the
ServeGen release (Xiang et al., arXiv 2505.09999; alibaba/ServeGen `data/<category>/<model>/
chunk-<client>-trace.csv`), which publishes per client and 600 s window only the mean rate, the
CV of inter-arrival times and a fitted family (Weibull or Gamma).

For each client and window with a rate, arrivals are a stationary renewal process whose
inter-arrival distribution is the published family with its parameters matched to the published
moments: mean 1 / (rate x scale), CV as published (Gamma: shape 1/CV^2; Weibull: the shape whose
CV is the published one, from a table). Stationary: the window opens inside a gap drawn
length-biased (a long gap is more likely to span a given instant; for Gamma(k, theta) that is
Gamma(k + 1, theta), for Weibull(k, lambda) lambda x Gamma(1 + 1/k)^(1/k)) at a uniform point of
it, so the expected count in the window is exactly its rate x 600 s x scale. Opening at a uniform
point of an ordinary gap instead over-counts by about (CV^2 - 1) / 2 arrivals per window, which
at the published CVs (median 1.2, p90 4.3) and a small scale was 35 % too many requests.
The process stops at the window's end. Token lengths are drawn with replacement as (input, output)
pairs from a per-request trace's empirical distribution (Azure LLM 2023 or Mooncake), so the
token mix is that trace's, not ServeGen's (whose token files are not in the release we hold).

`scale` multiplies every rate (m-large averages 196 requests/s, 237 million over 14 days, which no
per-request replay handles; 0.02 keeps 4.7 million). Everything is drawn from one seeded numpy
Generator, so a (model, scale, seed, token source) gives the same trace every time. Arrays, not
rows: the result is three numpy arrays sorted by arrival.
"""

from __future__ import annotations

import math
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.special import gammaln

from simulator.request_trace import RequestTrace

WINDOW_SECONDS = 600
# Weibull CV as a function of its shape k, tabulated once on a log grid (CV falls as k grows).
_WEIBULL_SHAPES = np.geomspace(0.05, 20.0, 4000)
_WEIBULL_CVS = np.sqrt(np.exp(gammaln(1 + 2 / _WEIBULL_SHAPES) - 2 * gammaln(1 + 1 / _WEIBULL_SHAPES)) - 1)


def read_servegen_windows(archive: Path, model: str) -> dict[str, list[tuple[int, float, float, str]]]:
    """client file -> rows (window start s, rate req/s, CV, family), from the packed release."""
    clients: dict[str, list[tuple[int, float, float, str]]] = defaultdict(list)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if len(parts) < 4 or parts[2] != model or not member.name.endswith("-trace.csv"):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            for line in handle.read().decode().splitlines():
                start, rate, cv, family, _a, _b = line.split(",")
                clients[member.name].append((int(start), float(rate), float(cv), family))
    if not clients:
        raise ValueError(f"{archive}: no trace files for model {model!r}")
    return clients


def published_per_window(archive: Path, model: str, scale: float = 1.0) -> dict[int, float]:
    """Window start -> the requests the release's rates say it holds (sum over clients of rate x
    600 s), times `scale`: what a synthesis at `scale` should average per window."""
    totals: dict[int, float] = defaultdict(float)
    for rows in read_servegen_windows(archive, model).values():
        for start, rate, _cv, family in rows:
            if rate > 0 and family:
                totals[start] += rate * WINDOW_SECONDS * scale
    return dict(totals)


def _gaps(rng: np.random.Generator, family: str, mean: float, cv: float, count: int) -> np.ndarray:
    """`count` gaps of the renewal process, the first from the window's opening (stationary)."""
    if not math.isfinite(cv) or cv <= 0:
        return rng.exponential(mean, count)  # memoryless: the first gap needs no bias
    if family == "Weibull":
        shape = float(np.interp(-cv, -_WEIBULL_CVS, _WEIBULL_SHAPES))
        scale = mean / math.exp(gammaln(1 + 1 / shape))
        gaps = scale * rng.weibull(shape, count)
        spanning = scale * rng.gamma(1 + 1 / shape) ** (1 / shape)
    else:
        shape = 1.0 / (cv * cv)
        gaps = rng.gamma(shape, mean / shape, count)
        spanning = rng.gamma(shape + 1, mean / shape)
    gaps[0] = spanning * rng.uniform()
    return gaps


def synthesize(
    archive: Path,
    model: str,
    token_inputs: np.ndarray,
    token_outputs: np.ndarray,
    scale: float = 0.02,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival_s, input_tokens, output_tokens), arrivals in seconds since the release's start."""
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    for rows in read_servegen_windows(archive, model).values():
        for start, rate, cv, family in rows:
            if rate <= 0 or not family:
                continue
            mean = 1.0 / (rate * scale)
            expected = WINDOW_SECONDS / mean
            count = int(expected + 6 * math.sqrt(expected) * max(cv, 1.0) + 10)
            gaps = _gaps(rng, family, mean, cv, count)
            times = np.cumsum(gaps)
            pieces.append(start + times[times < WINDOW_SECONDS])
    arrivals = np.sort(np.concatenate(pieces)) if pieces else np.zeros(0)
    pick = rng.integers(0, len(token_inputs), len(arrivals))
    return arrivals, np.asarray(token_inputs)[pick], np.asarray(token_outputs)[pick]


def synthesized_trace(
    archive: Path, model: str, tokens: RequestTrace, tokens_name: str, scale: float, days: float
) -> RequestTrace:
    """The first `days` of `synthesize` (seed 0) with `tokens`' (input, output) pairs, as a
    RequestTrace named for what it is: "servegen m-large x0.002, 14 d, Mooncake tokens"."""
    arrivals, inputs, outputs = synthesize(archive, model, tokens.input_tokens, tokens.output_tokens, scale)
    keep = arrivals < days * 86_400
    name = f"servegen {model} x{scale:g}, {days:g} d, {tokens_name} tokens"
    return RequestTrace(name, 0.0, arrivals[keep], inputs[keep], outputs[keep])
