"""One trainer for every registered method.

Per epoch: a seeded shuffle of the training items (drop_last batches, as the references do),
``method.loss`` on each batch, an SGD/Adam step from ``method.make_optimizer``. Methods that
alternate (DCMH: image net, then text net; SSAH: label net, discriminators, image net, text net)
name their ``phases``; each phase is one pass over freshly shuffled batches with its own
optimiser. Every
``eval_every`` epochs the model is scored on a validation part of the training set (mAP@50 of
I->T and T->I, validation items as queries against the rest of the training set; never the
test queries) and the best state is kept. After each epoch a checkpoint (model, optimiser,
RNG, epoch, best state, history, config) is written atomically, so ``resume=True`` continues
a run that died. The device is chosen at run time (CUDA when present).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data import PairedData, Split, load_dataset
from ..data.protocol import validation_split
from ..eval.metrics import evaluate_retrieval
from ..methods import build_method
from ..models import build_backbone
from ..utils import CmhashError, atomic_path, resolve_device, seed_everything, write_json_atomic
from .features import cached_features

CKPT_FORMAT = "cmhash-checkpoint-v1"


@dataclass
class Inputs:
    """Everything a run needs from the data, prepared once and shared across code lengths."""

    data: PairedData
    split: Split
    feat: np.ndarray  # (N, D) frozen image features F_I (similarity targets)
    image_input: np.ndarray | None  # (N, D) image-net input in fixed-feature mode; None: raw pixels
    backbone_name: str | None = None
    info: dict = field(default_factory=dict)
    maps: np.ndarray | None = None  # (N, C, h, w) float16 cached conv maps (memory-mapped), if asked for

    def image_source(self, model) -> np.ndarray | None:
        """What the image net of ``model`` reads: conv maps, pooled features, or None (raw pixels)."""
        if getattr(model, "map_channels", 0):
            if self.maps is None:
                raise CmhashError("this model reads conv maps but the inputs were prepared without them")
            return self.maps
        return self.image_input


def wants_maps(cfg: RunConfig) -> bool:
    from ..registry import METHODS

    return not cfg.backbone.finetune and METHODS.get(cfg.method).uses_feature_map(cfg.method_params)


def prepare_inputs(cfg: RunConfig, device: torch.device | str = "cpu", with_maps: bool | None = None) -> Inputs:
    """Load the data and split; for pixel datasets compute (or read from the cache) the frozen
    backbone's pooled features and, when ``with_maps`` (default: the method wants them), its conv maps."""
    dc, bc = cfg.data, cfg.backbone
    loaded = load_dataset(dc.dataset, dc.root, **dc.options)
    data = loaded.data
    if dc.split_file:
        split = Split.load(dc.split_file)
    else:
        split = loaded.split(dc.protocol, seed=dc.split_seed, n_query=dc.n_query, n_train=dc.n_train)
    split.check(len(data))
    info = {"dataset": data.name, "n_items": len(data), "split": split.sizes(), "image_kind": data.image_kind}
    if data.image_kind == "features":
        if bc.finetune:
            raise CmhashError(f"dataset {data.name!r} has image features, not pixels: nothing to fine-tune")
        feat = np.asarray(data.images, np.float32)
        return Inputs(data, split, feat, feat, None, info)
    backbone = build_backbone(bc.name, bc.weights, bc.image_size)
    t0 = time.time()
    with_maps = wants_maps(cfg) if with_maps is None else with_maps
    maps = None
    if with_maps:
        feat, maps = cached_features(backbone, bc.name, data, bc.cache_dir, bc.batch_size, device, with_maps=True,
                                     workers=bc.workers)
        info.update(map_shape=list(maps.shape[1:]))
    else:
        feat = cached_features(backbone, bc.name, data, bc.cache_dir, bc.batch_size, device, workers=bc.workers)
    info.update(backbone=bc.name, feature_dim=int(feat.shape[1]), feature_seconds=round(time.time() - t0, 1))
    return Inputs(data, split, feat, None if bc.finetune else feat, bc.name, info, maps)


