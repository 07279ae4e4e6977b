"""The README's demo table: ``cmhash demo`` run into ``--out``, its results copied to
benchmarks/results/demo.json; ``--spread`` also runs it under the settings that differ between
machines (threads, ``CMHASH_KERNEL=avx2``, torch on AVX2), one row each (benchmarks/README.md).

    python benchmarks/bench_demo.py [--out runs/bench-demo] [--spread]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from cmhash.eval.report import read_results
from cmhash.utils import write_json_atomic
from helpers import CMHASH, RESULTS

#: (row name, demo options, environment) of each setting --spread runs; "fresh cache": features again
VARIANTS = (
    ("threads 1", ["--threads", "1"], {}),
    ("threads 2", ["--threads", "2"], {}),
    ("threads 2, CMHASH_KERNEL=avx2", ["--threads", "2"], {"CMHASH_KERNEL": "avx2"}),
    ("threads 2, torch on AVX2 (features again)", ["--threads", "2"],
     {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "CMHASH_CACHE_DIR": "fresh"}),
    ("threads 1, torch on AVX2 (features again)", ["--threads", "1"],
     {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "CMHASH_CACHE_DIR": "fresh"}),
)


def run_demo(out: Path, options: list[str], env: dict, overwrite: bool) -> dict:
    subprocess.run(CMHASH + ["demo", "-o", str(out), *options] + (["--overwrite"] if overwrite else []), check=True,
                   env={**os.environ, **env})
    return read_results(out / "results.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-demo")
    ap.add_argument("--results", default=str(RESULTS / "demo.json"))
    ap.add_argument("--overwrite", action="store_true", help="train again over a finished demo in --out")
    ap.add_argument("--spread", action="store_true", help="also run the demo under each setting of VARIANTS")
    args = ap.parse_args()
    sections = {"demo": run_demo(Path(args.out), [], {}, args.overwrite)}
    if args.spread:
        rows = []
        with tempfile.TemporaryDirectory(prefix="cmhash-demo-cache-") as fresh:
            for i, (name, options, env) in enumerate(VARIANTS):
                env = {k: fresh if v == "fresh" else v for k, v in env.items()}
                got = run_demo(Path(args.out) / f"spread-{i}", options, env, args.overwrite)
                rows += [dict(r, name=name) for r in got["rows"] if r["name"] == "DJSRH"]
        rows += [dict(r, name="as in the table") for r in sections["demo"]["rows"] if r["name"] == "DJSRH"]
        sections["spread"] = {"title": "the demo under other settings", "rows": rows}
    write_json_atomic(args.results, {"script": "bench_demo.py", "sections": sections})
    print(f"results: {args.results}")


if __name__ == "__main__":
    main()
