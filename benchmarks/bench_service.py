"""The service and the search command as a person meets them: load (`cmhash serve` under text and
image clients at once), first (the first answer of `cmhash search` and of `serve`, now against the
previous path), uploads (peak memory under hostile uploads), key (the feature cache key against
the feature pass). Tables to benchmarks/results/service.json; benchmarks/README.md has the details.

    python benchmarks/bench_service.py --sections load [--seconds 10] [--image-workers 1]
    python benchmarks/bench_service.py --sections first,key --folder ../shared/data/ucm-captions
"""
from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from helpers import CMHASH, ROOT, SHARED, kb, parser, publish, served, timed

SCENARIOS = (("8 text", 8, 0), ("8 text + 1 image", 8, 1), ("8 text + 4 image", 8, 4), ("4 image", 0, 4))
NO_WARM = ("import cmhash.service.app as app\napp.warm_encoder = lambda enc: None\nimport cmhash.service as s\n"
           "s.warm_encoder = app.warm_encoder\nfrom cmhash.cli import main\n"
           "main(['serve', {index!r}, '--port', '{{port}}'])\n")


def image_bytes(im, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"optimize": True} if fmt == "PNG" else {"quality": 90}))
    return buf.getvalue()


def load(args) -> list[str]:
    import httpx
    from PIL import Image

    demo = args.demo
    if not (demo / "index" / "manifest.json").exists():
        print("running the demo first (it trains the model and builds the index served) ...", flush=True)
        subprocess.run(CMHASH + ["demo", "-o", str(demo)], check=True, cwd=ROOT)
    items = [json.loads(x) for x in open(demo / "codes" / "items.jsonl", encoding="utf-8")]
    queries = [" ".join(it["caption"].split()[:2]) for it in items[:500]]  # typed queries of two words
    with Image.open(demo / "codes" / "images" / "0.png") as im:
        jpeg = image_bytes(im.convert("RGB").resize((1024, 768), Image.BILINEAR), "JPEG")  # a phone photo's size
    results = {}
    with served(demo / "index", "--device", "cpu", "--image-workers", args.image_workers) as (_, url):
        for name, n_text, n_image in SCENARIOS:
            lat, errors, stop = {"text": [], "image": []}, {"text": 0, "image": 0}, time.perf_counter() + args.seconds

            def client(kind: str, i: int):
                with httpx.Client(base_url=url, timeout=60) as c:
                    while time.perf_counter() < stop:
                        t = time.perf_counter()
                        try:
                            r = c.get("/search/text", params={"q": queries[i % len(queries)], "k": 20}) \
                                if kind == "text" else \
                                c.post("/search/image?k=20", files={"file": ("q.jpg", jpeg, "image/jpeg")})
                            errors[kind] += r.status_code != 200
                        except httpx.TransportError:
                            errors[kind] += 1
                        lat[kind].append(time.perf_counter() - t)
                        i += 1

            threads = [threading.Thread(target=client, args=(k, w)) for k, n in (("text", n_text), ("image", n_image))
                       for w in range(n)]
            (_, dur) = timed(lambda: [t.start() for t in threads] + [t.join() for t in threads])
            results[name] = {k: {"requests": len(v), "req_s": len(v) / dur, "p50_ms": 1000 * np.percentile(v, 50),
                                 "p99_ms": 1000 * np.percentile(v, 99), "errors": errors[k]} for k, v in lat.items() if v}
            print(f"  {name}: done", flush=True)
    base = results["8 text"]["text"]["p99_ms"]
    publish(args.results / "service.json", "load", f"`cmhash serve` under mixed load ({len(items):,} items, "
            f"{args.seconds:.0f} s per row, image_workers={args.image_workers}, {os.cpu_count()} cores)",
            ["clients", "endpoint", "req/s", "p50 ms", "p99 ms", "p99 / text-only p99", "errors"],
            [[name, f"/search/{kind}", f"{m['req_s']:,.1f}", f"{m['p50_ms']:.1f}", f"{m['p99_ms']:.1f}",
              f"{m['p99_ms'] / base:.2f}x" if kind == "text" else "", m["errors"]]
             for name, r in results.items() for kind, m in r.items()])


