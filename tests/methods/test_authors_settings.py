"""The peers' settings and the branches of their losses, pinned to the authors' code.

Each preset value taken from an author's file is checked here with the file and line it comes from
(KaiserLew/JDSH, penghu-cs/UCCH, Atmegal/DGCPN), so a changed preset fails a test that says where
the value was read. The loss branches are checked on hand-computed numbers (not a loop written from
the same docstring): JDSH's left and right tails and the items either side of each threshold,
UCCH's memory update after warm-up and during it."""
import math

import pytest
import torch
import torch.nn.functional as F

from cmhash.losses import dsdw, jdsh_similarity
from cmhash.presets import load_preset
from cmhash.registry import METHODS

from conftest import method_on_dims

PINS = [  # (method, preset section, setting, value, where the authors set it)
    ("jdsh", "mirflickr", "method.alpha", 0.5, "JDSH config/JDSH_MIRFlickr.json:2"),
    ("jdsh", "mirflickr", "method.beta", 0.1, "JDSH config/JDSH_MIRFlickr.json:3"),
    ("jdsh", "mirflickr", "method.lamb", 0.4, "JDSH config/JDSH_MIRFlickr.json:4"),
    ("jdsh", "mirflickr", "method.mu", 1.4, "JDSH config/JDSH_MIRFlickr.json:5"),
    ("jdsh", "mirflickr", "method.intra", 0.1, "JDSH config/JDSH_MIRFlickr.json:6"),
    ("jdsh", "mirflickr", "method.lr_img", 0.01, "JDSH config/JDSH_MIRFlickr.json:7"),
    ("jdsh", "mirflickr", "method.lr_txt", 0.01, "JDSH config/JDSH_MIRFlickr.json:8"),
    ("jdsh", "mirflickr", "method.dsdw_min", -0.52, "JDSH config/JDSH_MIRFlickr.json:9"),
    ("jdsh", "mirflickr", "method.dsdw_max", 0.68, "JDSH config/JDSH_MIRFlickr.json:10"),
    ("jdsh", "mirflickr", "method.a", 2.0, "JDSH config/JDSH_MIRFlickr.json:11 (ALPHA)"),
    ("jdsh", "mirflickr", "method.dsdw_loc", -0.49, "JDSH config/JDSH_MIRFlickr.json:12"),
    ("jdsh", "mirflickr", "method.dsdw_scale_left", 0.019, "JDSH config/JDSH_MIRFlickr.json:13"),
    ("jdsh", "mirflickr", "method.b", 4.0, "JDSH config/JDSH_MIRFlickr.json:14 (BETA)"),
    ("jdsh", "mirflickr", "method.dsdw_scale_right", 0.088, "JDSH config/JDSH_MIRFlickr.json:16"),
    ("jdsh", "mirflickr", "method.l1", 0.1, "JDSH config/JDSH_MIRFlickr.json:17"),
    ("jdsh", "mirflickr", "method.l2", 0.2, "JDSH config/JDSH_MIRFlickr.json:18"),
    ("jdsh", "mirflickr", "train.batch_size", 32, "JDSH config/JDSH_MIRFlickr.json:24"),
    ("jdsh", "mirflickr", "method.momentum", 0.9, "JDSH config/JDSH_MIRFlickr.json:25"),
    ("jdsh", "mirflickr", "method.weight_decay", 0.0005, "JDSH config/JDSH_MIRFlickr.json:26"),
    ("jdsh", "mirflickr", "train.epochs", 300, "JDSH config/JDSH_MIRFlickr.json:30"),
    ("jdsh", "mirflickr", "method.dsdw", "fixed", "JDSH JDSH.py:135-141 (the numbers above, not fitted)"),
    ("jdsh", "nuswide", "method.alpha", 0.4, "JDSH config/JDSH_NUSWIDE.json:2"),
    ("jdsh", "nuswide", "method.beta", 0.3, "JDSH config/JDSH_NUSWIDE.json:3"),
    ("jdsh", "nuswide", "method.lamb", 0.3, "JDSH config/JDSH_NUSWIDE.json:4"),
    ("jdsh", "nuswide", "method.mu", 1.4, "JDSH config/JDSH_NUSWIDE.json:5"),
    ("jdsh", "nuswide", "method.dsdw_max", 0.75, "JDSH config/JDSH_NUSWIDE.json:9"),
    ("jdsh", "nuswide", "method.dsdw_min", -0.64, "JDSH config/JDSH_NUSWIDE.json:10"),
    ("jdsh", "nuswide", "method.dsdw_loc", -0.62, "JDSH config/JDSH_NUSWIDE.json:12"),
    ("jdsh", "nuswide", "method.dsdw_scale_left", 0.0128, "JDSH config/JDSH_NUSWIDE.json:13"),
    ("jdsh", "nuswide", "method.dsdw_scale_right", 0.086, "JDSH config/JDSH_NUSWIDE.json:16"),
    ("jdsh", "nuswide", "method.l1", 0.2, "JDSH config/JDSH_NUSWIDE.json:17"),
    ("jdsh", "nuswide", "method.l2", 0.2, "JDSH config/JDSH_NUSWIDE.json:18"),
    ("ucch", "default", "method.lr", 0.0001, "UCCH utils/config.py:15"),
    ("ucch", "default", "method.weight_decay", 0.000001, "UCCH utils/config.py:16"),
    ("ucch", "default", "train.batch_size", 256, "UCCH utils/config.py:17"),
    ("ucch", "default", "train.epochs", 100, "UCCH utils/config.py:19"),
    ("ucch", "default", "method.img_layers", 3, "UCCH utils/config.py:23"),
    ("ucch", "default", "method.txt_layers", 2, "UCCH utils/config.py:23"),
    ("ucch", "default", "method.beta", 0.9, "UCCH utils/config.py:27 (--alpha)"),
    ("ucch", "default", "method.momentum", 0.4, "UCCH utils/config.py:28"),
    ("ucch", "default", "method.negatives", 4096, "UCCH utils/config.py:29 (--K)"),
    ("ucch", "default", "method.t", 0.9, "UCCH utils/config.py:30 (--T)"),
    ("ucch", "default", "method.shift", 1.0, "UCCH utils/config.py:31"),
    ("ucch", "default", "method.margin", 0.2, "UCCH utils/config.py:32"),
    ("ucch", "default", "method.warmup_epochs", 1, "UCCH utils/config.py:33"),
    ("ucch", "default", "method.hidden", 8192, "UCCH nets/ImageNet.py:7 (mid_num1 = 1024 * 8)"),
    ("ucch", "default", "method.lr_step", 30, "UCCH UCCH.py:111 (milestones 30, 60, 90, 120)"),
    ("ucch", "folder", "method.beta", 0.7, "UCCH README.md:16 (fixed features: --alpha 0.7)"),
    ("ucch", "folder", "method.shift", 0.1, "UCCH README.md:16 (--shift 0.1)"),
    ("ucch", "folder", "method.margin", 0.2, "UCCH README.md:16 (--margin 0.2)"),
    ("ucch", "folder", "method.hidden", 8192, "UCCH nets/ImageNet.py:7; README.md:16 keeps it"),
    ("ucch", "folder", "train.epochs", 20, "UCCH README.md:16 (--max_epochs 20)"),
    ("ucch", "synthetic", "method.beta", 0.7, "UCCH README.md:16 (fixed features: --alpha 0.7)"),
    ("ucch", "synthetic", "method.shift", 0.1, "UCCH README.md:16 (--shift 0.1)"),
    ("ucch", "synthetic", "method.hidden", 8192, "UCCH nets/ImageNet.py:7; README.md:16 keeps it"),
    ("ucch", "synthetic", "train.epochs", 20, "UCCH README.md:16 (--max_epochs 20)"),
    ("dgcpn", "default", "train.epochs", 100, "DGCPN train.py:37"),
    ("dgcpn", "default", "train.batch_size", 32, "DGCPN train.py:38"),
    ("dgcpn", "default", "method.lr", 0.005, "DGCPN train.py:39"),
    ("dgcpn", "default", "method.weight_decay", 0.0005, "DGCPN train.py:40"),
    ("dgcpn", "default", "method.momentum", 0.9, "DGCPN train.py:41"),
    ("dgcpn", "default", "method.dw", 1.0, "DGCPN train.py:47"),
    ("dgcpn", "default", "method.cw", 1.0, "DGCPN train.py:48"),
    ("dgcpn", "default", "method.k", 1.5, "DGCPN train.py:50 (--K)"),
    ("dgcpn", "default", "method.a1", 0.01, "DGCPN train.py:52"),
    ("dgcpn", "default", "method.a2", 0.3, "DGCPN train.py:53"),
    ("dgcpn", "default", "method.knn", 0.4, "DGCPN train.py:58-61 (5,000 - 3,000 = 2,000 of 5,000)"),
    ("dgcpn", "default", "method.scale_per_neighbour", 2.0, "DGCPN train.py:63 (scale 4,000 / 2,000)"),
    ("dgcpn", "default", "method.dropout", 0.5, "DGCPN models.py:16"),
    ("dgcpn", "default", "method.txt_init_std", 0.3, "DGCPN models.py:44"),
]


