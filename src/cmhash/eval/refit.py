"""CCA-ITQ refitted on a fine-tuned run's backbone: the linear row of the fine-tuned regime
(docs/deep-vs-linear.md, regime (c)).

A deep method fine-tuned end to end changes two things at once: the image features and the hash
layers on them. Fitting CCA-ITQ (Gong et al., TPAMI 2013, sec. 5) on the fine-tuned backbone's
pooled features, with the same validation choice of ridge and power as every CCA row
(``eval.baselines``), separates them: where that row matches the deep one, what fine-tuning
bought was features, not hashing."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..models.backbones import Backbone
from ..utils import CmhashError
from .baselines import cca_metrics


def finetuned_features(run_dir: str | Path, inputs, bits: int, device="cpu", batch_size: int = 64) -> np.ndarray:
    """(N, D) pooled features of every item through the backbone the run at ``bits`` trained through."""
    from ..model import load_model

    model = load_model(run_dir, bits=bits, device=str(device))
    backbone = next((m for m in model.net.modules() if isinstance(m, Backbone)), None)
    if backbone is None:
        raise CmhashError(f"{run_dir}: the model has no backbone it trained through (run with --finetune)")
    backbone.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs.data), batch_size):
            rows = inputs.data.image_rows(np.arange(start, min(start + batch_size, len(inputs.data))))
            x = torch.from_numpy(np.asarray(rows)).to(model.device)
            out.append(backbone(backbone.preprocess(x)).float().cpu().numpy())  # (B, D)
    return np.concatenate(out)


def refit_cca_itq(run_dir: str | Path, inputs, bits: int, seed: int = 0, device="cpu") -> dict:
    """CCA-ITQ's metrics on the protocol of ``inputs``, fitted on the fine-tuned backbone's features."""
    feat = finetuned_features(run_dir, inputs, bits, device)
    return cca_metrics(dataclasses.replace(inputs, feat=feat), bits, "itq", seed)
