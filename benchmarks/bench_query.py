"""How long a person waits for the first answer, now and by the previous path, in one run:

  search   wall time of a whole `cmhash search INDEX --text Q` process (start, imports, model,
           query, print), median of ``--reps`` runs, interleaved: now (a CCA-ITQ index over a bag
           of words answers with numpy alone) against the previous path (``--model``: torch, the
           checkpoint, scikit-learn's vectorizer);
  serve    the first text query's latency after `cmhash serve` says it is ready, and the median of
           the next ten, with the encoders warmed before "ready" (now) and without (the previous
           path: ``CMHASH_BENCH_NO_WARM=1`` skips the warm-up in this script's server only).

The index is built from ``--folder`` (images + captions.tsv) with `cmhash index build --folder`,
or given (``--index``: the demo's, whose MiniLM queries are the slow first query the warm-up
removes; its model is no CCA-ITQ, so both search rows load the model there).

    python benchmarks/bench_query.py --folder ../shared/data/ucm-captions [--reps 5]
    python benchmarks/bench_query.py --index runs/bench-demo/index --query "dog puppy"
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

CMHASH = [sys.executable, "-m", "cmhash"]


def run_search(index: Path, q: str, model: Path | None) -> float:
    t0 = time.perf_counter()
    subprocess.run(CMHASH + ["search", str(index), "--text", q, "-k", "10"] + (["--model", str(model)] if model else []),
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def serve_first(index: Path, q: str, warm: bool) -> tuple[float, float]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys\nfrom cmhash.cli import main\nimport cmhash.service.app as app\n"
            + ("" if warm else "app.warm_encoder = lambda enc: None\nimport cmhash.service as s; s.warm_encoder = app.warm_encoder\n")
            + f"main(['serve', {str(index)!r}, '--port', '{port}'])\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while "serving" not in (proc.stdout.readline() or "serving"):
            pass
        url = f"http://127.0.0.1:{port}/search/text"
        for _ in range(600):  # uvicorn binds just after the line is printed
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        t0 = time.perf_counter()
        httpx.get(url, params={"q": q}, timeout=60).raise_for_status()
        first = time.perf_counter() - t0
        later = []
        for _ in range(10):
            t0 = time.perf_counter()
            httpx.get(url, params={"q": q}, timeout=60)
            later.append(time.perf_counter() - t0)
        return first, statistics.median(later)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ucm-captions"))
    ap.add_argument("--out", default="runs/bench-query")
    ap.add_argument("--query", default="tennis court")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--index", default=None, help="an index built already (e.g. the demo's, MiniLM queries)")
    args = ap.parse_args()
    index = Path(args.index or Path(args.out) / "index")
    if not (index / "manifest.json").exists():
        subprocess.run(CMHASH + ["index", "build", "--folder", args.folder, "-o", str(index)], check=True)
    from cmhash.index.store import read_manifest

    model = Path(read_manifest(index)["model"]["checkpoint"])  # given: the previous path, the model loaded
    now, before = [], []
    for _ in range(args.reps):  # interleaved
        now.append(run_search(index, args.query, None))
        before.append(run_search(index, args.query, model))
    s_now, s_before = serve_first(index, args.query, True), serve_first(index, args.query, False)
    rows = ["| what | previous path | now | previous : now |", "|---|---|---|---|",
            f"| `cmhash search --text`, whole process, median of {args.reps} (s) | {statistics.median(before):.2f} | "
            f"{statistics.median(now):.2f} | {statistics.median(before) / statistics.median(now):.1f}x |",
            f"| `serve`: first text query after ready (ms) | {1000 * s_before[0]:.0f} | {1000 * s_now[0]:.0f} | "
            f"{s_before[0] / s_now[0]:.1f}x |",
            f"| `serve`: median of the next 10 (ms) | {1000 * s_before[1]:.1f} | {1000 * s_now[1]:.1f} | |"]
    print(f"index: {index} ({os.cpu_count()} cores); query {args.query!r}\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