def resolved(method: str, section: str) -> dict:
    """The method's settings as a run on ``section`` resolves them: params, then default, then section."""
    preset = load_preset(method, section)
    cfg = METHODS.get(method).make_config(preset.get("method", {}))
    return {**{f"method.{k}": v for k, v in vars(cfg).items()},
            **{f"train.{k}": v for k, v in preset.get("train", {}).items()}}


@pytest.mark.parametrize("method,section,key,value,source", PINS, ids=[f"{p[0]}-{p[1]}-{p[2]}" for p in PINS])
def test_preset_value_is_the_authors(method, section, key, value, source):
    got = resolved(method, section).get(key)
    assert got == value, f"{method} {section} {key} is {got!r}; the authors' {source} says {value!r}"


def test_ucch_clips_gradients_as_the_authors():
    assert METHODS.get("ucch").clip_grad_norm == 1.0  # UCCH UCCH.py:165, clip_grad_norm(parameters, 1.)


# JDSH's DSDW (Eq. 4-6) with the MIRFlickr numbers (config/JDSH_MIRFlickr.json:9-16) and the function's
# own defaults a = 2, b = 4, l1 = 0.1, l2 = 0.2: left = -0.49 - 2 x 0.019 = -0.528,
# right = -0.49 + 4 x 0.088 = -0.138.
MIRFLICKR = {"loc": -0.49, "scale_left": 0.019, "scale_right": 0.088, "s_min": -0.52, "s_max": 0.68}
DSDW_BY_HAND = [  # (S~ entry, after DSDW), worked by hand
    (-0.60, -0.6649972),  # left tail: (1 + 0.1 exp(-(-0.60 + 0.52))) (-0.60) = 1.1083287 x -0.60
    (-0.53, -0.5835327),  # just inside the left tail (a = 2; a = 3 would leave it): 1.1010050 x -0.53
    (-0.52, -0.52),  # just outside it (a = 1 would take it in)
    (-0.30, -0.30),  # the middle: unchanged
    (-0.15, -0.15),  # just outside the right tail (b = 3 would take it in)
    (-0.13, -0.1415663),  # just inside it: (1 + 0.2 exp(-0.13 - 0.68)) (-0.13) = 1.0889717 x -0.13
    (0.50, 0.5835270),  # right tail: (1 + 0.2 exp(0.50 - 0.68)) 0.50 = 1.1670540 x 0.50
]


