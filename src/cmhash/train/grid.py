"""The one grid runner: every run of a sweep spec (``train.sweep``), datasets x points x code lengths
x seeds, through ``protocol.run_experiment``; the tables, plots and results files of ``cmhash
sweep`` and of every training benchmark.

- **Shared and resumable.** Each run folder (``checkpoint.sweep_run_dir`` / ``bits-K``) is locked
  while it trains: several processes given the same spec and ``--out`` split the runs between them
  (a run another process holds is waited for at the end and read back), and a finished run is
  read back, never trained again. ``collect`` trains nothing: the tables from what is finished.
- **One results format.** Each dataset's ``Report`` writes ``results.md`` / ``results.json`` in
  its folder; with a results file (the spec's ``results``, or ``--results``) every section goes
  into it too (``eval.report.write_results_file``), and the rows it already holds for runs whose
  folders are gone are kept, not trained again (work spread over machines).
- ``score: validation`` scores each run on the validation part of the training set only (choosing
  settings); the queries are never encoded.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable

import yaml

from ..checkpoint import METRICS, bits_dir, sweep_run_dir
from ..utils import CmhashError, write_text_atomic
from .sweep import Spec, slug

WAIT_FOR_OTHERS = 24 * 3600.0  # how long a run another process trains is waited for


def run_sweep(spec: Spec, out: str | Path, resume: bool = False, progress: bool = True,
              echo: Callable[[str], None] = print, extra: dict | None = None, overwrite: bool = False,
              collect: bool = False, results: str | Path | None = None, roots: dict | None = None,
              only: set[str] | None = None) -> list[dict]:
    """Run (or read back) every run of ``spec`` into ``out``; ``extra``: flat overrides applied last
    (CLI --set); ``roots``: a data folder per section (CLI --data); ``only``: the points trained now
    (the others' finished runs are read back, as ``collect`` does). Returns every section's rows."""
    from ..eval.report import read_results, write_results_file
    from .protocol import refuse_trained

    out = Path(out)
    unknown = sorted(set(only or ()) - {p.name for p in spec.points})
    if unknown:
        raise CmhashError(f"no point named {', '.join(map(repr, unknown))} in {spec.title!r}; its points: "
                          f"{', '.join(p.name for p in spec.points)}")
    refuse_trained(sorted(out.glob("**/bits-*")), resume or collect, overwrite, out)  # before anything is written
    if results is None and spec.results:  # a built-in benchmark's file: only inside a checkout that has its folder
        results = spec.results if Path(spec.results).parent.is_dir() else None
        if results is None:
            echo(f"  note: {Path(spec.results).parent} not found here: no results file written (give --results FILE)")
    old = read_results(results) if results and Path(results).exists() else {}
    write_text_atomic(out / "spec.yaml", yaml.safe_dump(spec.source, sort_keys=False, allow_unicode=True))
    reports, texts, short = {}, [], dict(old.get("short_queries", {}))
    for name, section in spec.datasets().items():
        root = (roots or {}).get(name, section.root)
        if root and not Path(root).exists():
            texts.append(f"## {name or section.dataset}: skipped ({root} not found)")
            echo(texts[-1])
            continue
        key = name or section.dataset
        stored = {(r["name"], r["bits"], r.get("seed")): r
                  for r in old.get("sections", {}).get(key, {}).get("rows", [])}
        reports[key] = _run_section(spec, name, section, root, out, stored, short, dict(extra or {}), overwrite,
                                    collect, progress, echo, only)
        texts.append(reports[key].markdown(level=2 if spec.sections else 1))
    if spec.sections:
        write_text_atomic(out / "results.md", f"# {spec.title}\n\n" + "\n\n".join(texts) + "\n")
    if results and reports:
        kept = {k: v for k, v in old.get("sections", {}).items() if k not in reports}  # sections not run now
        extras = {"spec": spec.title}
        if spec.label_queries:
            extras.update(short_queries=short, query_bits=spec.label_queries.get("bits"))
        echo(f"results: {write_results_file(results, {**kept, **reports}, 'cmhash sweep', **extras)}")
    return [r for rep in reports.values() for r in rep.rows]


def _run_section(spec: Spec, name: str | None, section, root, out: Path, stored: dict, short: dict, extra: dict,
                 overwrite: bool, collect: bool, progress: bool, echo, only: set[str] | None = None):
    """Every run of one dataset of the sweep into its Report (written in its folder)."""
    from ..config import build_config
    from ..data.inputs import reads_maps
    from ..eval.report import Report
    from ..eval.runner import seed_summary
    from ..overrides import nest
    from .protocol import locked_run_folder, prepare, run_into

    folder = out / name if name else out
    base = {"data": {"root": str(root)}} if root else {}
    jobs = []
    for p in spec.points:
        for b in spec.bits:
            for seed in spec.seeds_for(b):
                flat = {**spec.common, **section.settings, **p.overrides, **extra}
                if seed is not None:
                    flat["train.seed"] = seed
                cfg = build_config(p.method, section.dataset, b, nest(flat), base)
                jobs.append((p, b, seed, cfg, bits_dir(sweep_run_dir(out, slug(p.name), seed, name), b)))
    groups: dict[str, list] = {}  # one prepared input per distinct data + backbone setting (usually one)
    for job in jobs:
        groups.setdefault(_input_key(job[3]), []).append(job[3])
    prepared = {k: prepare(cs[0], with_maps=any(reads_maps(c) for c in cs)) for k, cs in groups.items()}
    if len(prepared) > 1:
        echo(f"  note: the points use {len(prepared)} different data/backbone settings (e.g. image sizes); "
             "their inputs differ")
    _, inputs = next(iter(prepared.values()))
    inputs.split.save(folder / "split.json")
    title = f"{spec.title} ({spec.method} on {section.dataset}" + (f", {name})" if name else ")")
    report = Report(title, inputs, spec.metrics)
    lq = spec.label_queries or {}

    def run_one(p, b, seed, cfg, run_dir, lock_wait: float) -> bool:
        row = stored.get((p.name, b, seed))
        read_only = collect or (only is not None and p.name not in only)
        refit = spec.refit_linear and cfg.backbone.finetune and spec.score == "queries"
        if not (run_dir / METRICS).exists() and (row is not None or read_only):
            if row is not None:
                report.rows.append(row)  # measured before (the results file)
                if refit and (f"{REFIT} {p.name}", b, seed) in stored:
                    report.rows.append(stored[f"{REFIT} {p.name}", b, seed])
            return True
        device, point_inputs = prepared[_input_key(cfg)]
        first = seed == spec.seeds_for(b)[0]
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(locked_run_folder(run_dir, wait=lock_wait))
            except CmhashError:
                return False  # another process trains it now: waited for at the end
            run_into(report, p.name, cfg, run_dir, point_inputs, device, resume=not overwrite, overwrite=overwrite,
                     progress=progress, curves=spec.curves and b == max(spec.bits) and first, echo=echo,
                     score=spec.score, param=p.param, value=p.value, **({"seed": seed} if seed is not None else {}))
            if refit:
                _add_refit(report, f"{REFIT} {p.name}", run_dir, point_inputs, b, seed, device, echo)
        if lq and b == lq.get("bits") and first and spec.score == "queries":
            from ..eval.queries import label_query_precision

            try:
                short[f"{name or section.dataset}/{p.name.lower()}"] = label_query_precision(
                    run_dir, point_inputs, lq["queries"], int(lq.get("k", 10)))
            except CmhashError as e:
                echo(f"  label queries skipped: {e}")
        return True

    held = [job for job in jobs if not run_one(*job, lock_wait=0.0)]
    for job in held:
        run_one(*job, lock_wait=WAIT_FOR_OTHERS)
    if spec.baselines and spec.score == "queries":
        report.add_baselines(spec.bits, cca=True, seeds=spec.seeds)
    summary = seed_summary(report.rows) if spec.seeds else report.rows
    report.write(folder, dataset=section.dataset, **({"seeds": spec.seeds, "summary": summary} if spec.seeds else {}))
    points = {p.name for p in spec.points}
    if any(r["name"] in points for r in summary):
        from .sweep_plot import plot_sweep

        plot_sweep([r for r in summary if r["name"] in points], spec, folder / "sweep.png")
    echo("")
    echo(report.table())
    return report


REFIT = "CCA-ITQ on the backbone of"  # the name of a refit row: REFIT + the fine-tuned point's name
REFIT_FILE = "refit-cca-itq.json"  # its metrics, kept in the run folder (computed once)


def _add_refit(report, name: str, run_dir: Path, inputs, bits: int, seed, device, echo) -> None:
    """CCA-ITQ fitted on a fine-tuned run's backbone features (``eval.refit``), as a row beside it."""
    from ..eval.refit import refit_cca_itq
    from ..utils import write_json_atomic

    f = run_dir / REFIT_FILE
    if f.exists():
        m = json.loads(f.read_text())
    else:
        m = refit_cca_itq(run_dir, inputs, bits, seed or 0, device)
        m.pop("curves", None)
        write_json_atomic(f, m)
    report.add(name, bits, m, **({"seed": seed} if seed is not None else {}))
    echo(f"  {name}, {bits} bits: I->T mAP {m['i2t']['map']:.3f} | T->I mAP {m['t2i']['map']:.3f}")


def _input_key(cfg) -> str:
    """Runs with equal data and backbone settings share one prepared input."""
    return json.dumps([cfg.data.__dict__, cfg.backbone.__dict__], sort_keys=True, default=str)