class OptimizerSet:
    """One optimiser, or one per training phase, saved and restored together; ``set_lr_factor``
    scales every group's initial learning rate (``method.lr_factor``)."""

    def __init__(self, opt):
        self.by_phase = opt if isinstance(opt, dict) else {None: opt}
        self.unique = list(dict.fromkeys(self.by_phase.values()))
        for o in self.unique:
            for g in o.param_groups:
                g.setdefault("initial_lr", g["lr"])

    def __getitem__(self, phase):
        if phase not in self.by_phase:
            raise CmhashError(f"no optimiser for training phase {phase!r}")
        return self.by_phase[phase]

    def set_lr_factor(self, factor: float) -> None:
        for o in self.unique:
            for g in o.param_groups:
                g["lr"] = g["initial_lr"] * factor

    def state_dict(self) -> list:
        return [o.state_dict() for o in self.unique]

    def load_state_dict(self, states) -> None:
        states = [states] if isinstance(states, dict) else states
        if len(states) != len(self.unique):
            raise CmhashError("checkpoint holds a different number of optimisers than this method uses")
        for o, st in zip(self.unique, states):
            o.load_state_dict(st)


def _batch(inputs: Inputs, idx: np.ndarray, device, feat_t, text_t, img_t, img_src, lab_t, train_idx) -> dict:
    it = torch.from_numpy(idx)
    if img_t is not None:
        image = img_t[it].float()
    elif img_src is not None:  # a large memory-mapped cache: read this batch's rows only
        image = torch.from_numpy(np.asarray(img_src[np.sort(idx)][np.argsort(np.argsort(idx))], np.float32)).to(device)
    else:
        image = torch.from_numpy(inputs.data.image_rows(idx)).to(device)
    row = torch.from_numpy(np.searchsorted(train_idx, idx)).to(device)  # positions in the (sorted) training set
    return {"image": image, "feat": feat_t[it], "text": text_t[it], "label": lab_t[it], "index": it, "row": row}


def _image_tensor(src: np.ndarray | None, device, limit: int = 2 << 30) -> torch.Tensor | None:
    """The whole image input on ``device`` when it fits (under ``limit`` bytes), else None."""
    if src is None or src.nbytes > limit:
        return None
    return torch.from_numpy(np.array(src)).to(device)


def sign_codes(code: torch.Tensor) -> np.ndarray:
    """Real outputs (n, K) -> int8 {-1,+1} codes (the sign convention: >= 0 is +1)."""
    return torch.where(code >= 0, 1, -1).to(torch.int8).cpu().numpy()


@torch.no_grad()
def encode(model, inputs: Inputs, idx: np.ndarray, modality: str, device, batch_size: int = 1024) -> np.ndarray:
    """{-1,+1} int8 codes (n, K) of items ``idx`` in one modality."""
    model.eval()
    out = []
    src = inputs.image_source(model)
    bs = batch_size if (src is not None and src.ndim == 2) or modality == "text" else 64
    for s in range(0, len(idx), bs):
        part = idx[s:s + bs]
        if modality == "text":
            x = torch.from_numpy(inputs.data.texts[part]).to(device)
            code = model.encode_text(x)
        elif src is not None:
            code = model.encode_image(torch.from_numpy(np.asarray(src[part], np.float32)).to(device))
        else:
            code = model.encode_image(torch.from_numpy(inputs.data.image_rows(part)).to(device))
        out.append(sign_codes(code))
    return np.concatenate(out) if out else np.zeros((0, model.bits), np.int8)


def encode_split(model, inputs: Inputs, query: np.ndarray, database: np.ndarray, device) -> dict:
    return {"q_img": encode(model, inputs, query, "image", device), "q_txt": encode(model, inputs, query, "text", device),
            "db_img": encode(model, inputs, database, "image", device),
            "db_txt": encode(model, inputs, database, "text", device)}


def validate(model, inputs: Inputs, val_idx, db_idx, device) -> dict:
    codes = encode_split(model, inputs, val_idx, db_idx, device)
    lab = inputs.data.labels
    i2t = evaluate_retrieval(codes["q_img"], codes["db_txt"], lab[val_idx], lab[db_idx], topk=50)
    t2i = evaluate_retrieval(codes["q_txt"], codes["db_img"], lab[val_idx], lab[db_idx], topk=50)
    return {f"{k}_i2t": v for k, v in i2t.items()} | {f"{k}_t2i": v for k, v in t2i.items()} | \
        {k: (i2t[k] + t2i[k]) / 2 for k in i2t}