def test_dsdw_each_tail_and_each_threshold_by_hand():
    s = torch.tensor([v for v, _ in DSDW_BY_HAND], dtype=torch.float64).reshape(1, -1)
    got = dsdw(s, MIRFLICKR)[0].tolist()
    for (v, want), g in zip(DSDW_BY_HAND, got):
        assert g == pytest.approx(want, abs=1e-6), f"DSDW({v}) = {g}, by hand {want}"


def test_jdsh_similarity_scales_by_mu_and_weights_both_tails():
    """Two items whose S~ entries land in the left tail and the right tail; the similarity is mu (1.4,
    the default) times DSDW. S_I = S_T = [[1, -1], [-1, 1]] (opposite features), S_H the same, so
    S~ = (0.5 + 0.1 + 0.4) S_I = S_I: the diagonal 1 is in the right tail, -1 in the left."""
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # cos 0: S_I off-diagonal -1
    got = jdsh_similarity(f, f, stats=MIRFLICKR)
    up = 1.4 * (1 + 0.2 * math.exp(1 - 0.68))  # (1 + l2 exp(s - s_max)) s, s = 1: 1.4 x 1.2754249
    down = -1.4 * (1 + 0.1 * math.exp(-(-1 + 0.52)))  # (1 + l1 exp(-(s - s_min))) s, s = -1: 1.4 x -1.1616074
    assert got[0, 0].item() == pytest.approx(1.7855949, abs=1e-6) and up == pytest.approx(1.7855949, abs=1e-6)
    assert got[0, 1].item() == pytest.approx(-1.6262504, abs=1e-6) and down == pytest.approx(-1.6262504, abs=1e-6)


