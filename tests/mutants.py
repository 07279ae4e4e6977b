"""Each constant the peers' tests must guard, changed one at a time in a copy of the package: the
loss and preset tests must fail for every one (a test that passes a mutant guards nothing).

    python tests/mutants.py            # prints one line per mutant; exits 1 if any survives

Not part of the suite (it runs the loss tests once per mutant, about 10 s each)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/methods/test_authors_settings.py", "tests/losses"]
MUTANTS = [  # (file, text, replacement, what it stands for)
    ("src/cmhash/losses/jdsh.py", 'torch.exp(-(s - stats["s_min"]))', 'torch.exp(s - stats["s_min"])',
     "JDSH left-tail exponent, sign flipped"),
    ("src/cmhash/losses/jdsh.py", "l1: float = 0.1,\n         l2", "l1: float = 0.2,\n         l2", "JDSH l1 0.1 -> 0.2"),
    ("src/cmhash/losses/jdsh.py", "def dsdw(s: torch.Tensor, stats: dict, a: float = 2.0",
     "def dsdw(s: torch.Tensor, stats: dict, a: float = 3.0", "JDSH a 2 -> 3"),
    ("src/cmhash/losses/jdsh.py", "def dsdw(s: torch.Tensor, stats: dict, a: float = 2.0",
     "def dsdw(s: torch.Tensor, stats: dict, a: float = 1.0", "JDSH a 2 -> 1"),
    ("src/cmhash/presets/jdsh.yaml", "  a: 2.0", "  a: 2.5", "JDSH preset a 2 -> 2.5"),
    ("src/cmhash/presets/jdsh.yaml", "  l1: 0.1", "  l1: 0.3", "JDSH preset l1 0.1 -> 0.3"),
    ("src/cmhash/presets/jdsh.yaml", "mu: 1.4", "mu: -1.4", "JDSH preset mu 1.4 -> -1.4"),
    ("src/cmhash/methods/ucch.py", "d * self.memory.v[rows] + (1 - d) * mean",
     "(1 - d) * self.memory.v[rows] + d * mean", "UCCH memory update, d and 1 - d swapped"),
    ("src/cmhash/presets/ucch.yaml", "margin: 0.2", "margin: 0.9", "UCCH preset margin 0.2 -> 0.9"),
]


def main() -> int:
    survived = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        shutil.copytree(ROOT / "src", copy / "src")
        shutil.copytree(ROOT / "tests", copy / "tests")
        env = {**os.environ, "PYTHONPATH": str(copy / "src")}
        for file, old, new, what in MUTANTS:
            path = copy / file
            text = path.read_text()
            if text.count(old) != 1:
                print(f"STALE  {what}: {old!r} is not in {file} once")
                survived += 1
                continue
            path.write_text(text.replace(old, new))
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                                 cwd=copy, env=env, capture_output=True, text=True)
            path.write_text(text)
            caught = run.returncode != 0
            survived += not caught
            print(f"{'caught' if caught else 'SURVIVED'}  {what}: {run.stdout.strip().splitlines()[-1]}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
