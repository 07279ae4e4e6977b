"""One trainer for every registered method.

Per epoch: a seeded shuffle of the training items (drop_last batches, as the references do),
``method.loss`` on each batch, a step of ``method.make_optimizer()``. Methods that alternate
(DCMH: image net, then text net; SSAH: label net, discriminators, image net, text net) name their
``phases``; each phase is one pass over freshly shuffled batches with its own optimiser. Every
``eval_every`` epochs the model is scored on a validation part of the training set (mAP@50 of
I->T and T->I, validation items as queries against the rest of the training set; never the test
queries) and the best state is kept. Checkpoints (``cmhash.checkpoint``) are written at every
epoch end, every ``train.checkpoint_every`` steps and every ``train.checkpoint_minutes``, so
``resume=True`` continues a run that died and reaches the same weights as an uninterrupted one.
Under torchrun the global batch is split across ranks (``cmhash.distributed``).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed as dist_
from ..checkpoint import CHECKPOINT, rng_state, save_checkpoint, set_rng_state
from ..config import RunConfig
from ..data.inputs import Inputs, input_spec
from ..data.protocol import validation_split
from ..eval.metrics import evaluate_retrieval
from ..methods.base import labels_required
from ..model import create_model, encode_split
from ..registry import METHODS
from ..utils import CmhashError, auto_threads, seed_everything
from .closed_form import paired_validate, write_text_query
from .targets import canonical_space


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
        if len(states) != len(self.unique):
            raise CmhashError("checkpoint holds a different number of optimisers than this method uses")
        for o, st in zip(self.unique, states):
            o.load_state_dict(st)


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint saves beside the weights and optimisers."""

    epoch: int = 0  # the next epoch to run
    history: list = field(default_factory=list)
    best_val: dict | None = None
    best_epoch: int = -1
    best_state: dict | None = None
    position: dict | None = None  # inside ``epoch``: phase, step, running loss, phase losses, data order
    training_state: dict = field(default_factory=dict)  # the method's per-item memories at ``position``


@dataclass
class TrainResult:
    model: torch.nn.Module
    best_epoch: int
    best_val: dict
    history: list
    seconds: float
    out_dir: Path | None


def validate(model, inputs: Inputs, val_idx, db_idx, device) -> dict:
    codes = encode_split(model, inputs, val_idx, db_idx, device)
    lab = inputs.data.labels
    i2t = evaluate_retrieval(codes["q_img"], codes["db_txt"], lab[val_idx], lab[db_idx], topk=50)
    t2i = evaluate_retrieval(codes["q_txt"], codes["db_img"], lab[val_idx], lab[db_idx], topk=50)
    return {f"{k}_i2t": v for k, v in i2t.items()} | {f"{k}_t2i": v for k, v in t2i.items()} | \
        {k: (i2t[k] + t2i[k]) / 2 for k in i2t}


