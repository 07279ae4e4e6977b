"""What hostile files cost: the service's peak memory while it answers image uploads made to hurt
it, and the feature cache key's cost on a real photo folder. Prints two tables.

  uploads   ``cmhash serve INDEX`` in its own process; for each upload, its resident memory
            before and its peak while answering (the kernel's high-water mark, VmHWM, reset
            before each upload through /proc/PID/clear_refs), the status and the time. The files
            are made here: long and thin PNGs (a 109-byte 30000 x 1 PNG took a server from 0.47 to
            6.5 GB before), and the largest images the service accepts (40 megapixels, its
            ``max_pixels``) in the modes that cost the most to decode and convert.
  key       ``data_fingerprint`` of a folder (path, size and a digest of every file's bytes)
            against the feature pass over the same folder (EfficientNet-Lite0, 224 px, the
            workers of ``backbone.workers``); Linux only for the first table.

    python benchmarks/bench_hostile.py --index runs/bench-demo/index [--folder ../shared/data/ucm-captions]
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def uploads() -> list[tuple[str, bytes]]:
    from PIL import Image

    side = 6324  # 6324^2 = 39,992,976 pixels: the largest square under the service's 40 MP
    rgba = Image.new("RGBA", (side, side), (200, 30, 30, 128))
    pal = Image.new("P", (side, side), 3)
    pal.info["transparency"] = 3
    return [("30000 x 1 PNG (L)", png(Image.new("L", (30_000, 1), 80))),
            ("1 x 100000 PNG (L)", png(Image.new("L", (1, 100_000), 80))),
            ("1 x 5000 PNG (RGB)", png(Image.new("RGB", (1, 5000), (1, 2, 3)))),
            ("40 MP PNG, RGB", png(Image.new("RGB", (side, side), (10, 200, 30)))),
            ("40 MP PNG, RGBA half transparent", png(rgba)),
            ("40 MP PNG, 16-bit grey (I;16)", png(Image.fromarray(np.full((side, side), 30000, np.uint16)))),
            ("40 MP PNG, palette with transparency", png(pal)),
            ("40 MP PNG, 1-bit", png(Image.new("1", (side, side), 1)))]


def rss_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def serve_table(index: str) -> list[str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cmhash", "serve", index, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    rows = ["| upload | bytes | status | seconds | RSS before (MB) | peak while answering (MB) | peak above idle (MB) |",
            "|---|---|---|---|---|---|---|"]
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        warm = png(__import__("PIL.Image").Image.new("RGB", (300, 200), (5, 5, 5)))
        httpx.post(f"{url}/search/image", files={"file": ("w.png", warm, "image/png")}, timeout=60)  # loads the backbone
        for name, data in uploads():
            before = rss_kb(proc.pid, "VmRSS")
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # the high-water mark starts again here
            t0 = time.perf_counter()
            r = httpx.post(f"{url}/search/image", files={"file": ("u.png", data, "image/png")}, timeout=300)
            dt = time.perf_counter() - t0
            peak = rss_kb(proc.pid, "VmHWM")
            rows.append(f"| {name} | {len(data):,} | {r.status_code} | {dt:.2f} | {before / 1024:.0f} | "
                        f"{peak / 1024:.0f} | {(peak - before) / 1024:.0f} |")
            print(rows[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    return rows


def key_table(folder: str) -> list[str]:
    from cmhash.config import BackboneConfig
    from cmhash.data.features import _content_digest, compute_features, data_fingerprint
    from cmhash.data.folder import load_folder
    from cmhash.models.backbones import build_backbone

    data = load_folder(folder).data
    mb = sum(os.path.getsize(p) for p in data.images.paths) / 2**20
    _content_digest.cache_clear()
    t0 = time.perf_counter()
    data_fingerprint(data)
    key = time.perf_counter() - t0
    backbone = build_backbone("efficientnet-lite0", image_size=224)
    t0 = time.perf_counter()
    compute_features(backbone, data, batch_size=32, workers=BackboneConfig().workers)
    feat = time.perf_counter() - t0
    return ["| folder | files | MB | key (s) | feature pass (s) | key : feature pass |", "|---|---|---|---|---|---|",
            f"| {Path(folder).name} | {len(data)} | {mb:.0f} | {key:.2f} | {feat:.1f} | {key / feat:.1%} |"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default="runs/bench-demo/index", help="a served index of a model that reads pixels")
    ap.add_argument("--folder", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ucm-captions"))
    ap.add_argument("--sections", default="uploads,key")
    args = ap.parse_args()
    out = []
    if "uploads" in args.sections:
        out += serve_table(args.index) + [""]
    if "key" in args.sections and Path(args.folder).is_dir():
        out += key_table(args.folder)
    print("\n" + "\n".join(out))


if __name__ == "__main__":
    main()
