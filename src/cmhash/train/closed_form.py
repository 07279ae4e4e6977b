"""What the trainer does beside its epochs for a ``closed_form`` method (CCA-ITQ): a validation
score for data without labels, and the text side exported as numbers so a text query needs no
torch (``search.text_query_code``)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..data.inputs import Inputs
from ..eval.metrics import evaluate_retrieval
from ..model import encode_split


def write_text_query(out: Path, model, cfg: RunConfig, spec) -> None:
    """``out/text-query.npz`` beside the checkpoint, when the model's text side is an affine map over a
    bag of words (CCA-ITQ with words/chars): what ``search.text_query_code`` needs to answer a text
    query with numpy alone (no torch, no checkpoint read), tagged with the model's fingerprint."""
    from ..model import model_fingerprint
    from ..search import TEXT_QUERY_FILE
    from ..utils import atomic_path

    affine = model.affine_text()
    if affine is None or spec.text.kind != "encoder" or spec.text.encoder not in ("words", "chars", "auto"):
        return
    mean, proj = affine
    with atomic_path(out / TEXT_QUERY_FILE, "text query export") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mean=mean, proj=proj, fingerprint=np.array(model_fingerprint(model, cfg.method, cfg.bits)),
                     text_spec=np.array(json.dumps(dataclasses.asdict(spec.text))))


def paired_validate(model, inputs: Inputs, rows, device, cap: int = 2000) -> float:
    """Mean I->T / T->I mAP of ``rows`` (at most ``cap``) against each other, each item's own text
    (image) the one relevant answer: a validation score for data without labels."""
    rows = np.asarray(rows)[:cap]
    codes = encode_split(model, inputs, rows, rows, device)
    eye = np.eye(len(rows), dtype=np.float32)
    i2t = evaluate_retrieval(codes["q_img"], codes["db_txt"], eye, eye, topk=None)["map"]
    t2i = evaluate_retrieval(codes["q_txt"], codes["db_img"], eye, eye, topk=None)["map"]
    return (i2t + t2i) / 2
