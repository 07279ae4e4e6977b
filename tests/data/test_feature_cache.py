"""The frozen-feature cache: one folder for every working directory (the platform's user cache,
or CMHASH_CACHE_DIR), keyed by every image file's path, size and modification time."""
import os

import numpy as np
from PIL import Image

from cmhash.config import build_config
from cmhash.data.features import data_fingerprint
from cmhash.data.folder import load_folder


def test_the_cache_folder_is_the_same_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("CMHASH_CACHE_DIR", str(tmp_path / "cache"))
    dirs = []
    for cwd in (tmp_path / "a", tmp_path / "b"):
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        dirs.append(build_config("djsrh", "synthetic", 16).backbone.cache_dir)
    assert dirs[0] == dirs[1] == str(tmp_path / "cache")
    monkeypatch.delenv("CMHASH_CACHE_DIR")
    home = build_config("djsrh", "synthetic", 16).backbone.cache_dir
    assert os.path.isabs(home) and home.rstrip("/").endswith("cmhash")
    given = build_config("djsrh", "synthetic", 16, {"backbone": {"cache_dir": "here"}}).backbone.cache_dir
    assert given == str(tmp_path / "b" / "here")


def test_a_replaced_photo_changes_the_cache_key(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    rows = []
    for i in range(200):  # more than the 64 rows a sampled key would read
        Image.fromarray(np.full((8, 8, 3), i % 250, np.uint8)).save(root / f"{i}.png")
        rows.append(f"{i}.png\tcaption {i}")
    (root / "captions.tsv").write_text("\n".join(rows) + "\n")
    key = data_fingerprint(load_folder(root).data)
    assert data_fingerprint(load_folder(root).data) == key
    target = root / "101.png"  # not one of the sampled rows
    st = target.stat()
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(target)  # same name, other content
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert data_fingerprint(load_folder(root).data) != key
