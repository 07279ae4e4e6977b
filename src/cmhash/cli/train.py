"""``cmhash train | evaluate | sweep``: train methods, score them, sweep their settings."""
from __future__ import annotations

from pathlib import Path

import click

from ..eval.metrics import GRADES
from .app import code_lengths, main, registry_choice


@main.command()
@click.option("--method", "-m", type=registry_choice("methods"), default="djsrh", show_default=True,
              help="the method to train (`cmhash list` describes each)")
@click.option("--dataset", "-d", type=registry_choice("datasets"), default="synthetic", show_default=True,
              help="the dataset (folder: your images + captions.tsv under --data-root)")
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
    from ..overrides import nest

    given = {"train.epochs": epochs, "train.device": device, "train.seed": seed, "backbone.name": backbone,
             "backbone.weights": backbone_weights, "backbone.finetune": finetune or None, "data.protocol": protocol,
             "data.split_file": split_file, "data.text_encoder": text_encoder}
    base = nest({k: v for k, v in given.items() if v is not None})
    from ..train.protocol import train_lengths

    out = out or Path("runs") / f"{method}-{dataset}"
    train_lengths(method, dataset, code_lengths(bits), out, data_root, sets, base, resume, overwrite, echo=click.echo)
    click.echo(f"\nresults: {out / 'results.md'}, {out / 'results.json'}; checkpoints: {out}/bits-*/last.pt")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--tie-averaged", is_flag=True, help="also report the tie-averaged mAP")
@click.option("--grade", type=click.Choice(GRADES), default="shared",
              show_default=True, help="graded relevance for NDCG@50 (label overlap)")
def evaluate(run_dir: Path, tie_averaged: bool, grade: str):
    """Re-encode and re-evaluate a trained run folder (its best checkpoints, its saved split)."""
    from ..train.protocol import evaluate_run

    report = evaluate_run(run_dir, tie_averaged=tie_averaged, grade=grade)
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
@click.option("--seeds", default=None, help="repeat every run over these training seeds, e.g. 0,1,2 (mean ± std)")
@click.option("--data", "roots", multiple=True, metavar="SECTION=PATH",
              help="the data folder of one dataset of a several-dataset spec, e.g. --data words=../ucm")
@click.option("--resume", is_flag=True, help="continue an interrupted sweep in --out (other processes may share it)")
@click.option("--overwrite", is_flag=True, help="replace the trained runs in --out")
@click.option("--collect", is_flag=True, help="train nothing: the tables from the runs finished so far")
@click.option("--points", default=None, help="train only these points (comma-separated names); the others' finished "
              "runs are read back")
@click.option("--results", type=click.Path(path_type=Path), default=None,
              help="also write every section into this results file (default: the spec's results)")
def sweep(spec, list_specs, out, dataset, data_root, bits, epochs, sets, seeds, roots, resume, overwrite, collect,
          points, results):
    """Run a sweep SPEC (a YAML file or a built-in name): every dataset x point x code length x seed,
    then a table (results.md) and a plot (sweep.png). Ablations, fusion weights, sensitivity,
    comparisons, and every training benchmark (benchmarks/README.md). Several processes given the
    same SPEC and --out --resume share the runs."""
    from ..config import parse_overrides
    from ..overrides import flatten, parse_pairs
    from ..train.grid import run_sweep
    from ..train.sweep import builtin_specs, load_spec, parse_seeds, slug

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
    if seeds:
        sp.seeds = parse_seeds(seeds)
    extra = flatten(parse_overrides(list(sets)))
    if epochs is not None:
        extra["train.epochs"] = epochs
    out = out or Path("runs") / (f"sweep-{slug(Path(spec).stem)}" + ("" if sp.sections else f"-{sp.dataset}"))
    where = ", ".join(sp.sections) if sp.sections else sp.dataset
    click.secho(f"{sp.title}: {len(sp.points)} points x {len(sp.bits)} code lengths"
                + (f" x {len(sp.seeds)} seeds" if sp.seeds else "") + f" on {where}", bold=True)
    run_sweep(sp, out, resume=resume, echo=click.echo, extra=extra, overwrite=overwrite, collect=collect,
              results=results, roots={k: str(v) for k, v in parse_pairs(list(roots)).items()},
              only={p.strip() for p in points.split(",") if p.strip()} if points else None)
    where = f"{out}/<dataset>/" if sp.sections else f"{out}/"
    click.echo(f"\nresults: {out / 'results.md'}, {where}results.json, plot {where}sweep.png")