class Trainer:
    """The loop of one method at one code length over prepared ``inputs``."""

    def __init__(self, cfg: RunConfig, inputs: Inputs, device, out: Path | None, progress: bool = True):
        tc = self.tc = cfg.train
        self.cfg, self.inputs, self.device, self.out = cfg, inputs, device, out
        self.rank, self.world_size = dist_.world()
        self.train_idx, self.val_idx = validation_split(inputs.split.train, tc.val_fraction, tc.seed)
        if tc.epochs < 1 or tc.batch_size < 1:
            raise CmhashError(f"epochs and batch size must be at least 1, got {tc.epochs} and {tc.batch_size}")
        closed_form = METHODS.get(cfg.method).closed_form  # before the model: a batch check it does not need
        if len(self.train_idx) < tc.batch_size and not closed_form:
            raise CmhashError(f"training set ({len(self.train_idx)} items) is smaller than one batch ({tc.batch_size})")
        if tc.batch_size % self.world_size:
            raise CmhashError(f"batch size {tc.batch_size} does not split over {self.world_size} processes; "
                              "the global batch must be a multiple of the number of processes")
        self.spec = input_spec(cfg, inputs)
        model = self.model = create_model(cfg, self.spec).to(device)
        if self.world_size > 1 and not model.distributed:
            able = ", ".join(n for n in METHODS.names() if METHODS.get(n).distributed)
            raise CmhashError(f"{cfg.method} does not support data-parallel training yet (its loss reads per-item "
                              "memories or batch statistics that are not gathered across processes); run it in one "
                              f"process. Supported: {able}")
        if self.world_size > 1 and device.type == "cuda":  # BatchNorm over the global batch (GPU-only)
            self.model = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        data = inputs.data
        self.scorable = inputs.scorable  # no labels: no validation, the last epoch's weights are kept
        if model.supervised and not self.scorable:
            raise CmhashError(labels_required(cfg.method))
        self.lab_t = torch.from_numpy(np.asarray(data.labels, np.float32)).to(device)
        self.feat_t = torch.from_numpy(inputs.feat).to(device)
        self.text_t = torch.from_numpy(np.asarray(data.texts, np.float32)).to(device)
        self.target_feat_t, self.target_text_t = self.similarity_inputs(model)  # (N, .) what S is computed from
        train_t = torch.from_numpy(self.train_idx).to(device)
        model.attach_training_set(self.lab_t[train_t])
        model.attach_training_features(self.target_feat_t[train_t].float(), self.target_text_t[train_t])
        self.opt = None if closed_form else OptimizerSet(model.make_optimizer())
        self.img_src = inputs.image_source(self.spec)
        # the image input on the device when it fits (2 GiB); a larger memory-mapped cache is read per batch
        self.img_t = None
        if self.img_src is inputs.feat:
            self.img_t = self.feat_t
        elif self.img_src is not None and self.img_src.nbytes <= 2 << 30:
            self.img_t = torch.from_numpy(np.array(self.img_src)).to(device)
        self.phases = tuple(model.phases)
        self.runner = model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.runner = DistributedDataParallel(model, find_unused_parameters=len(self.phases) > 1 or
                                                  model.supervised, broadcast_buffers=False)
        self.n_batches = len(self.train_idx) // tc.batch_size
        self.state = TrainState()
        self.progress = progress

    def similarity_inputs(self, model) -> tuple[torch.Tensor, torch.Tensor]:
        """The image and text vectors a method's similarity targets are computed from (``train.targets``,
        ``train/targets.py``): the frozen features, or their canonical projections."""
        tc = self.tc
        model.targets = tc.targets
        if tc.targets == "features":
            return self.feat_t, self.text_t
        if not model.canonical_targets:
            able = ", ".join(n for n in METHODS.names() if METHODS.get(n).canonical_targets)
            raise CmhashError(f"{self.cfg.method} has no similarity targets to compute in the canonical space "
                              f"(train.targets: canonical); methods that do: {able}")
        labels = np.asarray(self.inputs.data.labels, np.float32) if self.scorable else None
        feat, text, self.canonical = canonical_space(self.inputs.feat, self.inputs.data.texts, labels,
                                                     self.train_idx, self.val_idx, tc.canonical_dims or self.cfg.bits)
        return (torch.from_numpy(feat).float().to(self.device), torch.from_numpy(text).float().to(self.device))

    # --- checkpoints ---------------------------------------------------------------------------
    def resume(self, ck: dict) -> None:
        """Continue from a checkpoint ``check_resumable`` accepted."""
        model = self.model
        model.load_state_dict(ck["model"])
        if self.opt is not None:
            self.opt.load_state_dict(ck["optimizer"])
        st = TrainState(**ck["state"])
        st.best_state = ck.get("best_model")
        if st.position is None:  # mid-epoch memories are restored after that epoch's set_epoch (run_epoch)
            model.load_training_state(st.training_state)
        set_rng_state(ck["rng"], model.generators())
        self.state = st

    def save(self) -> None:
        if not self.out or self.rank != 0:
            return
        spec, frozen = self.spec, None
        if spec.image.frozen_backbone and not spec.image.weights_shipped:
            frozen = self.inputs.backbone.state_dict()  # the model then loads without the weight file
        st = self.state
        save_checkpoint(self.out / CHECKPOINT, {
            "config": self.cfg.to_dict(), "spec": spec.to_dict(), "method": self.cfg.method, "bits": self.cfg.bits,
            "model": self.model.state_dict(), "best_model": st.best_state, "backbone": frozen,
            "optimizer": self.opt.state_dict() if self.opt else [], "rng": rng_state(self.model.generators()),
            "threads": torch.get_num_threads(),  # a resume without train.num_threads uses the same count
            "state": {**st.__dict__, "best_state": None, "training_state": self.model.training_state()}})

    # --- the loop ------------------------------------------------------------------------------
    def batch(self, idx: np.ndarray) -> dict:
        it = torch.from_numpy(idx)
        if self.img_t is not None:
            image = self.img_t[it].float()
        elif self.img_src is not None:  # a large memory-mapped cache: read this batch's rows only
            rows = np.asarray(self.img_src[np.sort(idx)][np.argsort(np.argsort(idx))], np.float32)
            image = torch.from_numpy(rows).to(self.device)
        else:
            image = torch.from_numpy(self.inputs.data.image_rows(idx)).to(self.device)
        row = torch.from_numpy(np.searchsorted(self.train_idx, idx)).to(self.device)  # positions in the training set
        return {"image": image, "feat": self.feat_t[it], "text": self.text_t[it], "label": self.lab_t[it],
                "index": it, "row": row, "target_feat": self.target_feat_t[it], "target_text": self.target_text_t[it]}

    def nan_cause(self, batch: dict) -> str:
        """The likely cause of a non-finite loss on ``batch``, and where the run can restart."""
        if not all(torch.isfinite(batch[k].float()).all() for k in ("image", "text") if batch[k].is_floating_point()):
            cause = "the batch's inputs hold NaN or inf (check the data and the feature cache)"
        elif not batch["text"].any(1).all():
            n = int((~batch["text"].any(1)).sum())
            cause = (f"{n} of the batch's {len(batch['text'])} texts are empty (all-zero vectors); the method should "
                     "handle them, so please report this, and try another --text-encoder meanwhile")
        else:
            cause = "the optimisation diverged; lower the learning rate (--set method.lr=... or the method's lr_* settings)"
        last = self.out / CHECKPOINT if self.out else None
        where = (f"; the last checkpoint ({last}) is intact: --resume continues from it" if last and last.is_file()
                 else "; no checkpoint was written yet")
        return cause + where

    def data_order(self, epoch: int, phase_index: int) -> np.ndarray:
        g = torch.Generator().manual_seed(self.tc.seed * 1_000_003 + epoch + 7919 * phase_index)
        return self.train_idx[torch.randperm(len(self.train_idx), generator=g).numpy()]

    def run_epoch(self, epoch: int, bar, clock: dict) -> dict:
        """One epoch (every phase); returns the loss per phase. Resumes inside it at ``state.position``."""
        tc, model, st = self.tc, self.model, self.state
        model.train()
        model.set_epoch(epoch)
        self.opt.set_lr_factor(model.lr_factor(epoch, tc.epochs))
        phase_loss, first_pi, first_b, first_running, order = {}, 0, 0, 0.0, None
        if st.position is not None:  # resuming inside this (the first) epoch
            pos = st.position
            model.load_training_state(st.training_state)  # after set_epoch: the mid-epoch memories
            phase_loss, first_pi, first_b, first_running = dict(pos["phase_loss"]), pos["phase"], pos["step"], \
                pos["running"]
            order = pos["order"].numpy()
            bar.update(first_pi * self.n_batches + first_b)
            st.position = None
        local = tc.batch_size // self.world_size
        for pi, phase in enumerate(self.phases):
            if pi < first_pi:
                continue
            resumed = pi == first_pi
            perm = order if order is not None and resumed else self.data_order(epoch, pi)
            step_opt = self.opt[phase]
            running = first_running if resumed else 0.0
            for b in range(first_b if resumed else 0, self.n_batches):
                glob = perm[b * tc.batch_size:(b + 1) * tc.batch_size]  # the global batch
                batch = self.batch(glob[self.rank * local:(self.rank + 1) * local])
                loss, _ = self.runner(batch, phase)
                if not torch.isfinite(loss):
                    raise CmhashError(f"loss became {loss.item()} at epoch {epoch + 1}, step {b + 1}"
                                      f"{f' ({phase} phase)' if phase else ''}: {self.nan_cause(batch)}")
                step_opt.zero_grad(set_to_none=True)
                loss.backward()
                if model.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), model.clip_grad_norm)
                step_opt.step()
                running += loss.item()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / (b + 1):.4f}", refresh=False)
                clock["steps"] += 1
                if (tc.checkpoint_every and clock["steps"] >= tc.checkpoint_every) or \
                        time.time() - clock["saved"] > 60 * tc.checkpoint_minutes:
                    st.position = {"epoch": epoch, "phase": pi, "step": b + 1, "running": running,
                                   "phase_loss": dict(phase_loss), "order": torch.from_numpy(perm)}
                    st.epoch = epoch
                    self.save()
                    st.position = None
                    clock.update(steps=0, saved=time.time())
            key = phase or "loss"
            phase_loss[key] = phase_loss.get(key, 0.0) + running / self.n_batches
        return phase_loss

    def select(self, epoch: int, record: dict) -> None:
        """Score the validation part every ``eval_every`` epochs and at the end; keep the best state."""
        tc, st = self.tc, self.state
        if not len(self.val_idx) or ((epoch + 1) % tc.eval_every and epoch != tc.epochs - 1):
            return
        if not self.scorable:
            return
        val = record["val"] = validate(self.model, self.inputs, self.val_idx, self.train_idx, self.device)
        score = val.get(tc.select_metric)
        if score is None:
            raise CmhashError(f"unknown select_metric {tc.select_metric!r}; use 'map@50' or 'map'")
        if st.best_val is None or score > st.best_val[tc.select_metric]:
            st.best_val, st.best_epoch = val, epoch + 1
            st.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def fit_closed_form(self) -> TrainResult:
        """A ``closed_form`` method: one fit on the training items, its settings chosen by the
        validation score (``validate``'s ``map``; without labels, ``paired_validate``)."""
        t0, st, model = time.time(), self.state, self.model
        rows = np.sort(np.concatenate([self.train_idx, self.val_idx]))  # the whole training set
        fit_rows = np.searchsorted(rows, self.train_idx)
        key = getattr(model.cfg, "select", "map")

        def score() -> float:
            if self.scorable and len(self.val_idx):
                return validate(model, self.inputs, self.val_idx, self.train_idx, self.device)[key]
            return paired_validate(model, self.inputs, self.val_idx if len(self.val_idx) else self.train_idx,
                                   self.device)

        chosen = model.fit_closed_form(self.inputs.feat[rows], np.asarray(self.inputs.data.texts)[rows], fit_rows,
                                       score, seed=self.tc.seed)
        st.best_val, st.best_epoch = {key: chosen["val_score"], "chosen": chosen}, 1
        st.history.append({"epoch": 1, "loss": 0.0, "seconds": round(time.time() - t0, 3), "chosen": chosen})
        st.epoch = self.tc.epochs
        st.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.save()
        if self.out and self.rank == 0:
            write_text_query(self.out, model, self.cfg, self.spec)
        return TrainResult(model, 1, st.best_val, st.history, time.time() - t0, self.out)

    def say_estimate(self, done: int, seconds: float, total: int) -> None:
        """After the first ``done`` epochs (one validation and their checkpoints among them): how
        long all ``total`` will take, and how to train fewer."""
        left = seconds / done * (total - done)
        when = f"{left / 60:.1f} min" if left >= 90 else f"{left:.0f} s"
        tqdm.write(f"{self.cfg.method} {self.cfg.bits} bits: {done} of {total} epochs took {seconds:.1f} s; about "
                   f"{when} to go" + (" (--epochs N trains fewer)" if left > 120 else ""))

    def fit(self) -> TrainResult:
        if self.model.closed_form:
            return self.fit_closed_form()
        tc, st, t0 = self.tc, self.state, time.time()
        bar = tqdm(total=(tc.epochs - st.epoch) * self.n_batches * len(self.phases),
                   disable=not self.progress or self.rank != 0, unit="step", desc=f"{self.cfg.method} "
                   f"{self.cfg.bits} bits", leave=False, dynamic_ncols=True,
                   mininterval=0.2 if sys.stderr.isatty() else 30.0)
        clock = {"steps": 0, "saved": time.time()}
        first, started = st.epoch, time.time()
        probe = min(tc.eval_every, tc.epochs - first)  # epochs timed for the estimate: one validation among them
        for epoch in range(st.epoch, tc.epochs):
            t_epoch = time.time()
            phase_loss = self.run_epoch(epoch, bar, clock)
            # the epoch's training time (steps only: not the validation or the checkpoint)
            record = {"epoch": epoch + 1, "loss": sum(phase_loss.values()), "seconds": round(time.time() - t_epoch, 3)}
            if len(self.phases) > 1:
                record["phase_loss"] = phase_loss
            self.select(epoch, record)
            st.history.append(record)
            st.epoch = epoch + 1
            self.save()
            clock.update(steps=0, saved=time.time())
            if epoch + 1 - first == probe < tc.epochs - first and self.progress and self.rank == 0:
                self.say_estimate(probe, time.time() - started, tc.epochs - first)
        bar.close()
        if st.best_state is not None:
            self.model.load_state_dict(st.best_state)
        else:
            st.best_epoch = tc.epochs
        return TrainResult(self.model, st.best_epoch, st.best_val or {}, st.history, time.time() - t0, self.out)


def start_run(cfg: RunConfig, device, checkpoint: dict | None = None) -> None:
    """Threads and seeds before a run's model is built: ``train.num_threads``, else on the CPU the
    cores other processes leave free (``utils.auto_threads``), or the count a resumed run was
    trained with (a float sum split over another number of threads rounds otherwise)."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    elif device.type == "cpu":
        torch.set_num_threads((checkpoint or {}).get("threads") or auto_threads())
    seed_everything(cfg.train.seed)
