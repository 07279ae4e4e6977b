"""Photos are decoded at the size the backbone needs (``read_image(draft=True)``), and the features
stay those of the full-size decode."""
import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from cmhash.data.images import read_image
from cmhash.models.backbones import build_backbone


def camera_jpeg(path, w, h, seed):
    """A camera-sized JPEG whose content has a natural image's 1/f amplitude spectrum (a random
    smooth field would make features hang on its faint noise, which no photo does)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    chans = []
    for _ in range(3):
        spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f
        spec[0, 0] = 0
        chans.append(np.fft.irfft2(spec, s=(h, w)).astype(np.float32))
    x = np.stack(chans, -1) @ np.array([[1, .6, .3], [.6, 1, .6], [.3, .6, 1]], np.float32)
    x = (x - x.mean()) / x.std() * 45 + 120 + rng.normal(0, 2, x.shape).astype(np.float32)
    Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    return [camera_jpeg(d / "landscape-12mp.jpg", 4000, 3000, 0), camera_jpeg(d / "portrait-8mp.jpg", 2448, 3264, 1)]


def test_jpegs_are_decoded_reduced_and_features_agree(photos, monkeypatch):
    """A 12 MP JPEG read for 224 px decodes at 1/4 scale (shorter side >= 448), and EfficientNet-Lite0
    features of the reduced decode are within cosine 0.999 of the full-size decode's."""
    sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = draft(self, mode, size)
        sizes.append(self.size)
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    net = build_backbone("efficientnet-lite0", image_size=224).eval()
    for p, decoded in zip(photos, [(1000, 750), (612, 816)]):
        full, reduced = read_image(p, 224, draft=False), read_image(p, 224)
        assert sizes.pop() == decoded
        assert full.shape == reduced.shape == (3, 224, 224)
        with torch.inference_mode():
            f = net.pool(net.feature_map(net.preprocess(torch.from_numpy(np.stack([full, reduced])))))
        assert torch.nn.functional.cosine_similarity(f[:1], f[1:]).item() >= 0.999
    assert not sizes  # draft=False never asked for a reduced decode


def test_small_and_non_jpeg_files_decode_as_before(tmp_path):
    """A JPEG already near the input size, and a PNG (no reduced decoding), give the same pixels."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=90)
    for name in ("a.png", "a.jpg"):
        np.testing.assert_array_equal(read_image(tmp_path / name, 224), read_image(tmp_path / name, 224, draft=False))


def test_paced_gives_decoders_cores_only_when_this_process_waits(monkeypatch):
    """While worker processes decode, the backbone's threads drop to the cores they leave only when
    the main process waits on them (slow decoding); with fast decoding they stay; restored after."""
    import os
    import time

    from cmhash.data.features import paced

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        def batches(delay):
            for i in range(8):
                time.sleep(delay)
                yield i

        seen = []
        for _ in paced(batches(0.02), workers=2):  # decode-bound: waits 20 ms, computes ~0
            seen.append(torch.get_num_threads())
        assert seen[:5] == [8] * 5 and set(seen[5:]) == {6} and torch.get_num_threads() == 8
        seen = []
        for _ in paced(batches(0.0), workers=2):  # backbone-bound: images ready, 10 ms of work each
            time.sleep(0.01)
            seen.append(torch.get_num_threads())
        assert set(seen) == {8}
        gen = paced(batches(0.02), workers=2)
        for i, _ in enumerate(gen):
            if i == 6:
                break
        assert torch.get_num_threads() == 6
        gen.close()  # a pass stopped early restores the threads too
        assert torch.get_num_threads() == 8
        assert list(paced(batches(0.0), workers=0)) == list(range(8))
    finally:
        torch.set_num_threads(before)


# --- every mode, bounded memory (hostile input) -------------------------------------------------
def _png(path, im):
    im.save(path)
    return path


def _former(path, size):
    """The path before: convert("RGB"), shorter side resized (rounded), centre crop."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


@pytest.mark.parametrize("w, h", [(400, 300), (300, 1100), (96, 96), (225, 224)])
def test_ordinary_images_decode_exactly_as_before(tmp_path, w, h):
    """Up to 4:1 the pixels are the former path's, bit for bit (caches and indexes made so far hold)."""
    rng = np.random.default_rng(w)
    for mode in ("RGB", "L"):
        arr = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
        p = _png(tmp_path / f"{mode}.png", Image.fromarray(arr, mode))
        np.testing.assert_array_equal(read_image(p, 64), _former(p, 64))
    rgba = np.dstack([rng.integers(0, 256, (h, w, 3), dtype=np.uint8), np.full((h, w), 255, np.uint8)])
    p = _png(tmp_path / "opaque.png", Image.fromarray(rgba, "RGBA"))  # an opaque alpha channel changes nothing
    np.testing.assert_array_equal(read_image(p, 64), _former(p, 64))


def test_an_elongated_image_resamples_only_its_centre(tmp_path):
    """A 1 x 100000 PNG (109 bytes took a server to 6.5 GB): its centre square is 1 pixel, so the
    output is the colour around it everywhere; 30000 x 1 likewise. A 5:1 image agrees with the former
    path to within 1 grey level."""
    col = np.zeros((100_000, 1, 3), np.uint8)
    col[49_990:50_010] = (10, 200, 30)  # the centre and its resampling neighbours
    p = _png(tmp_path / "tall.png", Image.fromarray(col))
    assert p.stat().st_size < 2000
    out = read_image(p, 224)
    assert out.shape == (3, 224, 224)
    np.testing.assert_array_equal(out, np.broadcast_to(np.array([10, 200, 30], np.uint8)[:, None, None], out.shape))
    row = np.full((1, 30_000, 3), 77, np.uint8)
    assert (read_image(_png(tmp_path / "wide.png", Image.fromarray(row)), 224) == 77).all()
    rng = np.random.default_rng(1)
    arr = np.cumsum(rng.integers(0, 9, (100, 500, 3)), axis=1).astype(np.uint8)
    p = _png(tmp_path / "five.png", Image.fromarray(arr))
    assert np.abs(read_image(p, 64).astype(int) - _former(p, 64).astype(int)).max() <= 1


