"""The demo's table, as the README shows it: ``cmhash demo`` (DJSRH at 16/32/64 bits on the
embedded dataset, MiniLM tags, beside random codes) run into ``--out``, its results copied to
the results file the README's table renders from.

    python benchmarks/bench_demo.py [--out runs/bench-demo] [--results benchmarks/results/demo.json]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from cmhash.utils import read_json, write_json_atomic
from common import RESULTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-demo")
    ap.add_argument("--results", default=str(RESULTS / "demo.json"))
    ap.add_argument("--overwrite", action="store_true", help="train again over a finished demo in --out")
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "cmhash", "demo", "-o", args.out] + (["--overwrite"] if args.overwrite else [])
    subprocess.run(cmd, check=True)
    results = read_json(Path(args.out) / "results.json", "results file")
    write_json_atomic(args.results, {"script": "bench_demo.py", "sections": {"demo": results}})
    print(f"results: {args.results}")


if __name__ == "__main__":
    main()