@dataclass
class TrainResult:
    model: torch.nn.Module
    best_epoch: int
    best_val: dict
    history: list
    seconds: float
    out_dir: Path | None


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CmhashError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CmhashError(f"{path}: unreadable or truncated checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CmhashError(f"{path}: not a cmhash checkpoint")
    return ckpt


def model_from_checkpoint(ckpt: dict, inputs: Inputs | None = None, state: str = "best_model"):
    cfg = RunConfig.from_dict(ckpt["config"])
    backbone = None
    if cfg.backbone.finetune:
        backbone = build_backbone(cfg.backbone.name, cfg.backbone.weights, cfg.backbone.image_size)
    model = build_method(cfg.method, cfg.bits, ckpt["img_dim"], ckpt["txt_dim"], cfg.method_params, backbone,
                         map_channels=ckpt.get("map_channels", 0), n_labels=ckpt.get("n_labels", 0))
    model.load_state_dict(ckpt[state] if ckpt.get(state) is not None else ckpt["model"])
    return model, cfg


def _rng_state(model) -> dict:
    import random

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # plain types and tensors only: checkpoints load with weights_only=True
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "generators": {k: g.get_state() for k, g in model.generators().items()}}


def _set_rng_state(model, st: dict) -> None:
    import random

    torch.set_rng_state(st["torch"])
    if "numpy" in st:
        n = st["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "python" in st:
        random.setstate(st["python"])
    gens = model.generators()
    for k, v in (st.get("generators") or {}).items():
        if k in gens:
            gens[k].set_state(v)


_VOLATILE = ("device", "num_threads", "checkpoint_every", "checkpoint_minutes")


def _same_config(a: dict, b: dict) -> bool:
    """Configs equal up to settings that do not change the result (device, threads, checkpointing)."""
    def strip(d):
        d = dict(d)
        d["train"] = {k: v for k, v in d.get("train", {}).items() if k not in _VOLATILE}
        d["backbone"] = {k: v for k, v in d.get("backbone", {}).items() if k != "workers"}
        return d
    return strip(a) == strip(b)


def train_run(cfg: RunConfig, out_dir: str | Path | None = None, inputs: Inputs | None = None,
              resume: bool = False, progress: bool = True) -> TrainResult:
    """Train one method at one code length.

    Checkpoints (``out_dir/last.pt``, written atomically, by rank 0) hold the model, optimisers,
    per-item memories, every RNG state (python, numpy, torch, the method's generators), the epoch,
    the position inside it (phase, step, running loss) and the epoch's data order. They are
    written at every epoch end, every ``train.checkpoint_every`` steps and every
    ``train.checkpoint_minutes``; ``resume`` continues from the last one and reaches the same final
    weights as an uninterrupted run (bit-identical on CPU with the same thread count).
    Under torchrun the global batch is split across ranks (``train.distributed``).
    """
    from torch.nn.parallel import DistributedDataParallel

    from . import distributed as dist_

    tc = cfg.train
    device = dist_.init_from_env(resolve_device(tc.device))
    rank, world_size = dist_.world()
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)
    if inputs is None:
        with dist_.main_first():  # rank 0 fills the feature cache, the others read it
            inputs = prepare_inputs(cfg, device)
    data = inputs.data
    train_idx, val_idx = validation_split(inputs.split.train, tc.val_fraction, tc.seed)
    if tc.epochs < 1 or tc.batch_size < 1:
        raise CmhashError(f"epochs and batch size must be at least 1, got {tc.epochs} and {tc.batch_size}")
    if len(train_idx) < tc.batch_size:
        raise CmhashError(f"training set ({len(train_idx)} items) is smaller than one batch ({tc.batch_size})")
    if tc.batch_size % world_size:
        raise CmhashError(f"batch size {tc.batch_size} does not split over {world_size} processes; "
                          "the global batch must be a multiple of the number of processes")
    img_dim = inputs.feat.shape[1] if inputs.image_input is not None else 0
    backbone = None
    if inputs.image_input is None:
        backbone = build_backbone(cfg.backbone.name, cfg.backbone.weights, cfg.backbone.image_size)
    map_channels = 0
    if inputs.image_input is not None and inputs.maps is not None and wants_maps(cfg):
        map_channels = int(inputs.maps.shape[1])
    model = build_method(cfg.method, cfg.bits, img_dim, data.texts.shape[1], cfg.method_params, backbone,
                         map_channels=map_channels, n_labels=data.labels.shape[1]).to(device)
    if world_size > 1 and not model.distributed:
        raise CmhashError(f"{cfg.method} does not support data-parallel training yet (its loss reads per-item "
                          "memories or batch statistics that are not gathered across processes); run it in one "
                          "process. Supported: djsrh, dsah, dsprh")
    if world_size > 1 and device.type == "cuda":  # BatchNorm over the global batch (SyncBatchNorm is GPU-only)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    lab_t = torch.from_numpy(np.asarray(data.labels, np.float32)).to(device)
    model.attach_training_set(lab_t[torch.from_numpy(train_idx).to(device)])
    opt = OptimizerSet(model.make_optimizer())
    out = Path(out_dir) if out_dir else None
    start, history, best_val, best_epoch, best_state = 0, [], None, -1, None
    position, saved_training_state = None, None
    if resume and out and (out / "last.pt").exists():
        ck = load_checkpoint(out / "last.pt")
        if ck.get("method") != cfg.method or ck.get("bits") != cfg.bits:
            raise CmhashError(f"{out / 'last.pt'}: a {ck.get('method')} {ck.get('bits')}-bit checkpoint, not "
                              f"{cfg.method} {cfg.bits}-bit; use a new --out or drop --resume")
        if not _same_config(ck["config"], cfg.to_dict()):
            raise CmhashError(f"{out / 'last.pt'}: written by another configuration; use a new --out or drop --resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        position = ck.get("position")
        saved_training_state = ck.get("training_state") or {}
        if position is None:  # mid-epoch memories are restored after that epoch's set_epoch, below
            model.load_training_state(saved_training_state)
        _set_rng_state(model, ck["rng"] if "rng" in ck else {"torch": ck["torch_rng"]})
        history, best_val, best_epoch = ck["history"], ck["best_val"], ck["best_epoch"]
        best_state = ck.get("best_model")
        start = position["epoch"] if position else ck["epoch"] + 1
    feat_t = torch.from_numpy(inputs.feat).to(device)
    text_t = torch.from_numpy(np.asarray(data.texts, np.float32)).to(device)
    img_src = inputs.image_source(model)
    img_t = feat_t if img_src is inputs.image_input and img_src is not None else _image_tensor(img_src, device)
    runner = model
    phases = tuple(model.phases)
    if world_size > 1:
        runner = DistributedDataParallel(model, find_unused_parameters=len(phases) > 1 or model.supervised,
                                         broadcast_buffers=False)
    n_batches = len(train_idx) // tc.batch_size
    local = tc.batch_size // world_size
    t0 = last_save = time.time()
    steps_since = 0
    bar = tqdm(total=(tc.epochs - start) * n_batches * len(phases), disable=not progress or rank != 0, unit="step",
               desc=f"{cfg.method} {cfg.bits} bits", leave=False, dynamic_ncols=True,
               mininterval=0.2 if sys.stderr.isatty() else 30.0)

    def save(epoch, pos=None):
        if out and rank == 0:
            _save(out / "last.pt", cfg, model, opt, epoch, history, best_val, best_epoch, best_state, pos,
                  vocab=data.vocab if data.vocab and len(data.vocab) == data.texts.shape[1] else None,
                  image_kind=data.image_kind)

    for epoch in range(start, tc.epochs):
        model.train()
        model.set_epoch(epoch)
        opt.set_lr_factor(model.lr_factor(epoch, tc.epochs))
        phase_loss, first_pi, first_b, first_running, order = {}, 0, 0, 0.0, None
        if position is not None:  # resuming inside this (the first) epoch
            model.load_training_state(saved_training_state)  # after set_epoch: the mid-epoch memories
            phase_loss, first_pi = dict(position["phase_loss"]), position["phase"]
            first_b, first_running, order = position["step"], position["running"], position["order"].numpy()
            bar.update(first_pi * n_batches + first_b)
            position = None
        for pi, phase in enumerate(phases):
            if pi < first_pi:
                continue
            if order is not None and pi == first_pi:
                perm = order  # the interrupted phase's data order, as saved
            else:
                g = torch.Generator().manual_seed(tc.seed * 1_000_003 + epoch + 7919 * pi)
                perm = train_idx[torch.randperm(len(train_idx), generator=g).numpy()]  # the data order
            step_opt = opt[phase]
            running = first_running if pi == first_pi else 0.0
            for b in range(first_b if pi == first_pi else 0, n_batches):
                glob = perm[b * tc.batch_size:(b + 1) * tc.batch_size]  # the global batch
                batch = _batch(inputs, glob[rank * local:(rank + 1) * local], device, feat_t, text_t, img_t, img_src,
                               lab_t, train_idx)
                loss, parts = runner(batch, phase)
                if not torch.isfinite(loss):
                    raise CmhashError(f"loss became {loss.item()} at epoch {epoch + 1}, step {b + 1}"
                                      f"{f' ({phase} phase)' if phase else ''}; lower the learning rate (the last "
                                      "checkpoint is intact)")
                step_opt.zero_grad(set_to_none=True)
                loss.backward()
                step_opt.step()
                running += loss.item()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / (b + 1):.4f}", refresh=False)
                steps_since += 1
                if (tc.checkpoint_every and steps_since >= tc.checkpoint_every) or \
                        time.time() - last_save > 60 * tc.checkpoint_minutes:
                    save(epoch, {"epoch": epoch, "phase": pi, "step": b + 1, "running": running,
                                 "phase_loss": dict(phase_loss), "order": torch.from_numpy(perm)})
                    steps_since, last_save = 0, time.time()
            key = phase or "loss"
            phase_loss[key] = phase_loss.get(key, 0.0) + running / n_batches
        record = {"epoch": epoch + 1, "loss": sum(phase_loss.values())}
        if len(phases) > 1:
            record["phase_loss"] = phase_loss
        last = epoch == tc.epochs - 1
        if len(val_idx) and ((epoch + 1) % tc.eval_every == 0 or last):
            val = validate(model, inputs, val_idx, train_idx, device)
            record["val"] = val
            score = val.get(tc.select_metric)
            if score is None:
                raise CmhashError(f"unknown select_metric {tc.select_metric!r}; use 'map@50' or 'map'")
            if best_val is None or score > best_val[tc.select_metric]:
                best_val, best_epoch = val, epoch + 1
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        history.append(record)
        save(epoch)
        steps_since, last_save = 0, time.time()
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = tc.epochs
    return TrainResult(model, best_epoch, best_val or {}, history, time.time() - t0, out)


