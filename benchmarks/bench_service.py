"""`cmhash serve` under mixed load: text and image clients at once, on loopback, for a fixed time
per scenario; req/s, p50, p99 and errors per endpoint, and text p99 as a multiple of its text-only
p99 (the service's promise: image uploads do not hold up text queries, at most 3x).

The server is the demo's (a DJSRH model through EfficientNet-Lite0, 3,000 items, 64 bits; the demo
runs first if absent). Image clients upload a 1024 x 768 JPEG, a phone photo's size, so each
upload is decoded and encoded by the CNN. Clients are threads of this process, on the same cores
as the server: ratios are what to quote.

    python benchmarks/bench_service.py [--seconds 10] [--demo cmhash-demo] [--image-workers 1]
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = (("8 text", 8, 0), ("8 text + 1 image", 8, 1), ("8 text + 4 image", 8, 4), ("4 image", 0, 4))


def multipart(data: bytes, name: str = "q.jpg", ctype: str = "image/jpeg") -> tuple[bytes, str]:
    b = "cmhashbenchboundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def photo(demo: Path) -> bytes:
    """A demo image scaled to 1024 x 768, as a JPEG (what a phone upload costs to decode)."""
    from PIL import Image

    with Image.open(demo / "codes" / "images" / "0.png") as im:
        big = im.convert("RGB").resize((1024, 768), Image.BILINEAR)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def start_server(index: Path, image_workers: int) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cmhash", "serve", str(index), "--port", str(port), "--device", "cpu",
                             "--image-workers", str(image_workers)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stdout.read().decode()[-2000:]}")
    raise SystemExit("the server did not answer /health in 60 s")


def run_scenario(port: int, n_text: int, n_image: int, seconds: float, queries: list[str], jpeg: bytes) -> dict:
    lat = {"text": [], "image": []}
    errors = {"text": 0, "image": 0}
    stop = time.perf_counter() + seconds
    body, ctype = multipart(jpeg)

    def client(kind: str, w: int):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = w
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                if kind == "text":
                    c.request("GET", "/search/text?" + urllib.parse.urlencode({"q": queries[i % len(queries)], "k": 20}))
                else:
                    c.request("POST", "/search/image?k=20", body, {"Content-Type": ctype})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors[kind] += 1
            except OSError:
                errors[kind] += 1
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            lat[kind].append(time.perf_counter() - t)
            i += 1

    threads = [threading.Thread(target=client, args=("text", w)) for w in range(n_text)] + \
              [threading.Thread(target=client, args=("image", w)) for w in range(n_image)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dur = time.perf_counter() - t0
    out = {}
    for kind in ("text", "image"):
        if not lat[kind]:
            continue
        ms = np.array(lat[kind]) * 1000
        out[kind] = {"requests": len(ms), "req_s": len(ms) / dur, "p50_ms": float(np.percentile(ms, 50)),
                     "p99_ms": float(np.percentile(ms, 99)), "errors": errors[kind]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="per scenario")
    ap.add_argument("--demo", type=Path, default=ROOT / "cmhash-demo", help="a demo folder (made if absent)")
    ap.add_argument("--image-workers", type=int, default=1, help="the server's concurrent image encodes")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-service")
    args = ap.parse_args()
    demo = args.demo
    if not (demo / "index" / "manifest.json").exists():
        print("running the demo first (it trains the model and builds the index served) ...", flush=True)
        subprocess.run([sys.executable, "-m", "cmhash", "demo", "-o", str(demo)], check=True, cwd=ROOT)
    items = [json.loads(x) for x in open(demo / "codes" / "items.jsonl", encoding="utf-8")]
    queries = [" ".join(it["caption"].split()[:2]) for it in items[:500]]  # typed queries of two words
    jpeg = photo(demo)
    proc, port = start_server(demo / "index", args.image_workers)
    results = {}
    try:
        for name, n_text, n_image in SCENARIOS:
            results[name] = run_scenario(port, n_text, n_image, args.seconds, queries, jpeg)
            print(f"  {name}: done", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    base = results["8 text"]["text"]["p99_ms"]
    rows = ["| clients | endpoint | requests | req/s | p50 ms | p99 ms | p99 / text-only p99 | errors |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for kind, m in r.items():
            ratio = f"{m['p99_ms'] / base:.2f}x" if kind == "text" else ""
            rows.append(f"| {name} | /search/{kind} | {m['requests']:,} | {m['req_s']:,.1f} | {m['p50_ms']:.1f} | "
                        f"{m['p99_ms']:.1f} | {ratio} | {m['errors']} |")
    table = (f"`cmhash serve` on the demo index ({len(items):,} items), loopback, {args.seconds:.0f} s per row, "
             f"image_workers={args.image_workers}, {os.cpu_count()} cores shared with the clients; image clients "
             "upload a 1024 x 768 JPEG, text clients type two words\n\n" + "\n".join(rows))
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
