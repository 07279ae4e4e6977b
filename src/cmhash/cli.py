"""The ``cmhash`` command line: train, evaluate, sweep, demo, list."""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import click

from .eval.metrics import GRADES
from .utils import CmhashError


def _bits(value: str) -> list[int]:
    try:
        bits = [int(b) for b in str(value).split(",") if b.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give code lengths like 16,32,64") from None
    if not bits or any(b < 1 for b in bits):
        raise click.BadParameter(f"{value!r}: code lengths must be positive")
    return bits


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CmhashError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="cmhash")
def main():
    """cmhash: deep cross-modal hashing (train, evaluate, search binary codes for images and texts)."""
    warnings.simplefilter("default")


@main.command("list")
def list_cmd():
    """Show the registered methods, datasets and backbones."""
    from .registry import BACKBONES, DATASETS, METHODS

    for title, reg in (("methods", METHODS), ("datasets", DATASETS), ("backbones", BACKBONES)):
        click.secho(title, bold=True)
        for name, doc in reg.describe().items():
            click.echo(f"  {name:<20} {doc}")


def _train_many(method: str, dataset: str, bits: list[int], root, out: Path, sets: list[str], base: dict,
                resume: bool, progress: bool = True, with_random: bool = True, return_inputs: bool = False):
    from .config import build_config, parse_overrides
    from .eval.runner import markdown_table, plot_curves
    from .train import distributed as dist_
    from .train.trainer import label_prior, prepare_inputs, random_codes_metrics, run_experiment
    from .utils import resolve_device, write_json_atomic, write_text_atomic

    overrides = parse_overrides(sets)
    base = {**base, "data": {**base.get("data", {}), **({"root": str(root)} if root else {})}}
    cfgs = [build_config(method, dataset, b, overrides, base) for b in bits]
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
    rows, curves = [], {}
    for cfg in cfgs:
        t = time.time()
        m = run_experiment(cfg, out / f"bits-{cfg.bits}", inputs, resume=resume, progress=progress)
        rows.append({"name": method.upper(), "bits": cfg.bits, **m})
        echo(f"  {method} {cfg.bits:>3} bits: I->T mAP@50 {m['i2t']['map@50']:.3f} mAP {m['i2t']['map']:.3f} | "
                   f"T->I mAP@50 {m['t2i']['map@50']:.3f} mAP {m['t2i']['map']:.3f}  "
                   f"(best epoch {m['best_epoch']}, {time.time() - t:.0f}s)")
        curves.setdefault(method.upper(), {})[cfg.bits] = m.get("curves", {})
        if with_random:
            r = random_codes_metrics(inputs, cfg.bits, seed=cfg.train.seed)
            rows.append({"name": "random codes", "bits": cfg.bits, **r})
            curves.setdefault("random codes", {})[cfg.bits] = r["curves"]
    if not main_rank:
        return (rows, inputs) if return_inputs else rows
    prior = label_prior(inputs)
    table = markdown_table(rows)
    write_text_atomic(out / "results.md", f"# {method} on {dataset}\n\nlabel prior (random ranking precision): "
                      f"{prior:.3f}\n\n{table}\n")
    write_json_atomic(out / "results.json", {"method": method, "dataset": dataset, "label_prior": prior,
                                             "split": inputs.split.sizes(), "info": inputs.info,
                                             "rows": [{k: v for k, v in r.items() if k != "curves"} for r in rows]})
    top = max(bits)
    plot_curves({n: c[top] for n, c in curves.items() if c.get(top)}, out / f"curves-{top}bits.png",
                f"{method} on {dataset}, {top} bits")
    click.echo("")
    click.echo(table)
    click.echo(f"label prior: {prior:.3f}")
    return (rows, inputs) if return_inputs else rows


@main.command()
@click.option("--method", "-m", default="djsrh", show_default=True, help="see `cmhash list`")
@click.option("--dataset", "-d", default="synthetic", show_default=True, help="see `cmhash list`")
@click.option("--data-root", type=click.Path(), default=None, help="folder holding the dataset's files")
@click.option("--bits", "-b", default="16,32,64", show_default=True, help="code lengths, comma-separated")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="run folder [runs/METHOD-DATASET]")
@click.option("--epochs", type=int, default=None, help="shortcut for --set train.epochs=N")
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:1 ...")
@click.option("--backbone", default=None, help="image backbone for raw pixels (see `cmhash list`)")
@click.option("--backbone-weights", type=click.Path(), default=None, help="weight file for the backbone")
@click.option("--finetune", is_flag=True, help="train through the backbone on raw pixels (GPU advised)")
@click.option("--protocol", default=None, help="djsrh | dcmh | fixed (default: the dataset's)")
@click.option("--seed", type=int, default=None, help="training seed")
@click.option("--set", "sets", multiple=True, help="override, e.g. --set method.beta=0.6 --set train.eval_every=2")
@click.option("--resume", is_flag=True, help="continue an interrupted run in --out")
def train(method, dataset, data_root, bits, out, epochs, device, backbone, backbone_weights, finetune, protocol,
          seed, sets, resume):
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
    out = out or Path("runs") / f"{method}-{dataset}"
    _train_many(method, dataset, _bits(bits), data_root, out, list(sets), base, resume)
    click.echo(f"\nresults: {out / 'results.md'}, {out / 'results.json'}; checkpoints: {out}/bits-*/last.pt")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--tie-averaged", is_flag=True, help="also report the tie-averaged mAP")
