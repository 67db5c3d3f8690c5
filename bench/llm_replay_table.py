"""LLM serving replay of the real per-request traces and a 14-day ServeGen synthesis under the LLM
baselines: SLO attainment (TTFT <= 2 s), TTFT p50/p99, GPU-hours, scale events, and the wall time
of each replay (the issue's target: Azure conv with all policies under 2 minutes on 2 cores).

    .venv/bin/python bench/llm_replay_table.py DATA_DIR [--cold-start-seconds 120] \
        [--synthesis-scale 0.002] [--synthesis-days 14] [--max-replicas 64] [--skip-synthesis]
        [--skip-real] [--oracle-iterations 6]

DATA_DIR is the folder holding azure-llm-inference-2023/, mooncake-kimi-conversation/ and
alibaba-servegen-llm/. The synthesis draws its token pairs from the Mooncake trace.
"""

import argparse
import time
from pathlib import Path

from sidecar.core import load_core
from sidecar.replay_simulation import ServingControlLoopPolicy
from simulator.llm_replay import LLM_POLICIES, LlmReplaySettings, run_policies
from simulator.llm_report import Slo, score
from simulator.request_trace import RequestTrace, read_request_trace
from simulator.servegen_synthesis import synthesize
from simulator.serving_profile import load_profile


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--cold-start-seconds", type=float, default=120.0)
    parser.add_argument("--synthesis-scale", type=float, default=0.002)
    parser.add_argument("--synthesis-days", type=float, default=14.0)
    parser.add_argument("--max-replicas", type=int, default=64)
    parser.add_argument("--skip-synthesis", action="store_true")
    parser.add_argument("--skip-real", action="store_true", help="only the synthesis")
    parser.add_argument("--oracle-iterations", type=int, default=6)
    args = parser.parse_args()
    profile = load_profile()
    core = load_core()

    def predictive(knob: float, name: str) -> ServingControlLoopPolicy:
        return ServingControlLoopPolicy(core, knob, name=name)

    slo = Slo()
    settings = LlmReplaySettings(
        cold_start_seconds=args.cold_start_seconds,
        max_replicas=args.max_replicas,
        oracle_iterations=args.oracle_iterations,
    )
    mooncake = read_request_trace(args.data / "mooncake-kimi-conversation" / "conversation_trace.jsonl")
    traces = [
        read_request_trace(args.data / "azure-llm-inference-2023" / "AzureLLMInferenceTrace_conv.csv"),
        read_request_trace(args.data / "azure-llm-inference-2023" / "AzureLLMInferenceTrace_code.csv"),
        mooncake,
    ]
    if args.skip_real:
        traces = []
    if not args.skip_synthesis:
        arrivals, inputs, outputs = synthesize(
            args.data / "alibaba-servegen-llm" / "servegen_traces.tar.gz",
            "m-large",
            mooncake.input_tokens,
            mooncake.output_tokens,
            args.synthesis_scale,
        )
        keep = arrivals < args.synthesis_days * 86_400
        name = f"servegen m-large x{args.synthesis_scale:g}, {args.synthesis_days:g} d, Mooncake tokens"
        traces.append(RequestTrace(name, 0.0, arrivals[keep], inputs[keep], outputs[keep]))
    print(
        f"profile: {profile.name}; cold start {args.cold_start_seconds:g} s; max replicas {args.max_replicas}"
    )
    print(
        "| trace | requests | policy | attainment | TTFT p50 s | TTFT p99 s | GPU-hours | scale events "
        "| drained | wall s |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for trace in traces:
        total = time.perf_counter()
        for name in LLM_POLICIES:
            began = time.perf_counter()
            (run,) = run_policies(trace, profile, [name], settings, slo, predictive)
            s = score(trace, run, slo)
            print(
                f"| {Path(trace.source).name} | {len(trace)} | {name} | {s.attainment:.4f} "
                f"| {s.ttft_p50_s:.3f} | {s.ttft_p99_s:.2f} | {s.gpu_hours:.1f} | {s.scale_events} "
                f"| {s.drained_replicas} | {time.perf_counter() - began:.1f} |",
                flush=True,
            )
        print(
            f"| {Path(trace.source).name} | all policies | | | | | | | | {time.perf_counter() - total:.1f} |"
        )


if __name__ == "__main__":
    main()
