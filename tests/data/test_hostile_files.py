"""The edges a hostile user found in captions.tsv and split files: each a clear error or a correct
result (the cases of the second hostile test of main)."""
import json

import numpy as np
import pytest
from PIL import Image

from cmhash.data.base import DataError
from cmhash.data.folder import load_folder, read_caption_file
from cmhash.data.protocol import Split


def folder(tmp_path, lines: list[str], encoding_prefix: bytes = b"", n_images: int = 4):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(n_images):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / f"img{i}.png")
    (root / "captions.tsv").write_bytes(encoding_prefix + "\n".join(lines).encode("utf-8") + b"\n")
    return root


def test_a_utf8_bom_is_dropped(tmp_path):
    root = folder(tmp_path, [f"img{i}.png\ta caption\tc{i % 2}" for i in range(4)], b"\xef\xbb\xbf")
    data = load_folder(root).data
    assert data.names[0] == "img0.png" and data.label_names == ["c0", "c1"]


def test_a_tab_inside_a_caption_is_an_error_naming_the_line(tmp_path):
    root = folder(tmp_path, ["img0.png\tone\tc0", "img1.png\ttwo words\twith a tab\tc1"])
    with pytest.raises(DataError, match=r"captions.tsv:2: 4 tab-separated fields.*cannot hold a tab"):
        read_caption_file(root / "captions.tsv")


@pytest.mark.parametrize("brk", ["\u2028", "\u0085", "\u2029", "\x0b", "\x0c"])
def test_only_newline_ends_a_row(tmp_path, brk):
    root = folder(tmp_path, ["img0.png\tone", f"img1.png\ttwo{brk}lines", "img2.png\tthree", "img3.png\tfour"])
    rows = read_caption_file(root / "captions.tsv")
    assert [ln for ln, _ in rows] == [1, 2, 3, 4]
    assert rows[1][1][1] == f"two{brk}lines"


def test_crlf_rows_still_read(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "captions.tsv").write_bytes(b"a.png\tone\tc0\r\nb.png\ttwo\tc1\r\n")
    rows = read_caption_file(root / "captions.tsv")
    assert rows[1][1] == ("b.png", "two", ["c1"])


def test_emoji_only_captions_say_symbols_are_dropped():
    from cmhash.text import create_text_encoder
    from cmhash.utils import CmhashError

    with pytest.raises(CmhashError, match="emoji, symbols and punctuation are not tokens"):
        create_text_encoder("words").fit(["🐶🐶", "🌲🌲🌲", "🏠"])


def split_file(tmp_path, d) -> str:
    p = tmp_path / "split.json"
    p.write_text(json.dumps(d))
    return str(p)


@pytest.mark.parametrize("query, words", [
    ([2**63], "not row numbers"),
    ([2**70], "not row numbers"),
    ([0.9, 1.7], "not row numbers (whole numbers >= 0), e.g. 0.9"),
    ([True, False], "not row numbers"),
    ([-1], "not row numbers"),
])
def test_split_file_rows_must_be_row_numbers(tmp_path, query, words):
    path = split_file(tmp_path, {"query": query, "train": [2, 3], "database": [2, 3]})
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Split.load(path)


def test_split_file_leaked_queries_and_repeats_are_refused(tmp_path):
    leaked = Split.load(split_file(tmp_path, {"query": [0, 5], "train": [5, 6, 7], "database": [5, 6, 7, 8]}))
    with pytest.raises(DataError, match="1 query items are also in the train set.*leaked"):
        leaked.check(10)
    in_db = Split.load(split_file(tmp_path, {"query": [0, 1], "train": [5, 6], "database": [1, 5, 6]}))
    with pytest.raises(DataError, match="also in the database set"):
        in_db.check(10)
    twice = Split.load(split_file(tmp_path, {"query": [0], "train": [5, 5, 6], "database": [5, 6]}))
    with pytest.raises(DataError, match="train set repeats 1 items"):
        twice.check(10)
    ok = Split.load(split_file(tmp_path, {"query": [0, 1], "train": [5, 6], "database": [5, 6, 7]}))
    ok.check(10)
