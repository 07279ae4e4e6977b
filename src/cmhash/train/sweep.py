"""Sweeps: one small spec (method, dataset, code lengths, a grid) -> every run, a table, a plot.

A spec is YAML (a file, or a built-in name from ``presets/sweeps``)::

    title: DSPRH loss ablation (Table 4)
    method: dsprh
    dataset: synthetic
    bits: [16, 32, 64, 128]
    set: {train.epochs: 20}              # applied to every run
    variants:                            # named points ...
      full loss: {}
      w/o alignment: {method.alpha: 0}
    grid: {method.alpha: [0.1, 1]}       # ... or the cartesian product of values ...
    one_at_a_time:                       # ... or each key varied alone, the rest at the preset
      method.beta: [0.003, 0.03, 0.3]
    curves: true                         # PR / precision@top-K of every point at the largest length
    seeds: [0, 1, 2]                     # repeat every run over these training seeds (or --seeds 0,1,2)

A point may also set ``method`` (compare methods under one protocol). Runs land in
``OUT/<point>/bits-<K>/`` (with ``seeds``: ``OUT/<point>/seed-<S>/bits-<K>/``, every seed on the same
split; the table shows mean ± std and ``results.json`` holds every seed's row and the summary); an interrupted sweep continues with ``resume`` (finished runs are read
back from their ``metrics.json``). Writes ``results.md``, ``results.json`` and ``sweep.png``.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import yaml

from ..checkpoint import bits_dir
from ..codes import check_code_length
from ..overrides import flatten, nest
from ..utils import CmhashError, write_text_atomic

SPEC_KEYS = {"title", "method", "dataset", "bits", "set", "variants", "grid", "one_at_a_time", "curves", "data_root",
             "seeds"}


@dataclass
class Point:
    name: str
    method: str
    overrides: dict  # {"method.alpha": 0, ...}
    param: str | None = None  # for one_at_a_time / 1-d grids: the varied key and its value
    value: object = None


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
    return Spec(str(raw.get("title") or f"{method} sweep"), method, raw.get("dataset", "synthetic"), bits, common,
                points, bool(raw.get("curves", False)), raw.get("data_root"), raw, seeds)


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


def run_sweep(spec: Spec, out: str | Path, resume: bool = False, progress: bool = True,
              echo: Callable[[str], None] = print, extra: dict | None = None, overwrite: bool = False) -> list[dict]:
    """Run every point at every code length (``protocol.run_into``); ``extra``: flat overrides
    applied last (CLI --set)."""
    from ..config import build_config
    from ..data.inputs import reads_maps
    from ..eval.report import Report
    from ..eval.runner import seed_summary
    from .protocol import locked_run_folder, prepare, refuse_trained, run_into

    out = Path(out)
    base = {"data": {"root": spec.data_root}} if spec.data_root else {}
    cfgs = {}
    for p in spec.points:
        for b in spec.bits:
            for seed in spec.seeds or [None]:
                flat = {**spec.common, **p.overrides, **(extra or {})}
                if seed is not None:
                    flat["train.seed"] = seed
                cfgs[p.name, b, seed] = build_config(p.method, spec.dataset, b, nest(flat), base)
    refuse_trained(sorted([*out.glob("*/bits-*"), *out.glob("*/seed-*/bits-*")]), resume, overwrite,
                   out)  # before the spec or split is rewritten
    with locked_run_folder(out):
        write_text_atomic(out / "spec.yaml", yaml.safe_dump(spec.source, sort_keys=False, allow_unicode=True))
        # one prepared input per distinct data + backbone setting (usually one for the whole sweep)
        groups: dict[str, list] = {}
        for c in cfgs.values():
            groups.setdefault(_input_key(c), []).append(c)
        prepared = {key: prepare(cs[0], with_maps=any(reads_maps(c) for c in cs)) for key, cs in groups.items()}
        if len(prepared) > 1:
            echo(f"  note: the points use {len(prepared)} different data/backbone settings (e.g. image sizes); "
                 "their inputs differ")
        _, inputs = next(iter(prepared.values()))
        inputs.split.save(out / "split.json")
        report = Report(f"{spec.title} ({spec.method} on {spec.dataset})", inputs)
        points = {p.name: p for p in spec.points}
        for (name, b, seed), cfg in cfgs.items():
            device, point_inputs = prepared[_input_key(cfg)]
            folder = out / slug(name) if seed is None else out / slug(name) / f"seed-{seed}"
            run_into(report, name, cfg, bits_dir(folder, b), point_inputs, device, resume, overwrite, progress,
                     curves=spec.curves and b == max(spec.bits) and (seed is None or seed == spec.seeds[0]), echo=echo,
                     param=points[name].param, value=points[name].value, **({"seed": seed} if seed is not None else {}))
        summary = seed_summary(report.rows) if spec.seeds else report.rows
        report.write(out, dataset=spec.dataset, **({"seeds": spec.seeds, "summary": summary} if spec.seeds else {}))
        plot_sweep(summary, spec, out / "sweep.png")
    echo("")
    echo(report.table())
    return report.rows


def _input_key(cfg) -> str:
    """Runs with equal data and backbone settings share one prepared input."""
    return json.dumps([cfg.data.__dict__, cfg.backbone.__dict__], sort_keys=True, default=str)


def plot_sweep(rows: list[dict], spec: Spec, path: Path) -> Path:
    """Varied parameters: mAP@50 / mAP against the value (one panel per parameter and code length);
    named variants: against the code length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils import atomic_path

    metrics = [("i2t", "map@50"), ("t2i", "map@50"), ("i2t", "map"), ("t2i", "map")]
    params = list(dict.fromkeys(r["param"] for r in rows if r["param"] is not None))
    if params and all(r["param"] is not None for r in rows):
        panels = [(p, b) for p in params for b in spec.bits]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
        for ax, (p, b) in zip(axes[0], panels):
            sub = [r for r in rows if r["param"] == p and r["bits"] == b]
            xs = [r["value"] for r in sub]
            numeric = all(isinstance(x, (int, float)) for x in xs)
            pos = list(range(len(xs)))
            for task, metric in metrics:
                ax.plot(pos, [r[task][metric] for r in sub], marker="o",
                        label=f"{'I→T' if task == 'i2t' else 'T→I'} {metric}")
            ax.set_xticks(pos, [f"{x:g}" if numeric else str(x) for x in xs])
            ax.set(title=f"{p.split('.')[-1]}, {b} bits", xlabel=p, ylim=(0, 1))
            ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=7)
    elif len(spec.bits) == 1:  # named variants at one code length: the metrics across variants
        fig, axes = plt.subplots(1, 1, figsize=(max(8.0, 1.3 * len(rows)), 4.0), squeeze=False)
        ax = axes[0, 0]
        pos = list(range(len(rows)))
        for task, metric in metrics:
            ax.plot(pos, [r[task][metric] for r in rows], marker="o",
                    label=f"{'I→T' if task == 'i2t' else 'T→I'} {metric}")
        ax.set_xticks(pos, [r["name"] for r in rows], rotation=15)
        ax.set(title=f"{spec.bits[0]} bits", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
        for ax, task in zip(axes[0], ("i2t", "t2i")):
            for name in dict.fromkeys(r["name"] for r in rows):
                sub = sorted((r for r in rows if r["name"] == name), key=lambda r: r["bits"])
                ax.plot([str(r["bits"]) for r in sub], [r[task]["map@50"] for r in sub], marker="o", label=name)
            ax.set(title=f"{'Image→Text' if task == 'i2t' else 'Text→Image'} mAP@50", xlabel="bits", ylim=(0, 1))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(spec.title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
