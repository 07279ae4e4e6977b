"""Streaming benchmark: `cmhash encode` over a folder of 100,000 image files with bounded memory.

Builds a folder of small JPEGs with captions (10 colour/shape classes, tags with noise), trains a
DJSRH model on 2,000 of them (AlexNet-shaped backbone at 64 px, randomly initialised: this
measures the pipeline, not retrieval quality), then encodes 10k and 100k items in separate
processes while sampling the resident memory of the whole process tree (main process + image
worker processes). Flat peak memory from 10k to 100k is the claim; images/s is the throughput.

    python benchmarks/bench_stream.py [--n 100000] [--workers 2] [--out runs/bench-stream]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["red", "green", "blue", "yellow", "purple", "circle", "square", "stripe", "dot", "wave"]
NOISE = [f"tag{i}" for i in range(200)]


def make_folder(root: Path, n: int, seed: int = 0) -> None:
    from PIL import Image, ImageDraw

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 220, 40), (150, 50, 200)]
    lines = []
    t0 = time.time()
    for i in range(n):
        name = f"img/{i // 1000:03d}/{i}.jpg"
        c, shape = rng.integers(5), rng.integers(5)  # drawn whether or not the file exists: same folder
        bg = tuple(int(x) for x in rng.integers(0, 80, 3))
        box = [int(x) for x in (8 + rng.integers(10), 8 + rng.integers(10), 40 + rng.integers(16), 40 + rng.integers(16))]
        p = root / name
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            im = Image.new("RGB", (64, 64), bg)
            d = ImageDraw.Draw(im)
            (d.ellipse if shape % 2 else d.rectangle)(box, fill=colours[c])
            im.save(p, quality=85)
        tags = [WORDS[c], WORDS[5 + shape]] + list(rng.choice(NOISE, 3))
        lines.append(f"{name}\t{' '.join(tags)}\t{WORDS[c]},{WORDS[5 + shape]}\n")
        if i and i % 20000 == 0:
            print(f"  {i} images ({time.time() - t0:.0f}s)", flush=True)
    for m in sorted({2000, 10_000, n}):
        if m <= n:
            (root / f"captions-{m}.tsv").write_text("".join(lines[:m]))


def rss(pid: int) -> int:
    """Resident bytes of one process."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss(p)
        todo += children.get(p, [])
    return total


def run_measured(cmd: list[str]) -> tuple[float, int, int, str]:
    """(seconds, peak tree RSS, peak main-process RSS, output tail)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            peak[1] = max(peak[1], rss(proc.pid))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out = proc.communicate()[0]
    th.join()
    if proc.returncode:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{out[-3000:]}")
    return time.time() - t0, peak[0], peak[1], out[-500:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--folder", default="/tmp/cmhash-stream-folder", help="where the image folder is made (reused)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-stream"))
    args = ap.parse_args()
    folder, out = Path(args.folder), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"making {args.n} images in {folder} ...", flush=True)
    make_folder(folder, args.n)
    cm = [sys.executable, "-m", "cmhash"]
    common = ["--backbone", "alexnet", "--set", "backbone.image_size=64", "--set", f"backbone.workers={args.workers}",
              "--set", f"backbone.cache_dir={out / 'cache'}"]
    model = out / "model"
    if not (model / "bits-64" / "metrics.json").exists():
        print("training the model on 2,000 items ...", flush=True)
        run_measured(cm + ["train", "-m", "djsrh", "-d", "folder", "--data-root", str(folder), "-b", "64", "--epochs",
                           "2", "-o", str(model), "--set",
                           "data.options={captions: captions-2000.tsv, min_count: 1, n_query: 200, n_train: 1800}",
                           *common])
    rows = ["| items | seconds | images/s | peak RSS, all processes | peak RSS, main process | code files |",
            "|---|---|---|---|---|---|"]
    for m in sorted({10_000, args.n}):
        codes = out / f"codes-{m}"
        cmd = cm + ["encode", str(model), "-b", "64", "-d", "folder", "--data-root", str(folder), "-o", str(codes),
                    "--batch-size", "256"]
        secs, peak, main_peak, _ = run_measured(cmd + ["--data-option", f"captions=captions-{m}.tsv"])
        size = sum(p.stat().st_size for p in codes.glob("*.npy"))
        rows.append(f"| {m:,} | {secs:.0f} | {m / secs:,.0f} | {peak / 2**20:,.0f} MiB | {main_peak / 2**20:,.0f} MiB | "
                    f"{size / 2**20:.1f} MiB |")
        print(rows[-1], flush=True)
    text = ("# Streaming encode benchmark\n\n"
            f"Folder of 64x64 JPEGs; DJSRH 64 bits, AlexNet-shaped backbone at 64 px (random weights), "
            f"{args.workers} image worker processes, batch 256, 2 cores. Times include process start, "
            "loading the folder (captions, vocabulary, split) and writing the code files.\n\n" + "\n".join(rows) + "\n")
    (out / "results.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
