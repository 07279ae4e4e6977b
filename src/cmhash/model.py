"""The model core (open_clip style), apart from the trainer.

    spec = input_spec(cfg, inputs)          # cmhash.data.inputs: what the model reads
    net = create_model(cfg, spec)           # a registered HashMethod, untrained
    model = load_model("runs/djsrh-synthetic", bits=64)   # a trained one, ready to encode
    model.encode_image(pixels_or_features)  # (B, K) real outputs; sign_codes(...) gives the codes
    model.encode_text(["dog puppy"])        # free text through the saved text encoder

A checkpoint is self-contained: ``load_model`` needs neither the data folder (the ``InputSpec``
holds the vocabulary and every dimension) nor the backbone's weight file (a fine-tuned backbone
is in the weights; a frozen one that does not come with an installed package is saved beside them;
a fitted text encoder's vocabulary is in the spec).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CHECKPOINT, load_checkpoint, run_checkpoints
from .codes import sign_codes
from .config import RunConfig
from .registry import METHODS
from .spec import InputSpec
from .text import text_encoder_from_spec
from .utils import CmhashError, resolve_device

__all__ = ["HashModel", "create_model", "build_method", "load_model", "resolve_checkpoint", "sign_codes",
           "encode_items", "encode_split", "model_fingerprint"]


def build_method(name: str, bits: int, spec: InputSpec, params: dict | None = None):
    """A registered method ``name`` with hyper-parameters ``params`` (checked against its Config)."""
    cls = METHODS.get(name)
    return cls(cls.make_config(params or {}), bits, spec)


def create_model(cfg: RunConfig, spec: InputSpec):
    """The method of ``cfg`` at ``cfg.bits`` bits for inputs ``spec`` (untrained)."""
    return build_method(cfg.method, cfg.bits, spec, cfg.method_params)


def resolve_checkpoint(path, bits: int | None = None) -> Path:
    """A checkpoint file from a file, a ``bits-K`` folder or a run folder (``bits`` picks the length;
    default the longest)."""
    p = Path(path)
    if p.is_file():
        return p
    if (p / CHECKPOINT).is_file():
        return p / CHECKPOINT
    if p.is_dir():
        found = run_checkpoints(p)
        if bits is not None:
            if bits in found:
                return found[bits]
            raise CmhashError(f"{p}: no {bits}-bit model (found: {[f'bits-{b}' for b in found] or 'none'})")
        if found:
            return found[max(found)]
    raise CmhashError(f"{p}: not a checkpoint, a bits-K folder or a run folder with bits-K/{CHECKPOINT}")


def model_fingerprint(net: torch.nn.Module, method: str, bits: int) -> str:
    """sha256 of the method, code length and every weight (names and bytes), first 16 hex digits."""
    h = hashlib.sha256(f"{method}:{bits}".encode())
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class HashModel:
    """A trained method with what turns raw inputs into its inputs: the frozen backbone (modes
    ``pooled`` and ``maps``) and the text encoder it was trained with (``cmhash.text``)."""

    def __init__(self, net, cfg: RunConfig, spec: InputSpec, backbone=None, checkpoint: Path | None = None,
                 device="cpu"):
        self.device = torch.device(device)
        self.net, self.cfg, self.spec, self.checkpoint = net.eval().to(self.device), cfg, spec, checkpoint
        self.backbone = backbone.eval().to(self.device) if backbone is not None else None
        self.method, self.bits = cfg.method, cfg.bits
        self.fingerprint = model_fingerprint(self.net, self.method, self.bits)
        self.text_encoder = text_encoder_from_spec(spec.text)
        if self.text_encoder is not None:
            self.text_encoder.to(self.device)

    # --- raw inputs -> the net's inputs --------------------------------------------------------
    @torch.inference_mode()
    def image_inputs(self, pixels) -> torch.Tensor:
        """uint8 pixels (B, 3, H, W) -> what the image net reads (pooled features, maps or pixels)."""
        mode = self.spec.image.mode
        if mode == "features":
            raise CmhashError(f"this {self.method} model reads {self.spec.image.dim}-d image features, not pixels; "
                              "give image features instead")
        t = torch.as_tensor(np.ascontiguousarray(pixels)).to(self.device)
        if mode == "pixels":
            return t
        fmap = self.backbone.frozen_map(t)  # (B, C, h, w)
        return fmap.float().contiguous() if mode == "maps" else self.backbone.pool(fmap).float()

    def text_inputs(self, texts: list[str]) -> np.ndarray:
        """Free texts -> what the text net reads (B, dim), through the model's text encoder."""
        if self.text_encoder is None:
            raise CmhashError(f"this {self.method} model reads {self.spec.text.dim}-d text vectors and no text encoder "
                              "is known for them (the dataset gives vectors, not words): give text vectors instead")
        return self.text_encoder.transform(["" if not isinstance(t, str) else t for t in texts])

    # --- the net -------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_image(self, x) -> torch.Tensor:
        """The image net's real outputs (B, K) for inputs in its own space (see ``image_inputs``):
        feature vectors or maps (float) or, for a fine-tuned backbone, uint8 pixels."""
        t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        return self.net.encode_image((t.float() if t.is_floating_point() else t).to(self.device))

    @torch.inference_mode()
    def encode_text(self, t) -> torch.Tensor:
        """The text net's real outputs (B, K) for free texts (a list of str) or text vectors."""
        if isinstance(t, (list, tuple)) and (not t or isinstance(t[0], str)):
            t = self.text_inputs(list(t))
        return self.net.encode_text(torch.as_tensor(np.asarray(t, np.float32)).to(self.device))

    def info(self) -> dict:
        return {"fingerprint": self.fingerprint, "checkpoint": str(self.checkpoint), "method": self.method,
                "bits": self.bits, "dataset": self.cfg.data.dataset, "image_input": self.spec.image.mode,
                "backbone": self.spec.image.backbone if self.spec.image.reads_pixels else None,
                "text_encoder": self.text_encoder.describe() if self.text_encoder is not None else None}


