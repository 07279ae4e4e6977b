"""What the speed benchmarks share (no benchmark script imports another): paths, timing, codes, a
process's memory, a served index, the learned model whose codes the index benchmarks search.
Training benchmarks are sweep specs (``cmhash sweep --list``), not scripts."""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"  # the results files the docs' tables render from
CMHASH = [sys.executable, "-m", "cmhash"]


def parser(doc: str, name: str, sections: str | None = None) -> argparse.ArgumentParser:
    """The options every speed benchmark takes: ``--out`` (runs/NAME), ``--results`` (where the
    results files the docs render from are) and ``--sections`` (default: every one)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "runs" / name))
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the results files the docs render from are")
    if sections:
        ap.add_argument("--sections", default=sections)
    return ap


def timed(fn):
    """(what ``fn()`` returns, its wall time in seconds)."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def rand_codes(n: int, bits: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, bits // 8), dtype=np.uint8)


def kb(pid: int | None = None, key: str = "VmRSS") -> int:
    """A memory figure of a process from /proc (Linux), in kB: VmRSS (resident now), VmHWM (peak)."""
    try:
        for line in open(f"/proc/{pid or os.getpid()}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (image worker processes)."""
    children: dict[int, list[int]] = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            children.setdefault(int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += kb(p) * 1024
        todo += children.get(p, [])
    return total


@contextlib.contextmanager
def served(index, *options, code: str | None = None):
    """``cmhash serve INDEX OPTIONS`` on a free loopback port (or ``python -c code`` given the port
    as ``{port}``), until it answers /health: yields (process, base URL); stopped on exit."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", code.format(port=port)] if code else \
        CMHASH + ["serve", str(index), "--port", str(port), *map(str, options)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}): {' '.join(cmd)}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise SystemExit("the server did not answer /health in a minute")
        yield proc, url
    finally:
        proc.terminate()
        proc.wait(10)


def learned_model(model_dir: str | Path):
    """A DJSRH 64-bit model on the embedded dataset, trained into ``model_dir`` once and reused:
    (its run folder, the prepared inputs)."""
    from cmhash.config import build_config
    from cmhash.train import run_experiment
    from cmhash.train.protocol import prepare

    out = Path(model_dir)
    cfg = build_config("djsrh", "synthetic", 64, {}, {"backbone": {"cache_dir": str(ROOT / ".cache" / "cmhash")}})
    device, inputs = prepare(cfg)
    if not (out / "bits-64" / "metrics.json").exists():
        print("training DJSRH 64 bits on the embedded dataset for learned codes ...", flush=True)
        run_experiment(cfg, out / "bits-64", inputs, resume=True, progress=False, curves=False, device=device)
    return out, inputs


def publish(path: Path, section: str, title: str, header: list[str], cells: list[list]) -> None:
    """One measured table into the results file ``path`` (``RESULTS/NAME``; its other sections
    kept), printed too; the docs' tables render from it (``cmhash tables``), never typed."""
    from cmhash.eval.report import read_results
    from cmhash.eval.tables import render
    from cmhash.utils import write_json_atomic

    sections = read_results(path)["sections"] if path.exists() else {}
    sections[section] = {"title": title, "header": header, "cells": [[str(c) for c in row] for row in cells]}
    results = {"script": f"benchmarks/{Path(sys.argv[0]).name}", "sections": sections}
    write_json_atomic(path, results)
    print(f"\n## {title}\n\n{render(results, {'kind': 'table', 'section': section})}\n", flush=True)
