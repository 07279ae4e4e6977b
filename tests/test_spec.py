"""``cmhash.spec`` (the input spec) and ``cmhash.codes`` (the sign convention)."""
import numpy as np
import pytest
import torch

from cmhash.codes import sign, sign_codes
from cmhash.spec import ImageSpec, InputSpec, TextSpec
from cmhash.utils import CmhashError


def test_spec_round_trip_and_errors():
    spec = InputSpec(ImageSpec("maps", 1280, 1280, [4, 4], "efficientnet-lite0", None, "imagenet", True, 128),
                     TextSpec("encoder", 3, "words", {"analyzer": "words", "vocab": ["a", "b", "c"]}), 5)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert spec.image.reads_pixels and spec.image.net_dim == 1280
    assert ImageSpec("pixels", 4096, backbone="alexnet").net_dim == 0
    assert not ImageSpec("features", 128).reads_pixels
    with pytest.raises(CmhashError, match="unknown image input mode"):
        ImageSpec("jpeg")
    with pytest.raises(CmhashError, match="needs 3 vocabulary words"):
        TextSpec("encoder", 3, "words", {"vocab": ["a"]})
    old = InputSpec.from_dict({"image": {"mode": "features", "dim": 4}, "text": {"kind": "bow", "dim": 2,
                                                                                   "vocab": ["dog", "cat"]}})
    assert old.text == TextSpec("encoder", 2, "words", {"analyzer": "ascii", "vocab": ["dog", "cat"]})
    with pytest.raises(CmhashError, match="damaged input spec"):
        InputSpec.from_dict({"image": {"mode": "features"}})
    assert "from_checkpoint" not in InputSpec(ImageSpec(from_checkpoint=True)).to_dict()["image"]


def test_sign_is_one_convention_for_numpy_and_torch():
    x = np.array([[-1.5, 0.0, 2.0, -0.0]])
    assert sign(x).tolist() == [[-1, 1, 1, 1]] and sign(x).dtype == np.int8
    t = torch.tensor([[-1.5, 0.0, 2.0, -1e-9]], requires_grad=True)
    assert sign(t).tolist() == [[-1.0, 1.0, 1.0, -1.0]] and sign(t).dtype == t.dtype
    assert sign_codes(t).tolist() == [[-1, 1, 1, -1]] and sign_codes(t).dtype == np.int8
