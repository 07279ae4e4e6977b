"""Feature extraction from photo files: the decode path before reduced-size JPEG decoding and after,
side by side in one process, on camera-sized JPEGs and on small files. Prints one table.

Files are generated (nothing is downloaded): 12-megapixel JPEGs (4000 x 3000, quality 90) whose
content has a natural image's power-law amplitude spectrum, in two sets: typical (1/f^1.2, about
4 MB a file, a phone photo's size) and detailed (1/f plus Gaussian sensor noise of std 2, about
7 MB: foliage or gravel at high quality, the heavy end of the decode work: entropy decoding,
which no reduced-size decode skips, grows with the file); and 64 px JPEGs as ``bench_stream.py``
makes them. For each set:

  decode only   images/s of ``read_image`` to 224 px in one process: full-size decode (``draft=False``,
                the previous path) vs reduced-size decode (``draft=True``, the default now)
  features      images/s of the whole feature pass (``compute_features``: EfficientNet-Lite0 at
                224 px, frozen, worker processes decoding while the backbone runs): before (full
                decode, default layout, torch's threads as set), reduced decode alone, and now
                (reduced decode, the backbone in channels_last layout, torch's threads lowered to
                the cores the decode workers leave when the pass waits on them: ``paced``)
  agreement     the lowest cosine of each path's features to the previous path's over the set

and, for the backbone alone (no decoding), images/s at 1 and 2 threads, with and without
``channels_last``.

    python benchmarks/bench_decode.py [--photos 48] [--small 512] [--workers 2] [--batch 8]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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
        chans = []
        for _ in range(3):
            spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** slope
            spec[0, 0] = 0
            chans.append(np.fft.irfft2(spec, s=(h, w)).astype(np.float32))
        x = np.stack(chans, -1) @ mix
        x = (x - x.mean()) / x.std() * 45 + 120
        if noise:
            x += rng.normal(0, noise, x.shape).astype(np.float32)
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(p, quality=90)
    return paths


def make_small(folder: Path, n: int) -> list[Path]:
    """n 64 px JPEGs (a shape on a background, as bench_stream.py draws them)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng, paths = np.random.default_rng(0), []
    for i in range(n):
        p = folder / f"small-{i:04d}.jpg"
        paths.append(p)
        if p.exists():
            continue
        im = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(0, 80, 3)))
        box = [int(v) for v in (8 + rng.integers(10), 8 + rng.integers(10), 40 + rng.integers(16), 40 + rng.integers(16))]
        ImageDraw.Draw(im).ellipse(box, fill=tuple(int(v) for v in rng.integers(100, 256, 3)))
        im.save(p, quality=85)
    return paths


def decode_rate(paths, draft: bool, reps: int = 1) -> float:
    from cmhash.data.images import read_image

    t = time.perf_counter()
    for _ in range(reps):
        for p in paths:
            read_image(p, 224, draft=draft)
    return reps * len(paths) / (time.perf_counter() - t)


def set_layout(backbone, channels_last: bool) -> None:
    """The backbone as ``frozen_map`` runs it now (channels_last on the CPU), or as before (the
    default layout: ``frozen_map`` replaced by the previous ``feature_map(preprocess(x))``)."""
    import torch

    if channels_last:
        backbone.__dict__.pop("frozen_map", None)
        backbone._channels_last = False  # converted again at the next call
    else:
        backbone.to(memory_format=torch.contiguous_format)
        backbone.frozen_map = lambda x: backbone.feature_map(backbone.preprocess(x))


def features(backbone, paths, draft: bool, now: bool, workers: int, batch: int):
    """(images/s, features) of the feature pass over ``paths``: with reduced-size decoding or not
    (``draft``), and the backbone as it runs now (channels_last, and torch's threads lowered when
    the decode workers need the cores: ``paced``) or as before (default layout, torch's threads as
    they were)."""
    from cmhash.data import features as feat_mod
    from cmhash.data.base import PairedData
    from cmhash.data.images import FolderImages

    set_layout(backbone, now)
    data = PairedData(FolderImages(paths, 224, draft=draft), None, np.zeros((len(paths), 1), np.uint8),
                      name="bench-decode", image_kind="pixels")
    keep = feat_mod.paced
    if not now:  # torch's threads left as they are
        feat_mod.paced = lambda batches, workers, device="cpu": (b for b in batches)
    try:
        t = time.perf_counter()
        f = feat_mod.compute_features(backbone, data, batch_size=batch, workers=workers)
        return len(paths) / (time.perf_counter() - t), f
    finally:
        feat_mod.paced = keep


