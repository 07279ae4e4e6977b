"""The package's structure: no import cycles, layers respected, registries open to one new file,
checkpoints that load without the data folder or the backbone's weight file."""
import ast
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import cmhash

SRC = Path(cmhash.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Every import of every module of the package (module level and inside functions) as an edge
    to the most specific cmhash module it names; compiled extensions are leaves."""
    files = {_module_name(p): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = []
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    pkg_dir = files.get(base, Path()).parent
                    if sub not in files and any(pkg_dir.glob(f"{a.name}.*.so")):
                        continue  # a compiled extension module
                    targets.append(sub if sub in files else base)
            else:
                continue
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    edges[mod].add(t)
    return edges


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_find_cycles_sees_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    edges = import_graph()
    assert len(edges) > 50 and "cmhash.model" in edges["cmhash.encoder"]
    assert find_cycles(edges) == []


def test_only_the_application_layer_imports_the_trainer():
    """The model core, the encoder, the service and the indexes never import ``cmhash.train``."""
    edges = import_graph()
    users = sorted(m for m, deps in edges.items() if any(d == "cmhash.train" or d.startswith("cmhash.train.")
                                                         for d in deps))
    allowed = ("cmhash.train", "cmhash.cli")
    assert [m for m in users if m != "cmhash" and not m.startswith(allowed)] == []


NEW_METHOD = '''
"""A toy method: one linear hash layer per modality, pulled together on paired items."""
from dataclasses import dataclass

import torch

from cmhash.methods.base import HashMethod
from cmhash.registry import register_method


@dataclass
class ToyConfig:
    lr: float = 0.01


@register_method("toyhash", distributed=True)
class ToyHash(HashMethod):
    """A toy method from one file."""

    Config = ToyConfig

    def build(self, cfg):
        self.img_net = torch.nn.Linear(self.img_dim, self.bits)
        self.txt_net = torch.nn.Linear(self.txt_dim, self.bits)

    def loss(self, batch):
        hi, ht = torch.tanh(self.img_net(batch["image"])), torch.tanh(self.txt_net(batch["text"]))
        loss = ((hi - ht) ** 2).mean() - 0.1 * hi.abs().mean()
        return loss, {"loss": loss.item()}

    def make_optimizer(self):
        return torch.optim.SGD(self.parameters(), lr=self.cfg.lr)
'''


def test_a_method_is_one_new_file(tmp_path, monkeypatch, wiki_like):
    """A file dropped into the methods package registers itself on the next lookup and trains."""
    import cmhash.methods
    from cmhash.config import build_config
    from cmhash.registry import METHODS
    from cmhash.train import run_experiment

    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "toyhash.py").write_text(NEW_METHOD)
    monkeypatch.setattr(cmhash.methods, "__path__", [*cmhash.methods.__path__, str(plugin)])
    monkeypatch.setattr(METHODS, "_discovered", False)
    try:
        assert "toyhash" in METHODS.names() and METHODS.describe()["toyhash"] == "A toy method from one file."
        assert METHODS.get("toyhash").distributed and METHODS.get("toyhash").name == "toyhash"
        cfg = build_config("toyhash", "wiki", 16, {"train": {"epochs": 1, "batch_size": 16}},
                           {"data": {"root": str(wiki_like.parent)}})
        m = run_experiment(cfg, tmp_path / "run", progress=False, curves=False)
        assert m["method"] == "toyhash" and 0 <= m["i2t"]["map"] <= 1
    finally:
        METHODS._items.pop("toyhash", None)
        sys.modules.pop("cmhash.methods.toyhash", None)


def test_registry_declarations_are_checked():
    from cmhash.methods.base import HashMethod
    from cmhash.registry import Registry
    from cmhash.utils import CmhashError

    reg = Registry("method", "cmhash.methods")
    with pytest.raises(CmhashError, match="unknown declaration 'parallel'"):
        reg.register("x", parallel=True)(type("X", (HashMethod,), {}))
    sub = reg.register("y", supervised=True)(type("Y", (HashMethod,), {}))
    assert sub.name == "y" and sub.supervised and not HashMethod.supervised


def _folder(root: Path, n: int = 48) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    lines = []
    root.mkdir(parents=True)
    for i in range(n):
        name = list(colours)[i % 3]
        px = np.clip(np.array(colours[name]) + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(px).save(root / f"{i}.png")
        lines.append(f"{i}.png\ta {name} square number {i}\t{name}\n")
    (root / "captions.tsv").write_text("".join(lines))
    return root


@pytest.mark.parametrize("finetune", [False, True], ids=["frozen", "finetuned"])
def test_a_checkpoint_loads_without_its_weight_file_and_data(tmp_path, finetune):
    """Train on a folder with a backbone from a weight file; move both away; the model still loads
    and encodes an image file and a text, to the same codes as before."""
    from cmhash.config import build_config
    from cmhash.encoder import Encoder
    from cmhash.models.backbones import AlexNet
    from cmhash.train import run_experiment

    data, weights = _folder(tmp_path / "photos"), tmp_path / "weights" / "alexnet.pth"
    weights.parent.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(AlexNet().state_dict(), weights)
    cfg = build_config("djsrh", "folder", 16, {
        "train": {"epochs": 1, "batch_size": 8, "eval_every": 1},
        "method": {"img_hidden": 16, "txt_hidden": 16},
        "data": {"options": {"image_size": 40}, "text_options": {"min_count": 1}},
        "backbone": {"name": "alexnet", "weights": str(weights), "image_size": 64, "finetune": finetune,
                     "cache_dir": str(tmp_path / "cache"), "workers": 0}}, {"data": {"root": str(data)}})
    run_experiment(cfg, tmp_path / "run", progress=False, curves=False)
    query = tmp_path / "query.png"
    shutil.copy(data / "4.png", query)
    before = Encoder.load(tmp_path / "run")
    img, txt = before.image_file_codes([query]), before.text_codes(["a green square"])
    shutil.move(str(data), tmp_path / "elsewhere")
    shutil.move(str(weights.parent), tmp_path / "weights-elsewhere")
    after = cmhash.load_model(tmp_path / "run")
    assert after.spec.image.mode == ("pixels" if finetune else "pooled")
    assert after.spec.text.vocab and "green" in after.spec.text.vocab
    enc = Encoder(after)
    np.testing.assert_array_equal(enc.image_file_codes([query]), img)
    np.testing.assert_array_equal(enc.text_codes(["a green square"]), txt)
    codes = cmhash.sign_codes(after.encode_text(["a green square"]))
    np.testing.assert_array_equal(codes, txt)


def layer_table(doc: Path = SRC.parents[1] / "docs" / "architecture.md") -> list[set[str]]:
    """The layers docs/architecture.md draws (its first table, top row first), each a set of module
    names (``cmhash.data`` for ``data/``)."""
    import re

    rows, in_table = [], False
    for line in doc.read_text().splitlines():
        if line.startswith("| layer |"):
            in_table = True
            continue
        if in_table and line.startswith("|---"):
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table:
            cell = line.split("|")[2]
            rows.append({"cmhash." + m.rstrip("/").replace("/", ".") for m in re.findall(r"`([^`]+)`", cell)})
    return rows


def layer_of(module: str, layers: list[set[str]]) -> int | None:
    for i, names in enumerate(layers):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return None


def test_the_layers_docs_architecture_draws_hold():
    """Every module is in one layer of the table, and imports only from its own layer or those
    drawn above it."""
    layers = layer_table()
    assert len(layers) >= 8, layers
    edges = import_graph()
    unplaced = sorted(m for m in edges if m not in ("cmhash", "cmhash.__main__") and layer_of(m, layers) is None)
    assert unplaced == [], f"modules not in the table of docs/architecture.md: {unplaced}"
    up = [f"{a} (layer {layer_of(a, layers)}) -> {b} (layer {layer_of(b, layers)})" for a, deps in edges.items()
          for b in deps if a not in ("cmhash", "cmhash.__main__") and layer_of(b, layers) > layer_of(a, layers)]
    assert up == [], "imports from a lower layer:\n" + "\n".join(up)
    # the indexes need codes, not evaluation: packing lives in cmhash.codes
    assert [(a, b) for a, deps in edges.items() for b in deps
            if a.startswith("cmhash.index") and b.startswith("cmhash.eval")] == []


def test_import_cmhash_does_not_load_the_trainer():
    import subprocess

    code = "import sys, cmhash; cmhash.Encoder if hasattr(cmhash, 'Encoder') else None; " \
           "print('cmhash.train' in sys.modules, 'cmhash.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    assert callable(cmhash.run_experiment)  # the training API, loaded when first used


def test_the_command_line_modules_stay_short():
    """Commands parse and print; the work is the library's (no module of cli/ over 200 lines)."""
    long = {p.name: n for p in (SRC / "cli").glob("*.py") if (n := len(p.read_text().splitlines())) > 200}
    assert long == {}


def test_every_module_and_kernel_file_is_short_enough_to_hold():
    """No module of the package over 400 lines, and no kernel file (``kernels/*.c``, ``*.h``) either:
    a file a newcomer can read in one sitting."""
    long = {str(p.relative_to(SRC)): n for p in [*SRC.rglob("*.py"), *SRC.glob("kernels/*.[ch]")]
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these: {long}"


def test_no_benchmark_script_imports_another():
    """Benchmark scripts share one helper module (``benchmarks/helpers.py``), which imports none of
    them; training benchmarks are sweep specs, not scripts."""
    bench = SRC.parents[1] / "benchmarks"
    if not bench.is_dir():
        pytest.skip("no benchmarks folder beside the package (an installed copy)")
    scripts = {p.stem for p in bench.glob("*.py")}
    for p in bench.glob("*.py"):
        local = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                local |= {a.name.split(".")[0] for a in node.names} & scripts
            elif isinstance(node, ast.ImportFrom) and node.module:
                local |= {node.module.split(".")[0]} & scripts
        allowed = set() if p.stem == "helpers" else {"helpers"}
        assert local <= allowed, f"{p.name} imports {sorted(local - allowed)}"
