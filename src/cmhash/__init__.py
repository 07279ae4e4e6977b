"""cmhash: deep cross-modal hashing for image-text retrieval.

    import cmhash
    cfg = cmhash.build_config("djsrh", "wiki", bits=64, base={"data": {"root": "path/to/wiki"}})
    metrics = cmhash.run_experiment(cfg, "runs/djsrh-wiki/bits-64")   # train, select, evaluate
    model = cmhash.load_model("runs/djsrh-wiki/bits-64")             # self-contained checkpoint
    codes = cmhash.sign_codes(model.encode_text(text_vectors))        # (B, K) int8 {-1, +1}
"""
from .codes import check_code_length, pack_codes, sign, sign_codes, unpack_codes
from .config import RunConfig, build_config
from .data import PairedData, Split, load_dataset, make_split, make_synthetic
from .data.inputs import Inputs, input_spec, prepare_inputs
from .eval import evaluate_retrieval, map_at_k, mean_average_precision
from .model import HashModel, build_method, create_model, load_model
from .registry import (BACKBONES, DATASETS, INDEX_BACKENDS, METHODS, TEXT_ENCODERS, register_backbone,
                       register_dataset, register_index_backend, register_method, register_text_encoder)
from .spec import ImageSpec, InputSpec, TextSpec
from .utils import CmhashError

_TRAINING = ("run_experiment", "train_run", "train_lengths")  # cmhash.train, imported when first used


def __getattr__(name: str):
    """The training API, loaded on first use: ``import cmhash`` (to encode, index or search) does not
    import the trainer."""
    if name in _TRAINING:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module 'cmhash' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["check_code_length", "sign", "sign_codes", "RunConfig", "build_config", "PairedData", "Split", "load_dataset", "make_split",
           "make_synthetic", "Inputs", "input_spec", "prepare_inputs", "evaluate_retrieval", "map_at_k",
           "mean_average_precision", "pack_codes", "unpack_codes", "HashModel", "build_method", "create_model",
           "load_model", "BACKBONES", "DATASETS", "INDEX_BACKENDS", "METHODS", "TEXT_ENCODERS", "register_backbone",
           "register_dataset", "register_index_backend", "register_method", "register_text_encoder", "ImageSpec", "InputSpec", "TextSpec",
           "run_experiment", "train_run", "train_lengths", "CmhashError"]
