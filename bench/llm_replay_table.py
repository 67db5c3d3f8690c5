"""LLM serving replay of the real per-request traces and a 14-day ServeGen synthesis: every policy
over its own knob (HPA's target utilization, KEDA's queue threshold, the KV-cache target, the
predictive policy's target utilization, once per load it can forecast), the oracle, and the
GPU-hours at equal attainment (99 % TTFT <= 2 s, or one point under the idle ceiling) against the
best baseline; then the wall time of `replay` of the Azure conv trace with all policies at their
defaults (the issue's target: under 2 minutes on 2 cores).

    .venv/bin/python bench/llm_replay_table.py DATA_DIR [--cold-start-seconds 120 300] \\
        [--synthesis-scale 0.002] [--synthesis-days 14] [--max-replicas 64] [--skip-synthesis] \\
        [--skip-real] [--skip-wall] [--loads tokens requests] [--knobs predictive=0.2,0.3 ...] \\
        [--oracle-foresight-seconds 600] [--oracle-attainment 0.9639]

DATA_DIR is the folder holding azure-llm-inference-2023/, mooncake-kimi-conversation/ and
alibaba-servegen-llm/. The synthesis draws its token pairs from the Mooncake trace. The predictive
policy is the shipped control loop through the example HPA (sidecar/replay_simulation).
`--oracle-foresight-seconds S` gives the oracle only each S-second window's mean work
(simulator/llm_policies.OracleSchedule): the most a perfect forecast at that step could save;
`--oracle-attainment A` has the oracle's search meet A instead of the comparison target (to put
it beside a baseline's best point).
"""

import argparse
import json
import time
from pathlib import Path

from sidecar.cli import main as cli
from sidecar.core import load_core
from sidecar.replay_simulation import ServingControlLoopPolicy
from simulator.llm_replay import (
    BASELINES,
    LLM_POLICIES,
    LOADS,
    LlmReplaySettings,
    default_sweep,
    run_policies,
    target_attainment,
)
from simulator.llm_report import Slo, equal_attainment_table, score, summary
from simulator.request_trace import RequestTrace, read_request_trace
from simulator.servegen_synthesis import synthesized_trace
from simulator.serving import ServingRun
from simulator.serving_profile import load_profile


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--cold-start-seconds", type=float, nargs="+", default=[120.0, 300.0])
    parser.add_argument("--synthesis-scale", type=float, default=0.002)
    parser.add_argument("--synthesis-days", type=float, default=14.0)
    parser.add_argument("--max-replicas", type=int, default=64)
    parser.add_argument("--skip-synthesis", action="store_true")
    parser.add_argument("--skip-real", action="store_true", help="only the synthesis")
    parser.add_argument("--skip-wall", action="store_true", help="no Azure conv wall-time line")
    parser.add_argument("--loads", nargs="+", default=list(LOADS), choices=list(LOADS))
    parser.add_argument("--knobs", nargs="*", default=[], help="POLICY=V1,V2 instead of its default sweep")
    parser.add_argument("--policies", default=",".join(LLM_POLICIES), help="in the order to run them")
    parser.add_argument(
        "--json", type=Path, help="write every trace's summary (frontier, equal attainment) here"
    )
    parser.add_argument(
        "--oracle-foresight-seconds",
        type=int,
        help="the oracle knows only each window's mean work (default: every second's)",
    )
    parser.add_argument(
        "--oracle-attainment", type=float, help="the attainment the oracle must meet (default: the target)"
    )
    args = parser.parse_args()
    if args.oracle_attainment is not None and not 0 < args.oracle_attainment < 1:
        parser.error(f"--oracle-attainment={args.oracle_attainment:g}: must be between 0 and 1")
    if args.oracle_foresight_seconds is not None and args.oracle_foresight_seconds < 1:
        parser.error(f"--oracle-foresight-seconds={args.oracle_foresight_seconds}: must be 1 or more")
    profile = load_profile()
    slo = Slo()
    sweep = default_sweep()
    for item in args.knobs:
        name, _, values = item.partition("=")
        sweep[name] = tuple(float(v) for v in values.split(","))
    names = [n for n in args.policies.split(",") if n]
    mooncake = read_request_trace(args.data / "mooncake-kimi-conversation" / "conversation_trace.jsonl")
    azure = args.data / "azure-llm-inference-2023"
    traces = []
    if not args.skip_real:
        traces = [
            read_request_trace(azure / "AzureLLMInferenceTrace_conv.csv"),
            read_request_trace(azure / "AzureLLMInferenceTrace_code.csv"),
            mooncake,
        ]
    if not args.skip_synthesis:
        archive = args.data / "alibaba-servegen-llm" / "servegen_traces.tar.gz"
        scale, days = args.synthesis_scale, args.synthesis_days
        traces.append(synthesized_trace(archive, "m-large", mooncake, "Mooncake", scale, days))
    print(f"profile: {profile.name}; max replicas {args.max_replicas}; sweep {sweep}; loads {args.loads}")
    core = load_core()
    saved: list[dict] = []
    for cold_start in args.cold_start_seconds:
        settings = LlmReplaySettings(
            cold_start_seconds=cold_start,
            max_replicas=args.max_replicas,
            oracle_foresight_seconds=args.oracle_foresight_seconds,
            oracle_attainment=args.oracle_attainment,
        )
        for trace in traces:
            began = time.perf_counter()
            title = f"{Path(trace.source).name}: {len(trace)} requests, cold start {cold_start:g} s"
            print(f"\n### {title}\n", flush=True)

            def progress(run: ServingRun, seconds: float, trace: RequestTrace = trace) -> None:
                s = score(trace, run, slo)
                print(
                    f"    {run.name}: {s.attainment:.4f}, {s.gpu_hours:.2f} GPU-h ({seconds:.0f} s)",
                    flush=True,
                )

            # In --policies order, so a long run can put what matters first.
            runs: list[ServingRun] = []
            predictive: dict[str, list[ServingRun]] = {}
            for name in names:
                if name != "predictive":
                    runs += run_policies(
                        trace, profile, [name], settings, slo, sweep=sweep, progress=progress
                    )
                    continue
                for load in args.loads:

                    def factory(knob: float, label: str, load: str = load) -> ServingControlLoopPolicy:
                        return ServingControlLoopPolicy(core, knob, load, name=label)

                    predictive[load] = run_policies(
                        trace, profile, [name], settings, slo, factory, sweep, progress
                    )
            target = target_attainment(trace, profile, slo)
            for load, mine in predictive.items():
                print(f"\n{title}, predictive forecasting the {load} rate:\n")
                print(equal_attainment_table(trace, [*runs, *mine], slo, (target, "predictive", BASELINES)))
                if args.json is not None:
                    document = summary(
                        trace,
                        [*runs, *mine],
                        slo,
                        {"cold_start_seconds": cold_start, "load": load},
                        (target, "predictive", BASELINES),
                    )
                    saved.append(document)
                    args.json.write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
            print(f"\n({time.perf_counter() - began:.0f} s for this trace)", flush=True)
    if not args.skip_wall:
        conv = azure / "AzureLLMInferenceTrace_conv.csv"
        began = time.perf_counter()
        cli(["replay", "--trace", str(conv), "--quiet"])
        print(
            f"\n`replay --trace {conv.name}` with all policies ({', '.join(LLM_POLICIES)}), defaults: "
            f"{time.perf_counter() - began:.1f} s wall"
        )


if __name__ == "__main__":
    main()
