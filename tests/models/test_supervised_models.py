"""Attention, adversarial and memory parts of the supervised methods: equations, shapes, gradients,
and which parameters each training phase moves."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import method_on_dims as build_method
from cmhash.models import (AttentionPool, BagTokens, Discriminator, GlobalLocalEncoder, Memory, MultiScaleText,
                           cross_attention_similarity)
from cmhash.utils import CmhashError


def scan_loop(img, txt, img_mask, txt_mask, lam):
    """SCAN t2i similarity for one pair, written out word by word and region by region."""
    regions = [img[r] for r in range(len(img)) if img_mask[r]]
    words = [txt[w] for w in range(len(txt)) if txt_mask[w]]
    s = [[F.leaky_relu(F.cosine_similarity(v, e, dim=0), 0.1).item() for e in words] for v in regions]
    s = [[x / (math.sqrt(sum(y * y for y in row)) + 1e-8) for x in row] for row in s]  # normalise over words
    total = 0.0
    for w, e in enumerate(words):
        z = [math.exp(lam * s[r][w]) for r in range(len(regions))]
        att = sum(zr / sum(z) * regions[r] for r, zr in enumerate(z))
        total += F.cosine_similarity(att, e, dim=0).item()
    return total / len(words)


def test_cross_attention_matches_scan_loop_with_masks():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(3, 4, 5, generator=g), torch.randn(2, 3, 5, generator=g)
    img_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 1]], dtype=torch.bool)
    txt_mask = torch.tensor([[1, 1, 1], [1, 0, 1]], dtype=torch.bool)
    got = cross_attention_similarity(img, txt, img_mask, txt_mask, smooth=4.0)
    assert got.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert got[i, j].item() == pytest.approx(scan_loop(img[i], txt[j], img_mask[i], txt_mask[j], 4.0), abs=1e-5)


def test_cross_attention_gradients_reach_both_sides():
    img = torch.randn(2, 4, 6, requires_grad=True)
    txt = torch.randn(3, 5, 6, requires_grad=True)
    cross_attention_similarity(img, txt).sum().backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0


def test_bag_tokens_pick_largest_words_and_mask_zeros():
    bag = BagTokens(6, 4, max_tokens=3)
    x = torch.tensor([[0.0, 0.5, 0.0, 2.0, 0.0, 0.1], [0.0, 0.0, 0.0, 0.0, 0.3, 0.0]])
    tok, mask = bag(x)
    assert tok.shape == (2, 3, 4) and mask.tolist() == [[True, True, True], [True, False, False]]
    # values relative to the row's largest: 2.0 -> 1, 0.5 -> 0.25
    assert torch.allclose(tok[0, 0], bag.embed[3]) and torch.allclose(tok[0, 1], 0.25 * bag.embed[1])
    assert torch.allclose(tok[1, 0], bag.embed[4])
    assert BagTokens(2, 4, max_tokens=16)(torch.ones(1, 2))[0].shape == (1, 2, 4)  # T clamps to D


def test_attention_pool_weights_and_masks():
    pool = AttentionPool(4, 8)
    tok = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out, a = pool(tok, mask)
    assert out.shape == (2, 4)
    assert torch.allclose(a.sum(1), torch.ones(2)) and (a[0, 2:] == 0).all()
    assert torch.allclose(out[0], a[0, 0] * tok[0, 0] + a[0, 1] * tok[0, 1], atol=1e-6)
    enc = GlobalLocalEncoder(7, 4, hidden=16, local_dim=8, out_dim=12)
    x = torch.randn(2, 7, requires_grad=True)
    f = enc(x, tok.requires_grad_(), mask)
    f.sum().backward()
    assert f.shape == (2, 12) and x.grad.abs().sum() > 0 and tok.grad.abs().sum() > 0


def test_discriminator_and_multiscale_text_shapes():
    d = Discriminator(16)
    f = torch.randn(5, 16, requires_grad=True)
    out = d(f)
    out.sum().backward()
    assert out.shape == (5,) and f.grad.abs().sum() > 0
    for dim in (10, 200):  # Wiki's 10 LDA topics are narrower than SSAH's widest window (50)
        ms = MultiScaleText(dim)
        assert ms(torch.rand(3, dim)).shape == (3, 6 * dim)


def test_memory_rows_state_and_state_dict():
    m = Memory(F=3, H=2)
    m.attach(5)
    assert m.F.shape == (5, 3) and len(m) == 5
    m.write("F", torch.tensor([1, 3]), torch.ones(2, 3, requires_grad=True))
    assert (m.F[1] == 1).all() and not m.F.requires_grad
    st = m.state()
    m2 = Memory(F=3, H=2)
    m2.load_state(st)
    assert torch.equal(m2.F, m.F) and m.state_dict() == {}  # not part of the weights
    with pytest.raises(CmhashError):
        Memory(G=3).load_state(st)


def _batch(n=8, img_dim=12, txt_dim=7, c=4, n_train=20):
    g = torch.Generator().manual_seed(1)
    lab = (torch.rand(n, c, generator=g) > 0.5).float()
    lab[:, 0] = 1.0
    return {"image": torch.rand(n, img_dim, generator=g), "text": torch.rand(n, txt_dim, generator=g),
            "feat": torch.rand(n, img_dim, generator=g), "label": lab, "index": torch.arange(n),
            "row": torch.arange(n) * 2}, (torch.rand(n_train, c, generator=g) > 0.5).float()


SMALL = {"dcmh": {"img_hidden": 16, "txt_hidden": 16},
         "ssah": {"hidden": 32, "feat_dim": 16},
         "udsph": {"hidden": 32, "feat_dim": 16, "att_dim": 8, "max_tokens": 4, "att_pairs": 5},
         "sdeh": {"hidden": 16, "local_dim": 8, "feat_dim": 16, "sem_dim": 8, "tok_dim": 8, "lab_hidden": 16}}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_phase_moves_only_its_own_networks(name):
    torch.manual_seed(0)
    batch, train_labels = _batch()
    model = build_method(name, 8, 12, 7, SMALL[name], n_labels=4)
    model.attach_training_set(train_labels)
    model.set_epoch(0)
    opts = model.make_optimizer()
    opts = opts if isinstance(opts, dict) else {None: opts}
    for phase in model.phases:
        model.zero_grad(set_to_none=True)
        loss, parts = model.loss(batch) if phase is None else model.loss(batch, phase)
        assert torch.isfinite(loss) and parts
        loss.backward()
        mine = {id(p) for g in opts[phase].param_groups for p in g["params"]}
        moved = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        assert moved, f"{name}/{phase}: no gradient"
        assert all(id(dict(model.named_parameters())[n]) in mine for n in moved
                   if not n.startswith("dis_")), f"{name}/{phase}: gradient outside its optimiser"
    assert model.encode_image(batch["image"]).shape == (8, 8)
    assert model.encode_text(batch["text"]).shape == (8, 8)


def test_ssah_phases_write_memory_and_discriminator_learns():
    torch.manual_seed(0)
    batch, train_labels = _batch()
    m = build_method("ssah", 8, 12, 7, SMALL["ssah"], n_labels=4)
    m.attach_training_set(train_labels)
    before = m.memory.H.clone()
    m.loss(batch, "label")
    rows = batch["row"]
    assert not torch.equal(before[rows], m.memory.H[rows])
    other = torch.ones(len(before), dtype=torch.bool)
    other[rows] = False
    assert torch.equal(before[other], m.memory.H[other])
    opt = m.make_optimizer()["disc"]
    first = None
    for _ in range(30):
        loss, _ = m.loss(batch, "disc")
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first  # the discriminators learn to tell label features from modality ones


def test_dcmh_codes_and_learning_rate_schedule():
    batch, train_labels = _batch()
    m = build_method("dcmh", 8, 12, 7, SMALL["dcmh"], n_labels=4)
    m.attach_training_set(train_labels)
    assert torch.equal(m.B, torch.where(m.memory.F + m.memory.G >= 0, 1.0, -1.0))
    assert m.lr_factor(9, 10) == pytest.approx(1e-6 / 10 ** -1.5)
    assert m.lr_factor(0, 10) == pytest.approx((10 ** -1.5 + (1e-6 - 10 ** -1.5) / 10) / 10 ** -1.5)


def test_supervised_methods_need_labels():
    with pytest.raises(CmhashError, match="supervised"):
        build_method("ssah", 8, 12, 7, SMALL["ssah"], n_labels=0)


def test_ssah_label_passes_repeat_the_label_phase():
    m = build_method("ssah", 8, 12, 7, {**SMALL["ssah"], "label_passes": 3}, n_labels=4)
    assert m.phases == ("label", "label", "label", "disc", "image", "text")
    assert build_method("udsph", 8, 12, 7, SMALL["udsph"], n_labels=4).phases[0] == "label"


def test_sdeh_ablation_spec_names_real_settings():
    from cmhash.registry import METHODS
    from cmhash.train.sweep import load_spec

    spec = load_spec("sdeh-loss-ablation")
    fields = set(METHODS.get("sdeh").config_class().__dataclass_fields__)
    assert len(spec.points) == 7 and len(load_spec("udsph-attention").points) == 4
    for p in spec.points:
        assert all(k.split(".", 1)[1] in fields for k in p.overrides)
    batch, train_labels = _batch()
    graded = build_method("sdeh", 8, 12, 7, SMALL["sdeh"], n_labels=4)
    binary = build_method("sdeh", 8, 12, 7, {**SMALL["sdeh"], "graded": False}, n_labels=4)
    binary.load_state_dict(graded.state_dict())
    # partly overlapping labels in the batch: graded and binary targets differ, so do the losses
    assert graded.loss(batch)[1]["ms"] != pytest.approx(binary.loss(batch)[1]["ms"])
