"""``cmhash train | evaluate | sweep``: train methods, score them, sweep their settings."""
from __future__ import annotations

import time
from pathlib import Path

import click

from ..eval.metrics import GRADES
from ..utils import CmhashError
from .app import code_lengths, main, registry_choice


def train_many(method: str, dataset: str, bits: list[int], root, out: Path, sets: list[str], base: dict,
               resume: bool, progress: bool = True, overwrite: bool = False):
    """Train ``method`` at each code length on one prepared input; write the report. Returns
    (report, inputs)."""
    from .. import distributed as dist_
    from ..config import build_config, parse_overrides
    from ..data.inputs import prepare_inputs
    from ..eval.report import Report
    from ..eval.runner import NOT_SCORED, scorable
    from ..train.experiment import refuse_trained, run_experiment
    from ..train.sweep import summary_line
    from ..utils import resolve_device, write_json_atomic, write_text_atomic

    overrides = parse_overrides(sets)
    base = {**base, "data": {**base.get("data", {}), **({"root": str(root)} if root else {})}}
    cfgs = [build_config(method, dataset, b, overrides, base) for b in bits]
    refuse_trained([out / f"bits-{b}" for b in bits], resume, overwrite, out)  # before anything is loaded or written
    device = dist_.init_from_env(resolve_device(cfgs[0].train.device))
    main_rank = dist_.is_main()
    echo = click.echo if main_rank else (lambda *a, **k: None)
    echo(f"loading {dataset} ...")
    t0 = time.time()
    with dist_.main_first():  # rank 0 fills the feature cache, the others read it
        inputs = prepare_inputs(cfgs[0], device)
    rank, world_size = dist_.world()
    echo(f"  {inputs.info} ({time.time() - t0:.1f}s, device {device}"
         + (f", {world_size} processes, {cfgs[0].train.batch_size // world_size} items each per batch)"
            if world_size > 1 else ")"))
    out.mkdir(parents=True, exist_ok=True)
    if main_rank:
        inputs.split.save(out / "split.json")
    report = Report(f"{method} on {dataset}", inputs)
    scored = scorable(inputs.data.labels)
    for cfg in cfgs:
        t = time.time()
        m = run_experiment(cfg, out / f"bits-{cfg.bits}", inputs, resume=resume, progress=progress,
                           overwrite=overwrite)
        if scored:
            report.add(method.upper(), cfg.bits, m)
        echo(f"  {method} {cfg.bits:>3} bits: {summary_line(m)}  (best epoch {m['best_epoch']}, {time.time() - t:.0f}s)")
    if not scored:
        if main_rank:
            write_text_atomic(out / "results.md", f"# {method} on {dataset}\n\n{NOT_SCORED}\n")
            write_json_atomic(out / "results.json", {"title": f"{method} on {dataset}", "scored": False,
                                                     "note": NOT_SCORED, "split": inputs.split.sizes(), "rows": []})
        echo(f"\n{NOT_SCORED}")
        return report, inputs
    report.add_baselines(bits, seed=cfgs[0].train.seed, curves=True)
    if main_rank:
        report.write(out, plot_bits=max(bits), method=method, dataset=dataset)
        click.echo("")
        click.echo(report.table())
        click.echo(f"label prior: {report.label_prior:.3f}")
    return report, inputs


@main.command()
@click.option("--method", "-m", type=registry_choice("methods"), default="djsrh", show_default=True)
@click.option("--dataset", "-d", type=registry_choice("datasets"), default="synthetic", show_default=True)
@click.option("--data-root", type=click.Path(), default=None, help="folder holding the dataset's files")
@click.option("--bits", "-b", default="16,32,64", show_default=True, help="code lengths, comma-separated")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="run folder [runs/METHOD-DATASET]")
@click.option("--epochs", type=int, default=None, help="shortcut for --set train.epochs=N")
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:1 ...")
@click.option("--backbone", type=registry_choice("backbones"), default=None, help="image backbone for raw pixels")
@click.option("--backbone-weights", type=click.Path(), default=None, help="weight file for the backbone")
@click.option("--finetune", is_flag=True, help="train through the backbone on raw pixels (GPU advised)")
@click.option("--protocol", default=None, help="djsrh | dcmh | fixed (default: the dataset's)")
@click.option("--seed", type=int, default=None, help="training seed")
@click.option("--set", "sets", multiple=True, help="override, e.g. --set method.beta=0.6 --set train.eval_every=2")
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON split: query/train/database (or train/val/test) lists of row numbers or image names; "
                   "a run's split.json works too")
@click.option("--text-encoder", type=registry_choice("text encoders"), default=None,
              help="captions -> text vectors (folder data; default auto: words or character n-grams by script)")
@click.option("--resume", is_flag=True, help="continue an interrupted run in --out (same method and settings; "
              "--epochs may change)")
