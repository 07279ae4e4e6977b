"""Image files in, on generated files: decode (the feature pass before reduced-size JPEG decoding
and now, on 12 MP and 64 px JPEGs, and the backbone alone) and stream (`cmhash encode` over a
folder of N small JPEGs, the process tree's peak memory at 10k and N items). Tables to
benchmarks/results/inputs.json; benchmarks/README.md says how each is measured.

    python benchmarks/bench_inputs.py [--sections decode,stream] [--photos 48] [--n 100000]
"""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from helpers import CMHASH, ROOT, kb, parser, publish, timed, tree_rss

WORDS = ["red", "green", "blue", "yellow", "purple", "circle", "square", "stripe", "dot", "wave"]
NOISE = [f"tag{i}" for i in range(200)]


def make_photos(folder: Path, n: int, w: int = 4000, h: int = 3000, slope: float = 1.0,
                noise: float = 2.0) -> list[Path]:
    """n camera-sized JPEGs with a 1/f^slope amplitude spectrum and Gaussian sensor noise of std
    ``noise`` (reused when present)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    mix = np.array([[1, .6, .3], [.6, 1, .6], [.3, .6, 1]], np.float32)  # correlated colour channels
    for i in range(n):
        p = folder / f"photo-{i:03d}.jpg"
        paths.append(p)
        if p.exists():
            continue
        rng = np.random.default_rng(i)
        spec = (rng.standard_normal((3, *f.shape)) + 1j * rng.standard_normal((3, *f.shape))) / f ** slope
        spec[:, 0, 0] = 0
        x = np.moveaxis(np.fft.irfft2(spec, s=(h, w)).astype(np.float32), 0, -1) @ mix
        x = (x - x.mean()) / x.std() * 45 + 120
        if noise:
            x += rng.normal(0, noise, x.shape).astype(np.float32)
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(p, quality=90)
    return paths


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


def decode_rate(paths, draft: bool, reps: int = 1) -> float:
    from cmhash.data.images import read_image

    return reps * len(paths) / timed(lambda: [read_image(p, 224, draft=draft) for _ in range(reps) for p in paths])[1]


def feature_pass(backbone, paths, now: bool, workers: int, batch: int):
    """(images/s, features) of ``compute_features`` over ``paths``: as now (reduced-size decode,
    channels_last, ``paced`` threads) or as before (full-size decode, the previous
    ``feature_map(preprocess(x))`` in the default layout, torch's threads as they were)."""
    import torch

    from cmhash.data import features as feat_mod
    from cmhash.data.base import PairedData
    from cmhash.data.images import FolderImages

    if now:
        backbone.__dict__.pop("frozen_map", None)
        backbone._channels_last = False  # converted again at the next call
    else:
        backbone.to(memory_format=torch.contiguous_format)
        backbone.frozen_map = lambda x: backbone.feature_map(backbone.preprocess(x))
    data = PairedData(FolderImages(paths, 224, draft=now), None, np.zeros((len(paths), 1), np.uint8), name="bench",
                      image_kind="pixels")
    keep = feat_mod.paced
    feat_mod.paced = keep if now else (lambda batches, workers, device="cpu": (b for b in batches))
    try:
        t = time.perf_counter()
        f = feat_mod.compute_features(backbone, data, batch_size=batch, workers=workers)
        return len(paths) / (time.perf_counter() - t), f
    finally:
        feat_mod.paced = keep


def decode(args):
    import torch

    from cmhash.models.backbones import build_backbone

    out = Path(args.out)
    make_folder(out / "stream", args.small)
    sets = {"12 MP, typical (1/f^1.2, ~4 MB)": make_photos(out / "photos-typical", args.photos, slope=1.2, noise=0),
            "12 MP, detailed (1/f + sensor noise, ~7 MB)": make_photos(out / "photos", args.photos),
            "64 px": sorted((out / "stream" / "img").glob("*/*.jpg"))[:args.small]}
    backbone = build_backbone("efficientnet-lite0", image_size=224).eval()
    torch.set_num_threads(2)
    cells = []
    for name, paths in sets.items():
        got = {False: [], True: []}
        for _ in range(2):  # interleaved rounds; the mean of the two
            for now in (False, True):
                got[now].append((decode_rate(paths, now, 1 if len(paths) < 100 else 2),
                                 *feature_pass(backbone, paths, now, args.workers, args.batch)))
        (d0, r0), (d1, r1) = ([np.mean([g[i] for g in got[now]]) for i in (0, 1)] for now in (False, True))
        ref, f = got[False][-1][2], got[True][-1][2]
        cos = (ref * f).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(f, axis=1) + 1e-12)
        cells.append([name, f"{d0:,.1f} → {d1:,.1f} ({d1 / d0:.2f}x)", f"{r0:,.1f} → {r1:,.1f} ({r1 / r0:.2f}x)",
                      f"{cos.min():.5f}"])
    publish(args.results / "inputs.json", "decode", "Photo decoding and the feature pass, now : before",
            ["files", "decode only, img/s (now : before)", "feature pass, img/s (now : before)", "min feature cosine"],
            cells)
    x, cells = backbone.preprocess(torch.randint(0, 256, (16, 3, 224, 224), dtype=torch.uint8)), []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for layout in (torch.contiguous_format, torch.channels_last):
            net, xx = backbone.to(memory_format=layout), x.contiguous(memory_format=layout)
            with torch.inference_mode():
                net.pool(net.feature_map(xx))  # warm
                t = time.perf_counter()
                for _ in range(4):
                    net.pool(net.feature_map(xx))
            cells.append([threads, str(layout).split(".")[-1], f"{64 / (time.perf_counter() - t):,.1f}"])
    publish(args.results / "inputs.json", "backbone", "The backbone alone (EfficientNet-Lite0, 224 px, batches of 16)",
            ["threads", "layout", "img/s"], cells)


