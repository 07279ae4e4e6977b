"""`cmhash encode` under torchrun: 2 processes write the same codes folder as 1 process."""
import filecmp
import json
import socket
import subprocess
import sys

import numpy as np

from cmhash.codes_folder import shard_bounds


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_are_whole_batches_covering_every_row():
    for n, bs, world in ((150, 32, 2), (7, 4, 3), (1000, 256, 4), (3, 8, 2)):
        bounds = [shard_bounds(n, bs, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(a % bs == 0 for a, _ in bounds)


def test_two_process_encode_equals_one(tiny_demo, tmp_path):
    out, _ = tiny_demo
    args = ["encode", str(out), "-b", "16", "--batch-size", "32", "--limit", "150"]
    one = subprocess.run([sys.executable, "-m", "cmhash", *args, "-o", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(_port()), "-m", "cmhash", *args, "-o", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "in 2 processes" in two.stdout
    a, b = tmp_path / "one", tmp_path / "two"
    for name in ("image.npy", "text.npy", "items.jsonl"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    ma, mb = (json.loads((f / "codes.json").read_text()) for f in (a, b))
    assert ma.pop("root") == str(a) and mb.pop("root") == str(b)  # the images live in each output folder
    assert ma == mb
    assert len(np.load(b / "image.npy")) == 150
    pngs = sorted(p.name for p in (a / "images").iterdir())
    assert pngs == sorted(p.name for p in (b / "images").iterdir()) and len(pngs) == 150
    assert all(filecmp.cmp(a / "images" / p, b / "images" / p, shallow=False) for p in pngs)
    assert not [p for p in b.iterdir() if p.name.startswith(".")]  # no shard or work folder left