def first(args) -> list[str]:
    import httpx

    from cmhash.index.store import read_manifest

    index = Path(args.index or Path(args.out) / "index")
    if not (index / "manifest.json").exists():
        subprocess.run(CMHASH + ["index", "build", "--folder", args.folder, "-o", str(index)], check=True)
    model = Path(read_manifest(index)["model"]["checkpoint"])  # given: the previous path, the model loaded
    search = CMHASH + ["search", str(index), "--text", args.query, "-k", "10"]
    now, before = [], []
    for _ in range(args.reps):  # interleaved
        now.append(timed(lambda: subprocess.run(search, check=True, capture_output=True))[1])
        before.append(timed(lambda: subprocess.run(search + ["--model", str(model)], check=True,
                                                   capture_output=True))[1])
    serve = {}
    for warm in (True, False):
        with served(index, code=None if warm else NO_WARM.format(index=str(index))) as (_, url):
            ask = lambda: httpx.get(f"{url}/search/text", params={"q": args.query}, timeout=60)  # noqa: E731
            serve[warm] = (timed(ask)[1], statistics.median(timed(ask)[1] for _ in range(10)))
    b, n = statistics.median(before), statistics.median(now)
    publish(args.results / "service.json", "first", f"The first answer: {index.name}, query {args.query!r}",
            ["what", "previous path", "now", "previous : now"],
            [[f"`cmhash search --text`, whole process, median of {args.reps} (s)", f"{b:.2f}", f"{n:.2f}", f"{b / n:.1f}x"],
             ["`serve`: first text query after ready (ms)", f"{1000 * serve[False][0]:.0f}", f"{1000 * serve[True][0]:.0f}",
              f"{serve[False][0] / serve[True][0]:.1f}x"],
             ["`serve`: median of the next 10 (ms)", f"{1000 * serve[False][1]:.1f}", f"{1000 * serve[True][1]:.1f}", ""]])


def uploads(args) -> list[str]:
    import httpx
    from PIL import Image

    side = 6324  # 6324^2 = 39,992,976 pixels: the largest square under the service's 40 MP
    rgba, pal = Image.new("RGBA", (side, side), (200, 30, 30, 128)), Image.new("P", (side, side), 3)
    pal.info["transparency"] = 3
    files = [("30000 x 1 PNG (L)", Image.new("L", (30_000, 1), 80)), ("1 x 100000 PNG (L)", Image.new("L", (1, 100_000), 80)),
             ("1 x 5000 PNG (RGB)", Image.new("RGB", (1, 5000), (1, 2, 3))),
             ("40 MP PNG, RGB", Image.new("RGB", (side, side), (10, 200, 30))), ("40 MP PNG, RGBA half transparent", rgba),
             ("40 MP PNG, 16-bit grey (I;16)", Image.fromarray(np.full((side, side), 30000, np.uint16))),
             ("40 MP PNG, palette with transparency", pal), ("40 MP PNG, 1-bit", Image.new("1", (side, side), 1))]
    cells = []
    with served(args.index) as (proc, url):
        warm = image_bytes(Image.new("RGB", (300, 200), (5, 5, 5)))
        httpx.post(f"{url}/search/image", files={"file": ("w.png", warm, "image/png")}, timeout=60)  # the backbone
        for name, im in files:
            data, before = image_bytes(im), kb(proc.pid)
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # the high-water mark starts again here
            r, dt = timed(lambda: httpx.post(f"{url}/search/image", files={"file": ("u.png", data, "image/png")},
                                             timeout=300))
            peak = kb(proc.pid, "VmHWM")
            cells.append([name, f"{len(data):,}", r.status_code, f"{dt:.2f}", f"{before / 1024:.0f}", f"{peak / 1024:.0f}",
                          f"{(peak - before) / 1024:.0f}"])
    publish(args.results / "service.json", "uploads", "`serve`'s peak memory while it answers hostile uploads",
            ["upload", "bytes", "status", "seconds", "RSS before (MB)", "peak while answering (MB)",
             "peak above idle (MB)"], cells)


def key(args) -> list[str]:
    from cmhash.config import BackboneConfig
    from cmhash.data.features import _content_digest, compute_features, data_fingerprint
    from cmhash.data.folder import load_folder
    from cmhash.models.backbones import build_backbone

    data = load_folder(args.folder).data
    mb = sum(os.path.getsize(p) for p in data.images.paths) / 2**20
    _content_digest.cache_clear()
    _, t_key = timed(lambda: data_fingerprint(data))
    backbone = build_backbone("efficientnet-lite0", image_size=224)
    _, t_feat = timed(lambda: compute_features(backbone, data, batch_size=32, workers=BackboneConfig().workers))
    publish(args.results / "service.json", "key", "The feature cache key against the feature pass",
            ["folder", "files", "MB", "key (s)", "feature pass (s)", "key : feature pass"],
            [[Path(args.folder).name, len(data), f"{mb:.0f}", f"{t_key:.2f}", f"{t_feat:.1f}", f"{t_key / t_feat:.1%}"]])


def main() -> None:
    ap = parser(__doc__, "bench-service", "load,first,uploads,key")
    ap.add_argument("--seconds", type=float, default=10.0, help="load: per scenario")
    ap.add_argument("--demo", type=Path, default=ROOT / "cmhash-demo", help="load: a demo folder (made if absent)")
    ap.add_argument("--image-workers", type=int, default=1, help="load: the server's concurrent image encodes")
    ap.add_argument("--folder", default=str(SHARED / "ucm-captions"), help="first, key: images + captions.tsv")
    ap.add_argument("--index", default=None, help="first: an index built already; uploads: one of a model "
                                                  "that reads pixels (default runs/bench-demo/index)")
    ap.add_argument("--query", default="tennis court")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    for s in args.sections.split(","):
        if s == "uploads":
            args.index = args.index or "runs/bench-demo/index"
        {"load": load, "first": first, "uploads": uploads, "key": key}[s](args)


if __name__ == "__main__":
    main()
