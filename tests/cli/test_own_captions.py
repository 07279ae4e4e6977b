"""A user's own folder of photos and captions, in a language without spaces, with the defaults:
train, encode, index, search with a typed query; split files with image names; the vocabulary
never sees a query caption."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cmhash.cli import main
from cmhash.config import build_config
from cmhash.data.inputs import prepare_inputs

CLASSES = {"tennis": ((200, 60, 60), ["一个网球场在树旁边", "两个网球场和一些房子", "网球场旁边有停车场", "这是一个网球场"]),
           "river": ((40, 80, 200), ["一条河流穿过森林", "河流和一座桥", "弯曲的河流", "河流两岸有树"]),
           "forest": ((40, 160, 40), ["茂密的森林", "森林里有很多树", "一片绿色的森林", "森林和小路"])}


def write_chinese_folder(root, per_class=40):
    rng = np.random.default_rng(0)
    rows = []
    root.mkdir(parents=True, exist_ok=True)
    for name, (colour, captions) in CLASSES.items():
        for i in range(per_class):
            img = np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"{name}{i}.png")
            rows.append(f"{name}{i}.png\t{captions[i % 4]}\t{name}")
    (root / "captions.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_chinese_captions_end_to_end_with_the_defaults(tmp_path):
    photos = write_chinese_folder(tmp_path / "photos")
    r = CliRunner()
    sets = ["--set", "backbone.image_size=64", "--set", f"backbone.cache_dir={tmp_path / 'cache'}",
            "--set", "backbone.workers=0"]
    res = r.invoke(main, ["train", "-m", "djsrh", "-d", "folder", "--data-root", str(photos), "-b", "16",
                          "-o", str(tmp_path / "run"), "--epochs", "30", *sets])  # no --text-encoder: auto
    assert res.exit_code == 0, res.output
    spec = json.loads((tmp_path / "run" / "results.json").read_text())
    res = r.invoke(main, ["encode", str(tmp_path / "run"), "-d", "folder", "--data-root", str(photos),
                          "-o", str(tmp_path / "codes"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["index", "build", str(tmp_path / "codes"), "-o", str(tmp_path / "ix")])
    assert res.exit_code == 0, res.output
    for query, label in (("网球场", "tennis"), ("河流", "river"), ("森林", "forest")):
        res = r.invoke(main, ["search", str(tmp_path / "ix"), "--text", query, "-k", "10", "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert out["text_encoder"] == "auto (chars)" and out["known_words"] and not out["unknown_words"]
        hits = [h["labels"][0] for h in out["results"]]
        assert hits.count(label) >= 8, (query, hits)  # the Chinese query finds its class
    res = r.invoke(main, ["search", str(tmp_path / "ix"), "--text", "tennis"])
    assert res.exit_code == 2 and "auto (chars)" in res.output and "--text-encoder" in res.output
    assert spec  # the run wrote its report


def test_split_file_with_names_fits_the_vocabulary_on_its_training_part(tmp_path):
    photos = write_chinese_folder(tmp_path / "photos", per_class=4)
    rows = [ln.split("\t") for ln in (photos / "captions.tsv").read_text(encoding="utf-8").splitlines()]
    # a query-only word: the captions of the queries get a word no training caption has
    rows = [[n, c + (" 独有词" if n.endswith(("0.png", "1.png")) else ""), lab] for n, c, lab in rows]
    (photos / "captions.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")
    names = [r[0] for r in rows]
    query = [n for n in names if n.endswith(("0.png", "1.png"))]
    train = [n for n in names if n not in query]
    (tmp_path / "split.json").write_text(json.dumps({"train": train, "val": query[:3], "test": query[3:]}))
    cfg = build_config("djsrh", "folder", 16, {"backbone": {"image_size": 64, "cache_dir": str(tmp_path / "c"),
                                                            "workers": 0}, "text_options": {"min_count": 1}},
                       {"data": {"root": str(photos), "split_file": str(tmp_path / "split.json")}})
    inputs = prepare_inputs(cfg)
    s = inputs.split
    assert [names[i] for i in s.query] == query[3:] + query[:3] and [names[i] for i in s.train] == train
    vocab = set(inputs.text_encoder.vocab)
    assert "独" not in vocab and "独有" not in vocab  # never fitted on a query caption
    assert "网球" in vocab
    (tmp_path / "bad.json").write_text(json.dumps({"train": ["nope.png"], "test": query}))
    cfg.data.split_file = str(tmp_path / "bad.json")
    with pytest.raises(Exception, match="1 train names are not items of the dataset"):
        prepare_inputs(cfg)