def _expected(rgb):
    """(3, 16, 16) of one colour."""
    return np.broadcast_to(np.array(rgb, np.uint8)[:, None, None], (3, 16, 16))


@pytest.mark.parametrize("mode, make, rgb", [
    ("I;16", lambda: Image.fromarray(np.full((20, 20), 32896, np.uint16)), (128, 128, 128)),  # 32896 = 128 * 257
    ("I;16 white", lambda: Image.fromarray(np.full((20, 20), 65535, np.uint16)), (255, 255, 255)),
    ("I;16B", lambda: Image.fromarray(np.full((20, 20), 257 * 40, np.uint16)).convert("I").convert("I;16B"), (40,) * 3),
    ("I", lambda: Image.fromarray(np.full((20, 20), 257 * 200, np.int32)), (200, 200, 200)),
    ("I negative", lambda: Image.fromarray(np.full((20, 20), -5, np.int32)), (0, 0, 0)),
    ("F", lambda: Image.fromarray(np.full((20, 20), 0.5, np.float32)), (128, 128, 128)),
    ("F above 1", lambda: Image.fromarray(np.full((20, 20), 7.0, np.float32)), (255, 255, 255)),
    ("1", lambda: Image.new("1", (20, 20), 1), (255, 255, 255)),
    ("L", lambda: Image.new("L", (20, 20), 90), (90, 90, 90)),
    ("LA half", lambda: Image.new("LA", (20, 20), (0, 128)), (127, 127, 127)),
    ("RGBA clear", lambda: Image.new("RGBA", (20, 20), (255, 0, 0, 0)), (255, 255, 255)),
    ("RGBA half", lambda: Image.new("RGBA", (20, 20), (200, 0, 100, 128)), (227, 127, 177)),
    ("P", lambda: Image.new("RGB", (20, 20), (10, 20, 30)).convert("P", palette=Image.ADAPTIVE), (10, 20, 30)),
    ("P transparent", lambda: _palette_transparent(), (255, 255, 255)),
    ("PA", lambda: Image.new("PA", (20, 20), (0, 0)), (255, 255, 255)),
    ("CMYK", lambda: Image.new("CMYK", (20, 20), (0, 255, 255, 0)), (255, 0, 0)),
    ("YCbCr", lambda: Image.new("RGB", (20, 20), (0, 0, 255)).convert("YCbCr"), None),
])
def test_every_mode_becomes_the_rgb_a_person_sees(tmp_path, mode, make, rgb):
    """Hand-made expected colour for each mode: 16-bit and 32-bit integers scaled from 0..65535
    (Pillow's own conversion clipped them white), floats from 0..1, transparency over white."""
    im = make()
    if rgb is None:  # YCbCr round trip: blue, within rounding
        rgb = (0, 0, 255)
        got = read_image(_src(tmp_path, im), 16)
        assert np.abs(got.astype(int) - _expected(rgb).astype(int)).max() <= 3
        return
    got = read_image(_src(tmp_path, im), 16)
    np.testing.assert_array_equal(got, _expected(rgb))


def _src(tmp_path, im):
    """A file Pillow writes that mode to (PNG, else TIFF), or the image's bytes through TIFF."""
    for ext in ("png", "tiff"):
        p = tmp_path / f"x.{ext}"
        try:
            im.save(p)
        except (OSError, KeyError, ValueError):
            continue
        with Image.open(p) as back:
            if back.mode == im.mode or im.mode in ("1", "P", "PA"):
                return p
    raise AssertionError(f"no file format keeps mode {im.mode}")


def _palette_transparent():
    im = Image.new("P", (20, 20), 3)
    im.putpalette([0, 0, 0] * 3 + [250, 10, 10] + [0, 0, 0] * 252)
    im.info["transparency"] = 3
    return im


def test_16bit_photo_is_not_white(tmp_path):
    """The reported case: a 16-bit grayscale PNG of a gradient decodes to the gradient, not 255."""
    grad = (np.linspace(0, 65535, 64)[None, :] * np.ones((64, 1))).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(grad).save(p)
    assert Image.open(p).mode == "I;16"
    out = read_image(p, 64)
    assert 100 < out.mean() < 155 and out.min() <= 3 and out.max() >= 252


def test_a_palette_with_alpha_per_entry_is_composited_per_entry(tmp_path):
    """PNG palettes carry an alpha per entry (tRNS): entry 0 opaque red, 1 half-transparent blue,
    2 transparent; left to right over white."""
    im = Image.new("P", (30, 10))
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * 759)
    im.putdata([x // 10 for _ in range(10) for x in range(30)])
    im.info["transparency"] = bytes([255, 128, 0])
    p = tmp_path / "pal.png"
    im.save(p, transparency=bytes([255, 128, 0]))
    with Image.open(p) as back:
        assert back.mode == "P" and isinstance(back.info["transparency"], bytes)
    got = read_image(p, 10).transpose(1, 2, 0)  # the centre 10 x 10: entry 1
    np.testing.assert_array_equal(got, np.broadcast_to(np.array([127, 127, 255], np.uint8), (10, 10, 3)))