def load_model(path, bits: int | None = None, device: str = "auto", state: str = "best_model") -> HashModel:
    """A trained model from a checkpoint, a ``bits-K`` folder or a run folder (``bits`` picks the
    code length; default the longest), with its ``state`` weights (best validation by default)."""
    p = resolve_checkpoint(path, bits)
    ck = load_checkpoint(p)
    cfg = RunConfig.from_dict(ck["config"])
    spec = InputSpec.from_dict(ck["spec"])
    spec.image.from_checkpoint = True
    net = create_model(cfg, spec)
    net.load_state_dict(ck[state] if ck.get(state) is not None else ck["model"])
    backbone = None
    if spec.image.frozen_backbone:  # it turns pixels into the net's inputs
        backbone = spec.image.build_backbone(load=spec.image.weights_shipped)
        if not spec.image.weights_shipped:
            if ck.get("backbone") is None:
                raise CmhashError(f"{p}: the frozen backbone's weights are missing from the checkpoint")
            backbone.load_state_dict(ck["backbone"])
    return HashModel(net, cfg, spec, backbone, p.resolve(), resolve_device(device))


@torch.no_grad()
def encode_items(net, inputs, idx: np.ndarray, modality: str, device, batch_size: int = 1024) -> np.ndarray:
    """{-1,+1} int8 codes (n, K) of prepared items ``idx`` (``data.inputs.Inputs``) in one modality."""
    net.eval()
    out = []
    src = inputs.image_source(net.spec)
    bs = batch_size if (src is not None and src.ndim == 2) or modality == "text" else 64
    for s in range(0, len(idx), bs):
        part = idx[s:s + bs]
        if modality == "text":
            code = net.encode_text(torch.from_numpy(inputs.data.texts[part]).to(device))
        elif src is not None:
            code = net.encode_image(torch.from_numpy(np.asarray(src[part], np.float32)).to(device))
        else:
            code = net.encode_image(torch.from_numpy(inputs.data.image_rows(part)).to(device))
        out.append(sign_codes(code))
    return np.concatenate(out) if out else np.zeros((0, net.bits), np.int8)


def encode_split(net, inputs, query: np.ndarray, database: np.ndarray, device) -> dict:
    """Query and database codes in both modalities, as ``eval.runner.evaluate_codes`` takes them."""
    return {"q_img": encode_items(net, inputs, query, "image", device),
            "q_txt": encode_items(net, inputs, query, "text", device),
            "db_img": encode_items(net, inputs, database, "image", device),
            "db_txt": encode_items(net, inputs, database, "text", device)}
