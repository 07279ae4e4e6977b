"""Exact resume: a training process killed with SIGKILL mid-epoch, resumed, ends bit-identical to
an uninterrupted run; half-written checkpoints are never read."""
import os
import signal
import subprocess
import sys
import time

import pytest
from pathlib import Path
import torch

from cmhash.checkpoint import load_checkpoint


SIZE = {"dsprh": ["--set", "method.txt_hidden=256", "--set", "method.feat_dim=256"],
        "dcmh": ["--set", "method.img_hidden=256", "--set", "method.txt_hidden=256"]}


def _cmd(root, out, method, extra=()):
    return [sys.executable, "-m", "cmhash", "train", "-m", method, "-d", "wiki", "--data-root", str(root), "-b", "16",
            "--epochs", "12", "-o", str(out), "--set", "train.num_threads=1", "--set", "train.checkpoint_every=7",
            "--set", "train.eval_every=3", *SIZE[method], *extra]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dsprh", "dcmh"])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(wiki_medium, tmp_path, method):
    """DSPRH draws triplet negatives from its own generator; DCMH keeps per-item memories and
    epoch codes B: both must come back exactly."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    ref = subprocess.run(_cmd(wiki_medium, tmp_path / "ref", method), env=env, capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    ck = out / "bits-16" / "last.pt"
    proc = subprocess.Popen(_cmd(wiki_medium, out, method), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ck.exists():
            try:
                pos = load_checkpoint(ck)["state"].get("position")
            except Exception:  # noqa: BLE001 - being replaced right now; try again
                pos = None
            if pos is not None and pos["epoch"] >= 2:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = pos
                break
        time.sleep(0.05)
    assert killed_at is not None, "the run ended before a mid-epoch checkpoint of epoch 3 was seen"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "bits-16" / "metrics.json").exists()
    res = subprocess.run(_cmd(wiki_medium, out, method, ["--resume"]), env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    a = load_checkpoint(tmp_path / "ref" / "bits-16" / "last.pt")
    b = load_checkpoint(ck)
    def timeless(history):  # the epochs' wall-clock seconds differ between runs; nothing else may
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert timeless(a["state"]["history"]) == timeless(b["state"]["history"])
    for key in ("model", "best_model"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), (key, name)
    ma = (tmp_path / "ref" / "bits-16" / "metrics.json").read_text()
    mb = (out / "bits-16" / "metrics.json").read_text()
    drop = lambda s: {k: v for k, v in __import__("json").loads(s).items() if k != "train_seconds"}  # noqa: E731
    assert drop(ma) == drop(mb)


def test_a_half_written_checkpoint_is_never_read(wiki_medium, tmp_path, monkeypatch):
    """The checkpoint's write dies half way: last.pt is still the previous complete checkpoint, no
    temp file is left, and leftovers of a killed writer are ignored."""
    from cmhash.config import build_config
    from cmhash.train import protocol

    cfg = build_config("djsrh", "wiki", 16, {"train": {"epochs": 3, "eval_every": 1},
                                             "method": {"img_hidden": 32, "txt_hidden": 32}},
                       {"data": {"root": str(wiki_medium)}})
    real_write, calls, kept = Path.write_bytes, [], {}

    def dying_write(self, data):
        if not self.name.startswith(".last.pt."):  # not the checkpoint's temporary file
            return real_write(self, data)
        calls.append(self)
        if len(calls) < 3:
            return real_write(self, data)
        kept["before"] = (tmp_path / "r" / "last.pt").read_bytes()  # epoch 2's checkpoint
        real_write(self, bytes(data)[:100])  # half written
        raise KeyboardInterrupt  # the process is stopped while writing epoch 3's checkpoint

    monkeypatch.setattr(Path, "write_bytes", dying_write)
    with pytest.raises(KeyboardInterrupt):
        protocol.train_run(cfg, tmp_path / "r", progress=False)
    monkeypatch.undo()
    assert (tmp_path / "r" / "last.pt").read_bytes() == kept["before"]
    assert load_checkpoint(tmp_path / "r" / "last.pt")["state"]["epoch"] == 2  # epochs 1 and 2 complete
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["last.pt"]
    (tmp_path / "r" / ".last.pt.abc123.tmp").write_bytes(b"\x80\x02half")  # a killed writer's leftover
    res = protocol.train_run(cfg, tmp_path / "r", resume=True, progress=False)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
