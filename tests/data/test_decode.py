"""Photos are decoded at the size the backbone needs (``read_image(draft=True)``), and the features
stay those of the full-size decode."""
import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from cmhash.data.formats import read_image
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
