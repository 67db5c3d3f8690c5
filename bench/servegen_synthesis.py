"""Write a per-request trace SYNTHESISED from a ServeGen 14-day model (simulator/servegen_synthesis.py
says how: arrivals per client and window from the published rate, CV and family; token pairs drawn
from an Azure LLM or Mooncake trace), in the plain `arrival_s,input_tokens,output_tokens` format
that `replay --trace` reads.

    .venv/bin/python bench/servegen_synthesis.py SERVEGEN_TAR TOKEN_TRACE OUT.csv \
        [--model m-large] [--scale 0.02] [--seed 0] [--days 14]
"""

import argparse
import time
from pathlib import Path

import numpy as np

from simulator.request_trace import read_request_trace, write_request_trace
from simulator.servegen_synthesis import WINDOW_SECONDS, published_per_window, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("archive", type=Path, help="servegen_traces.tar.gz (alibaba/ServeGen data/, packed)")
    parser.add_argument("tokens", type=Path, help="per-request trace whose (input, output) pairs are drawn")
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="m-large")
    parser.add_argument("--scale", type=float, default=0.02, help="multiplies every rate (default 0.02)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=float, default=14.0, help="keep the first DAYS (default 14)")
    args = parser.parse_args()
    began = time.perf_counter()
    tokens = read_request_trace(args.tokens)
    arrivals, inputs, outputs = synthesize(
        args.archive, args.model, tokens.input_tokens, tokens.output_tokens, args.scale, args.seed
    )
    keep = arrivals < args.days * 86_400
    published = published_per_window(args.archive, args.model, args.scale)
    expected = sum(
        count for start, count in published.items() if start + WINDOW_SECONDS <= args.days * 86_400
    )
    write_request_trace(args.out, arrivals[keep], inputs[keep], outputs[keep])
    print(
        f"{args.out}: {int(keep.sum())} requests over {args.days:g} days, mean "
        f"{keep.sum() / (args.days * 86_400):.2f} req/s, tokens from {tokens.source} "
        f"(mean input {np.mean(inputs):.0f}, output {np.mean(outputs):.0f}), "
        f"{time.perf_counter() - began:.1f} s; synthesized / published requests {keep.sum() / expected:.4f}"
    )


if __name__ == "__main__":
    main()
