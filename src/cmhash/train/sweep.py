"""Sweep specs: the one grid of runs (datasets x points x code lengths x seeds) that ``cmhash
sweep`` and every training benchmark run (``train.grid.run_sweep``).

A spec is YAML (a file, or a built-in name from ``presets/sweeps``)::

    title: DSPRH loss ablation (Table 4)
    method: dsprh
    dataset: synthetic                   # one dataset ... (data_root: its folder)
    datasets:                            # ... or several, each a section of the results
      words: {dataset: folder, root: ../shared/data/ucm-captions,
              set: {data.split_file: "{root}/split-karpathy.json", data.text_encoder: words}}
    bits: [16, 32, 64, 128]
    seeds: [0, 1, 2]                     # repeat every run over these training seeds (or --seeds 0,1,2)
    seeds_at: {32: [0], 128: [0]}        # other seeds at some code lengths
    set: {train.epochs: 20}              # applied to every run
    variants:                            # named points ...
      full loss: {}
      w/o alignment: {method.alpha: 0}
    grid: {method.alpha: [0.1, 1]}       # ... or the cartesian product of values ...
    one_at_a_time:                       # ... or each key varied alone, the rest at the preset
      method.beta: [0.003, 0.03, 0.3]
    curves: true                         # PR / precision@top-K of every point at the largest length
    baselines: true                      # random codes, CCA-ITQ, CCA-RR and real CCA beside, per seed
    refit_linear: true                   # beside each fine-tuned run: CCA-ITQ on its backbone's features
    score: queries                       # or validation: choose settings, the queries never encoded
    metrics: [map, map@50]               # the table's columns
    label_queries: {bits: 64, k: 10, queries: {tenniscourt: tennis court}}   # typed queries
    results: benchmarks/results/ucm.json # the published results file the docs' tables render from

A point may also set ``method`` (compare methods under one protocol). A dataset's ``root`` is
relative to the current folder; ``{root}`` in its settings is replaced by it, and a dataset whose
root is absent is skipped with a note. Run folders: ``checkpoint.sweep_run_dir``.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..codes import check_code_length
from ..overrides import flatten, nest
from ..utils import CmhashError

SPEC_KEYS = {"title", "method", "dataset", "datasets", "bits", "set", "variants", "grid", "one_at_a_time", "curves",
             "data_root", "seeds", "seeds_at", "baselines", "score", "metrics", "label_queries", "results",
             "refit_linear"}
SCORES = ("queries", "validation")


@dataclass
class Point:
    name: str
    method: str
    overrides: dict  # {"method.alpha": 0, ...}
    param: str | None = None  # for one_at_a_time / 1-d grids: the varied key and its value
    value: object = None


@dataclass
class Section:
    """One dataset of a sweep: its preset name, its data folder and its settings (flat keys)."""
    dataset: str
    root: str | None = None
    settings: dict = field(default_factory=dict)


@dataclass
class Spec:
    title: str
    method: str
    dataset: str
    bits: list[int]
    common: dict
    points: list[Point]
    curves: bool = False
    data_root: str | None = None
    source: dict = field(default_factory=dict)
    seeds: list[int] | None = None  # None: one run per point at train.seed
    sections: dict[str, Section] | None = None  # several datasets; None: ``dataset`` / ``data_root``
    seeds_at: dict[int, list[int]] = field(default_factory=dict)
    baselines: bool = False
    score: str = "queries"
    metrics: tuple = ("map", "map@50", "ndcg@50")
    label_queries: dict | None = None
    results: str | None = None
    refit_linear: bool = False  # beside each fine-tuned run, CCA-ITQ fitted on its backbone (eval.refit)

    def datasets(self) -> dict[str | None, Section]:
        """section name (None for a one-dataset sweep) -> its dataset."""
        return self.sections or {None: Section(self.dataset, self.data_root)}

    def seeds_for(self, bits: int) -> list[int | None]:
        """The training seeds run at ``bits`` ([None]: one run at the preset's ``train.seed``)."""
        return self.seeds_at.get(bits) or self.seeds or [None]


def builtin_specs() -> dict[str, str]:
    """name -> title of the sweeps shipped in ``cmhash/presets/sweeps``."""
    out = {}
    for f in sorted(resources.files("cmhash.presets").joinpath("sweeps").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            out[f.name[:-5]] = (yaml.safe_load(f.read_text()) or {}).get("title", "")
    return out


def load_spec(spec: str | Path | dict) -> Spec:
    if isinstance(spec, dict):
        raw = spec
    else:
        path = Path(spec)
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise CmhashError(f"{spec}: not UTF-8 text (byte {e.start}); save the sweep file as UTF-8") from None
        else:
            f = resources.files("cmhash.presets").joinpath("sweeps", f"{spec}.yaml")
            if not f.is_file():
                raise CmhashError(f"{spec}: no such sweep file or built-in sweep; built-in: {', '.join(builtin_specs())}")
            text = f.read_text()
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise CmhashError(f"{spec}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise CmhashError("a sweep spec must be a mapping with method, dataset, bits and variants/grid")
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise CmhashError(f"unknown sweep key(s) {unknown}; known: {sorted(SPEC_KEYS)}")
    method = raw.get("method", "dsprh")
    bits = raw.get("bits", [64])
    bits = [bits] if isinstance(bits, int) else list(bits)
    if not bits:
        raise CmhashError("sweep bits: give at least one code length")
    for b in bits:
        check_code_length(b)
    common = _flat(raw.get("set") or {}, "set")
    kinds = [k for k in ("variants", "grid", "one_at_a_time") if raw.get(k)]
    if len(kinds) != 1:
        raise CmhashError("a sweep spec needs exactly one of variants, grid or one_at_a_time")
    points = []
    if kinds[0] == "variants":
        for name, ov in raw["variants"].items():
            ov = dict(ov or {})
            points.append(Point(str(name), ov.pop("method", method), _flat(ov, f"variant {name!r}")))
    elif kinds[0] == "grid":
        grid = _flat(raw["grid"], "grid")
        keys = list(grid)
        for values in itertools.product(*(_values(grid[k], k) for k in keys)):
            ov = dict(zip(keys, values))
            name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in ov.items())
            one = len(keys) == 1
            points.append(Point(name, method, ov, keys[0] if one else None, values[0] if one else None))
    else:
        for k, vals in _flat(raw["one_at_a_time"], "one_at_a_time").items():
            for v in _values(vals, k):
                points.append(Point(f"{k.split('.')[-1]}={v}", method, {k: v}, k, v))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise CmhashError(f"sweep points must have distinct names, got {names}")
    seeds = raw.get("seeds")
    if seeds is not None:
        seeds = parse_seeds(seeds)
    seeds_at = {check_code_length(int(b)): parse_seeds(v) for b, v in _mapping(raw.get("seeds_at"), "seeds_at").items()}
    if seeds_at and seeds is None:
        raise CmhashError("seeds_at: give seeds too (the seeds of the other code lengths)")
    if raw.get("score", "queries") not in SCORES:
        raise CmhashError(f"score: one of {', '.join(SCORES)}, got {raw.get('score')!r}")
    lq = raw.get("label_queries")
    if lq is not None and not (isinstance(lq, dict) and isinstance(lq.get("queries"), dict) and lq["queries"]):
        raise CmhashError("label_queries: give {bits: K, k: 10, queries: {label: typed query, ...}}")
    metrics = raw.get("metrics", ["map", "map@50", "ndcg@50"])
    if not isinstance(metrics, list) or not metrics:
        raise CmhashError("metrics: give a list of metric names, e.g. [map, map@50]")
    return Spec(str(raw.get("title") or f"{method} sweep"), method, raw.get("dataset", "synthetic"), bits, common,
                points, bool(raw.get("curves", False)), raw.get("data_root"), raw, seeds, _sections(raw),
                seeds_at, bool(raw.get("baselines", False)), raw.get("score", "queries"), tuple(metrics), lq,
                raw.get("results"), bool(raw.get("refit_linear", False)))


def _mapping(v, where: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CmhashError(f"{where}: expected a mapping")
    return v


def _sections(raw: dict) -> dict[str, Section] | None:
    """A spec's ``datasets``: section name -> Section (``{root}`` in its settings filled in)."""
    if raw.get("datasets") is None:
        return None
    if "dataset" in raw or "data_root" in raw:
        raise CmhashError("a sweep spec gives dataset (and data_root) or datasets, not both")
    out = {}
    for name, d in _mapping(raw["datasets"], "datasets").items():
        d = _mapping(d, f"datasets: {name}")
        unknown = sorted(set(d) - {"dataset", "root", "set"})
        if unknown or not d.get("dataset"):
            raise CmhashError(f"datasets: {name}: give dataset (a preset name), and optionally root and set"
                              + (f" (unknown: {unknown})" if unknown else ""))
        root = str(d["root"]) if d.get("root") is not None else None
        settings = {k: v.replace("{root}", root) if isinstance(v, str) and root else v
                    for k, v in _flat(d.get("set") or {}, f"datasets: {name}: set").items()}
        out[str(name)] = Section(str(d["dataset"]), root, settings)
    if not out:
        raise CmhashError("datasets: give at least one")
    return out


def parse_seeds(seeds) -> list[int]:
    """``"0,1,2"``, ``[0, 1, 2]`` or ``3`` -> distinct non-negative training seeds."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    elif isinstance(seeds, str):
        seeds = [s.strip() for s in seeds.split(",") if s.strip()]
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise CmhashError(f"seeds: give training seeds as integers, e.g. 0,1,2 (got {seeds!r})") from None
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise CmhashError(f"seeds: give distinct non-negative integers, e.g. 0,1,2 (got {seeds!r})")
    return out


def _flat(d, where: str) -> dict:
    """A spec's mapping (``{train.epochs: 5}`` or ``{train: {epochs: 5}}``) -> flat dotted keys."""
    if not isinstance(d, dict):
        raise CmhashError(f"{where}: expected a mapping of section.key: value")
    return flatten(nest(d, where))


def _values(v, key: str) -> list:
    if not isinstance(v, list) or not v:
        raise CmhashError(f"{key}: give a non-empty list of values")
    return v


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", name).strip("-") or "point"