def backbone_rates(backbone, n: int = 64) -> dict:
    import torch

    x = torch.randint(0, 256, (16, 3, 224, 224), dtype=torch.uint8)
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for cl in (False, True):
            net = backbone.to(memory_format=torch.channels_last) if cl else backbone.to(memory_format=torch.contiguous_format)
            with torch.inference_mode():
                xx = backbone.preprocess(x)
                xx = xx.contiguous(memory_format=torch.channels_last) if cl else xx.contiguous()
                net.pool(net.feature_map(xx))  # warm
                t = time.perf_counter()
                for _ in range(n // 16):
                    net.pool(net.feature_map(xx))
            out[f"{threads} thread{'s' if threads > 1 else ''}, {'channels_last' if cl else 'contiguous'}"] = \
                n / (time.perf_counter() - t)
    set_layout(backbone, True)
    torch.set_num_threads(2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=48)
    ap.add_argument("--small", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="images per batch (a worker decodes one batch)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-decode"))
    args = ap.parse_args()
    import torch

    from cmhash.models.backbones import build_backbone

    out = Path(args.out)
    print("generating files ...", flush=True)
    sets = {"12 MP JPEG, typical (1/f^1.2, ~4 MB)": make_photos(out / "photos-typical", args.photos, slope=1.2, noise=0),
            "12 MP JPEG, detailed (1/f + sensor noise, ~7 MB)": make_photos(out / "photos", args.photos),
            "64 px JPEG": make_small(out / "small", args.small)}
    backbone = build_backbone("efficientnet-lite0", image_size=224).eval()
    torch.set_num_threads(2)
    rows = ["| files | path | decode only img/s (1 process) | feature pass img/s "
            f"({args.workers} decode workers + backbone, 2 cores) | min feature cosine to before |",
            "|---|---|---|---|---|"]
    paths_ = {"before": (False, False, "full-size decode, backbone as before (before)"),
              "reduced": (True, False, "reduced-size decode, backbone as before"),
              "now": (True, True, "reduced-size decode, channels_last + paced threads (now)")}
    res = {}
    for name, paths in sets.items():
        reps = 1 if len(paths) < 100 else 2
        got = {}
        for rnd in range(2):  # interleaved rounds; the mean of the two
            for key, (draft, cl, _) in paths_.items():
                d = decode_rate(paths, draft, reps)
                r, f = features(backbone, paths, draft, cl, args.workers, args.batch)
                got.setdefault(key, []).append((d, r, f))
        ref = got["before"][-1][2]
        for key, (draft, cl, label) in paths_.items():
            f = got[key][-1][2]
            cos = (ref * f).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(f, axis=1) + 1e-12)
            d = float(np.mean([g[0] for g in got[key]]))
            r = float(np.mean([g[1] for g in got[key]]))
            res.setdefault(name, {})[key] = {"label": label, "decode_ips": d, "features_ips": r,
                                             "min_cosine": float(cos.min())}
            rows.append(f"| {name} | {label} | {d:,.1f} | {r:,.1f} | {cos.min():.5f} |")
            print(rows[-1], flush=True)
        before, now = res[name]["before"], res[name]["now"]
        res[name]["ratio"] = {"decode": now["decode_ips"] / before["decode_ips"],
                              "features": now["features_ips"] / before["features_ips"]}
        rows.append(f"| {name} | **now : before** | **{res[name]['ratio']['decode']:.2f}x** | "
                    f"**{res[name]['ratio']['features']:.2f}x** | |")
    bb = backbone_rates(backbone)
    res["backbone"] = bb
    rows += ["", "Backbone alone (EfficientNet-Lite0, 224 px, batches of 16, no decoding):", "",
             "| setting | img/s |", "|---|---|", *[f"| {k} | {v:,.1f} |" for k, v in bb.items()]]
    text = "\n".join(rows) + "\n"
    print("\n" + text)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