@click.option("--grade", type=click.Choice(GRADES), default="shared",
              show_default=True, help="graded relevance for NDCG@50 (label overlap)")
def evaluate(run_dir: Path, tie_averaged: bool, grade: str):
    """Re-encode and re-evaluate a trained run folder (its best checkpoints, its saved split)."""
    from .eval.runner import evaluate_codes, markdown_table
    from .train.trainer import encode_split, load_checkpoint, model_from_checkpoint, prepare_inputs

    ckpts = sorted(run_dir.glob("bits-*/last.pt")) or ([run_dir / "last.pt"] if (run_dir / "last.pt").exists() else [])
    if not ckpts:
        raise CmhashError(f"{run_dir}: no checkpoints (bits-*/last.pt) found")
    rows, inputs = [], None
    for path in ckpts:
        ck = load_checkpoint(path)
        model, cfg = model_from_checkpoint(ck)
        if inputs is None:
            split_file = path.parent.parent / "split.json"
            if split_file.exists():
                cfg.data.split_file = str(split_file)
            inputs = prepare_inputs(cfg)
        codes = encode_split(model, inputs, inputs.split.query, inputs.split.database, "cpu")
        lab = inputs.data.labels
        m = evaluate_codes(codes, lab[inputs.split.query], lab[inputs.split.database], curves=False,
                           tie_averaged=tie_averaged, grade=grade)
        rows.append({"name": cfg.method.upper(), "bits": cfg.bits, **m})
    metrics = ("map", "map@50", "ndcg@50") + (("map_tie_avg",) if tie_averaged else ())
    click.echo(markdown_table(rows, metrics))


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
def sweep(spec, list_specs, out, dataset, data_root, bits, epochs, sets, resume):
    """Run a sweep SPEC (a YAML file or a built-in name): every point at every code length, then a
    table (results.md) and a plot (sweep.png). Ablations, fusion weights, sensitivity, comparisons."""
    from .config import parse_overrides
    from .sweep import builtin_specs, load_spec, run_sweep, slug

    if list_specs or not spec:
        for name, title in builtin_specs().items():
            click.echo(f"  {name:<24} {title}")
        if not spec:
            click.echo("\nrun one with `cmhash sweep NAME` or give your own YAML file (see cmhash/sweep.py)")
        return
    sp = load_spec(spec)
    if dataset:
        sp.dataset = dataset
    if data_root:
        sp.data_root = str(data_root)
    if bits:
        sp.bits = _bits(bits)
    extra = {f"{sec}.{k}": v for sec, d in parse_overrides(list(sets)).items() for k, v in d.items()}
    if epochs is not None:
        extra["train.epochs"] = epochs
    out = out or Path("runs") / f"sweep-{slug(Path(spec).stem)}-{sp.dataset}"
    click.secho(f"{sp.title}: {len(sp.points)} points x {len(sp.bits)} code lengths on {sp.dataset}", bold=True)
    run_sweep(sp, out, resume=resume, echo=click.echo, extra=extra)
    click.echo(f"\nresults: {out / 'results.md'}, {out / 'results.json'}, plot {out / 'sweep.png'}")


@main.command()
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("cmhash-demo"), show_default=True)
@click.option("--n-items", type=int, default=3000, show_default=True, help="size of the embedded dataset")
@click.option("--bits", "-b", default="16,32,64", show_default=True)
@click.option("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
@click.option("--resume", is_flag=True, help="continue an interrupted demo")
def demo(out: Path, n_items: int, bits: str, epochs: int | None, resume: bool):
    """The main job: generate the embedded dataset, train DJSRH through the pretrained backbone at
    16/32/64 bits, evaluate against random codes, save curves."""
    t0 = time.time()
    click.secho("cmhash demo: DJSRH on the embedded synthetic dataset (rendered images + noisy tags)", bold=True)
    base = {"data": {"options": {"n_items": n_items}}, "backbone": {"cache_dir": str(out / "cache")},
            "train": {"epochs": epochs} if epochs else {}}
    bit_list = _bits(bits)
    _, inputs = _train_many("djsrh", "synthetic", bit_list, None, out, [], base, resume, return_inputs=True)
    from .cli_search import demo_index

    index_dir = demo_index(out, max(bit_list), inputs.data)
    click.echo(f"\ndone in {time.time() - t0:.0f}s. Everything is in {out}/:")
    for name in ("results.md", "results.json", "split.json"):
        click.echo(f"  {out / name}")
    for p in sorted(out.glob("curves-*.png")):
        click.echo(f"  {p}  (PR and precision@top-K curves)")
    click.echo(f"  {out}/bits-*/last.pt  (checkpoints: `cmhash evaluate {out}` re-scores them)")
    click.echo(f"  {index_dir}/  (the {max(bit_list)}-bit codes of all {len(inputs.data)} items, indexed)")
    click.secho(f"\nSearch it in a browser: cmhash serve {index_dir}   then open http://127.0.0.1:8000/", bold=True)
    click.echo(f"or from here: cmhash search {index_dir} --text \"dog puppy canine pet\"")


from . import cli_search  # noqa: E402,F401  (registers encode, index, search, serve)

if __name__ == "__main__":
    main()