class Fixed(torch.nn.Module):
    """A net whose every output row is the unit vector e_j (16 bits)."""

    def __init__(self, j: int):
        super().__init__()
        self.j = j

    def forward(self, x):
        out = torch.zeros(len(x), 16)
        out[:, self.j] = 1.0
        return out


def _ucch_after_one_batch(epoch: int) -> torch.Tensor:
    """UCCH's memory row 0 after one batch whose image and text outputs are both e_1, starting from e_0."""
    m = method_on_dims("ucch", 16, 6, 5, {"hidden": 8, "negatives": 2})
    m.attach_training_set(torch.zeros(4, 1))
    v = torch.zeros(4, 16)
    v[:, 0] = 1.0
    m.memory.v = v
    m.img_net = m.txt_net = Fixed(1)
    m.set_epoch(epoch)
    m.loss({"image": torch.zeros(2, 6), "text": torch.zeros(2, 5), "row": torch.tensor([0, 1])})
    return m.memory.v[0, :2]


def test_ucch_memory_update_after_warmup_keeps_d_of_the_old_row():
    """UCCH Eq. 5 (NCE/NCEAverage.py:81-88): v <- normalise(d v + (1 - d) normalise((h_x + h_y) / 2)),
    d = 0.4: from e_0 towards e_1, normalise(0.4 e_0 + 0.6 e_1) = (0.5547002, 0.8320503)."""
    got = _ucch_after_one_batch(epoch=1)  # warmup_epochs = 1: epoch 1 is past it
    assert got.tolist() == pytest.approx([0.5547002, 0.8320503], abs=1e-6)


def test_ucch_memory_during_warmup_is_the_batch_output():
    """During warm-up the code's momentum is 0 (NCEAverage.py:36): the row becomes the output itself."""
    got = _ucch_after_one_batch(epoch=0)
    assert got.tolist() == pytest.approx([0.0, 1.0], abs=1e-6)


def test_ucch_canonical_memory_start_is_the_sign_of_the_mean_projection():
    m = method_on_dims("ucch", 16, 6, 5, {"hidden": 8, "negatives": 2})
    m.targets = "canonical"
    m.attach_training_set(torch.zeros(3, 1))
    u = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    m.attach_training_features(u, -0.5 * u)  # (u + v) / 2 = u / 4: the signs of u
    assert torch.equal(m.memory.v, F.normalize(torch.sign(u), dim=1))
