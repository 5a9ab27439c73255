"""Whole-flow CPU time of this tree against another commit, in one command.

    .venv/bin/python bench/ab.py --base 9db3741 [--pairs 5] [--spans 60000] [--rate 500]

The shared 2-core machines drift by tens of percent within minutes, so two bench runs taken
apart cannot show a 10-20% change. This runs the same in-process flow (`spanwatch.backtest`
over the bench traffic written as an OTLP protobuf file: decode, assembly, pre-aggregation,
windows, every rule of alerts.toml) alternately from a git worktree of `--base` and from this
tree, in fresh processes, and prints each side's CPU seconds (median [min - max]) and the
median of the per-pair ratios base / this tree (> 1: this tree is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/ab.py` puts bench/ first, not the repo
    sys.path.insert(0, str(ROOT))

_RUN = """
import gc, sys, time
from pathlib import Path
from rules.load import load_rules
from spanwatch.backtest import backtest
from spanwatch.settings import Settings
rules, settings = load_rules(Path("alerts.toml")), Settings(_env_file=None)
gc.collect()
started = time.process_time()
events = backtest([Path(sys.argv[1])], rules, settings)
print(time.process_time() - started, len(events))
"""
"""One measured run, executed in the tree under test (its own modules and alerts.toml)."""


def run_once(tree: Path, traffic: Path) -> tuple[float, int]:
    """CPU seconds of one backtest in a fresh process of `tree`, and its alert transitions."""
    out = subprocess.run([sys.executable, "-c", _RUN, str(traffic)], cwd=tree,
                         env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True, check=True)
    cpu, events = out.stdout.split()
    return float(cpu), int(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="commit to compare against")
    parser.add_argument("--pairs", type=int, default=5, help="alternating runs per side (5)")
    parser.add_argument("--spans", type=int, default=60000, help="spans in the traffic (60000)")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="spans per second of event time (500, as bench/run.py)")
    args = parser.parse_args()

    from bench.traffic import MINUTE_NS, generate  # noqa: PLC0415
    from ingest.recorded import write_proto_messages  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="spanwatch-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base],
                       cwd=ROOT, check=True)
        try:
            traffic = Path(tmp) / "traffic.otlp"
            start_ns = (time.time_ns() // MINUTE_NS - 180) * MINUTE_NS
            generated = generate(args.spans, start_ns, args.rate, services=80)
            write_proto_messages(traffic, [m.value for m in generated.messages])
            cpu: dict[str, list[float]] = {"base": [], "this": []}
            ratios: list[float] = []
            for pair in range(args.pairs):
                sides = [("base", base), ("this", ROOT)]
                if pair % 2:  # alternate which side runs first
                    sides.reverse()
                results = {name: run_once(tree, traffic) for name, tree in sides}
                if results["base"][1] != results["this"][1]:
                    print(f"note: alert transitions differ: base {results['base'][1]}, "
                          f"this {results['this'][1]}")
                for name, (seconds, _) in results.items():
                    cpu[name].append(seconds)
                ratios.append(results["base"][0] / results["this"][0])
                print(f"pair {pair + 1}: base {results['base'][0]:.2f} s, "
                      f"this {results['this'][0]:.2f} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           check=False)
    for name, values in cpu.items():
        print(f"{name:>4}: {statistics.median(values):.2f} s CPU "
              f"[{min(values):.2f} - {max(values):.2f}] over {generated.spans} spans")
    print(f"base / this (median of {len(ratios)} pairs): {statistics.median(ratios):.3f} "
          f"[{min(ratios):.3f} - {max(ratios):.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