@click.option("--overwrite", is_flag=True, help="replace the trained models in --out")
def train(method, dataset, data_root, bits, out, epochs, device, backbone, backbone_weights, finetune, protocol,
          seed, sets, split_file, text_encoder, resume, overwrite):
    """Train METHOD on DATASET at each code length and evaluate it on the protocol."""
    base: dict = {"train": {}, "backbone": {}, "data": {}}
    if epochs is not None:
        base["train"]["epochs"] = epochs
    if device:
        base["train"]["device"] = device
    if seed is not None:
        base["train"]["seed"] = seed
    if backbone:
        base["backbone"]["name"] = backbone
    if backbone_weights:
        base["backbone"]["weights"] = backbone_weights
    if finetune:
        base["backbone"]["finetune"] = True
    if protocol:
        base["data"]["protocol"] = protocol
    if split_file:
        base["data"]["split_file"] = split_file
    if text_encoder:
        base["data"]["text_encoder"] = text_encoder
    out = out or Path("runs") / f"{method}-{dataset}"
    train_many(method, dataset, code_lengths(bits), data_root, out, list(sets), base, resume, overwrite=overwrite)
    click.echo(f"\nresults: {out / 'results.md'}, {out / 'results.json'}; checkpoints: {out}/bits-*/last.pt")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--tie-averaged", is_flag=True, help="also report the tie-averaged mAP")
@click.option("--grade", type=click.Choice(GRADES), default="shared",
              show_default=True, help="graded relevance for NDCG@50 (label overlap)")
def evaluate(run_dir: Path, tie_averaged: bool, grade: str):
    """Re-encode and re-evaluate a trained run folder (its best checkpoints, its saved split)."""
    from ..data.inputs import prepare_inputs
    from ..eval.report import Report
    from ..eval.runner import evaluate_codes
    from ..model import encode_split, load_model
    from ..eval.runner import NOT_SCORED, scorable

    ckpts = sorted(run_dir.glob("bits-*/last.pt")) or ([run_dir / "last.pt"] if (run_dir / "last.pt").exists() else [])
    if not ckpts:
        raise CmhashError(f"{run_dir}: no checkpoints (bits-*/last.pt) found")
    metrics = ("map", "map@50", "ndcg@50") + (("map_tie_avg",) if tie_averaged else ())
    report, inputs = None, None
    for path in ckpts:
        model = load_model(path, device="cpu")
        if inputs is None:
            cfg = model.cfg
            split_file = path.parent.parent / "split.json"
            if split_file.exists():
                cfg.data.split_file = str(split_file)
            inputs = prepare_inputs(cfg, text_encoder=model.text_encoder)  # the model's own, as trained
            if not scorable(inputs.data.labels):
                raise CmhashError(NOT_SCORED)
            report = Report(f"{cfg.method} on {cfg.data.dataset}", inputs, metrics)
        codes = encode_split(model.net, inputs, inputs.split.query, inputs.split.database, "cpu")
        lab = inputs.data.labels
        report.add(model.method.upper(), model.bits, evaluate_codes(
            codes, lab[inputs.split.query], lab[inputs.split.database], curves=False, tie_averaged=tie_averaged,
            grade=grade))
    click.echo(report.table())


@main.command()
@click.argument("spec", required=False)
@click.option("--list", "list_specs", is_flag=True, help="show the built-in sweeps")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="sweep folder [runs/sweep-SPEC]")
@click.option("--dataset", "-d", default=None, help="override the spec's dataset")
@click.option("--data-root", type=click.Path(), default=None, help="folder holding the dataset's files")
@click.option("--bits", "-b", default=None, help="override the spec's code lengths, e.g. 16,64")
@click.option("--epochs", type=int, default=None, help="shortcut for --set train.epochs=N")
@click.option("--set", "sets", multiple=True, help="override applied to every run, e.g. --set train.seed=1")
@click.option("--resume", is_flag=True, help="continue an interrupted sweep in --out")
@click.option("--overwrite", is_flag=True, help="replace the trained runs in --out")
def sweep(spec, list_specs, out, dataset, data_root, bits, epochs, sets, resume, overwrite):
    """Run a sweep SPEC (a YAML file or a built-in name): every point at every code length, then a
    table (results.md) and a plot (sweep.png). Ablations, fusion weights, sensitivity, comparisons."""
    from ..config import parse_overrides
    from ..overrides import flatten
    from ..train.sweep import builtin_specs, load_spec, run_sweep, slug

    if list_specs or not spec:
        for name, title in builtin_specs().items():
            click.echo(f"  {name:<24} {title}")
        if not spec:
            click.echo("\nrun one with `cmhash sweep NAME` or give your own YAML file (see cmhash/train/sweep.py)")
        return
    sp = load_spec(spec)
    if dataset:
        sp.dataset = dataset
    if data_root:
        sp.data_root = str(data_root)
    if bits:
        sp.bits = code_lengths(bits)
    extra = flatten(parse_overrides(list(sets)))
    if epochs is not None:
        extra["train.epochs"] = epochs
    out = out or Path("runs") / f"sweep-{slug(Path(spec).stem)}-{sp.dataset}"
    click.secho(f"{sp.title}: {len(sp.points)} points x {len(sp.bits)} code lengths on {sp.dataset}", bold=True)
    run_sweep(sp, out, resume=resume, echo=click.echo, extra=extra, overwrite=overwrite)
    click.echo(f"\nresults: {out / 'results.md'}, {out / 'results.json'}, plot {out / 'sweep.png'}")