def _save(path: Path, cfg, model, opt, epoch, history, best_val, best_epoch, best_state, position=None,
          vocab: list[str] | None = None, image_kind: str | None = None) -> None:
    ckpt = {"vocab": vocab, "image_kind": image_kind, "format": CKPT_FORMAT, "config": cfg.to_dict(), "method": cfg.method, "bits": cfg.bits,
            "img_dim": model.img_dim, "map_channels": model.map_channels, "txt_dim": model.txt_dim,
            "n_labels": model.n_labels, "epoch": epoch if position is None else epoch - 1, "position": position,
            "model": model.state_dict(), "training_state": model.training_state(),
            "optimizer": opt.state_dict(), "rng": _rng_state(model),
            "history": history, "best_val": best_val, "best_epoch": best_epoch, "best_model": best_state}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def run_experiment(cfg: RunConfig, out_dir: str | Path, inputs: Inputs | None = None, resume: bool = False,
                   progress: bool = True, curves: bool = True) -> dict:
    """Train (or resume) one method at one code length, evaluate on the protocol, write
    ``metrics.json`` under ``out_dir``; returns the metrics dict."""
    from . import distributed as dist_

    out = Path(out_dir)
    done = out / "metrics.json"
    if resume and done.exists():
        import json

        return json.loads(done.read_text())
    device = dist_.init_from_env(resolve_device(cfg.train.device))
    if inputs is None:
        with dist_.main_first():
            inputs = prepare_inputs(cfg, device)
    res = train_run(cfg, out, inputs, resume=resume, progress=progress)
    codes = encode_split(res.model, inputs, inputs.split.query, inputs.split.database, device)
    from ..eval.runner import evaluate_codes

    lab = inputs.data.labels
    metrics = evaluate_codes(codes, lab[inputs.split.query], lab[inputs.split.database], curves=curves)
    metrics.update(method=cfg.method, bits=cfg.bits, best_epoch=res.best_epoch, best_val=res.best_val,
                   train_seconds=round(res.seconds, 1), epochs=cfg.train.epochs)
    if dist_.is_main():
        write_json_atomic(done, metrics)
    return metrics


def random_codes_metrics(inputs: Inputs, bits: int, seed: int = 0, curves: bool = True) -> dict:
    """The floor: random {-1,+1} codes for every item, scored on the same protocol."""
    from ..eval.runner import evaluate_codes

    rng = np.random.default_rng(seed)
    q, db = inputs.split.query, inputs.split.database
    codes = {k: rng.choice(np.array([-1, 1], np.int8), size=(len(ix), bits))
             for k, ix in (("q_img", q), ("q_txt", q), ("db_img", db), ("db_txt", db))}
    lab = inputs.data.labels
    return evaluate_codes(codes, lab[q], lab[db], curves=curves)


def label_prior(inputs: Inputs) -> float:
    """Fraction of (query, database) pairs that share a label: what a random ranking's precision is."""
    lab = inputs.data.labels.astype(np.float32)
    q, db = lab[inputs.split.query], lab[inputs.split.database]
    return float(((q @ db.T) > 0).mean())