def run_measured(cmd: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS of the process tree, of the main process), sampled every 0.2 s."""
    t0, peak = time.time(), [0, 0]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    def sample():
        while proc.poll() is None:
            peak[:] = max(peak[0], tree_rss(proc.pid)), max(peak[1], kb(proc.pid) * 1024)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    out = proc.communicate()[0]
    if proc.returncode:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{out[-3000:]}")
    return time.time() - t0, peak[0], peak[1]


def stream(args):
    folder, out = Path(args.folder), Path(args.out)
    print(f"making {args.n} images in {folder} ...", flush=True)
    make_folder(folder, args.n)
    common = ["--backbone", "alexnet", "--set", "backbone.image_size=64", "--set", f"backbone.workers={args.workers}",
              "--set", f"backbone.cache_dir={out / 'cache'}"]
    model = out / "model"
    if not (model / "bits-64" / "metrics.json").exists():
        print("training the model on 2,000 items ...", flush=True)
        run_measured(CMHASH + ["train", "-m", "djsrh", "-d", "folder", "--data-root", str(folder), "-b", "64",
                               "--epochs", "2", "-o", str(model), "--set", "data.options={captions: captions-2000.tsv, "
                               "min_count: 1, n_query: 200, n_train: 1800}", *common])
    cells = []
    for m in sorted({10_000, args.n}):
        secs, peak, main_peak = run_measured(CMHASH + [
            "encode", str(model), "-b", "64", "-d", "folder", "--data-root", str(folder), "-o", str(out / f"codes-{m}"),
            "--batch-size", "256", "--data-option", f"captions=captions-{m}.tsv"])
        cells.append([f"{m:,}", f"{secs:.0f}", f"{m / secs:,.0f}", f"{main_peak / 2**20:,.0f} MiB", f"{peak / 2**20:,.0f} MiB"])
    publish(args.results / "inputs.json", "stream", "Streaming encode of an image folder",
            ["items", "seconds", "images/s", "peak RSS, main process", "peak RSS, all processes"], cells)


def main():
    ap = parser(__doc__, "bench-inputs", "decode,stream")
    ap.add_argument("--photos", type=int, default=48, help="decode: 12 MP files per set")
    ap.add_argument("--small", type=int, default=512, help="decode: 64 px files")
    ap.add_argument("--batch", type=int, default=8, help="decode: images per batch (a worker decodes one batch)")
    ap.add_argument("--n", type=int, default=100_000, help="stream: items")
    ap.add_argument("--folder", default="/tmp/cmhash-stream-folder", help="stream: where the folder is made (reused)")
    ap.add_argument("--workers", type=int, default=2, help="image decode worker processes")
    args = ap.parse_args()
    for s in args.sections.split(","):
        {"decode": decode, "stream": stream}[s](args)


if __name__ == "__main__":
    main()
