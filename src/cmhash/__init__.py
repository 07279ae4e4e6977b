"""cmhash: deep cross-modal hashing for image-text retrieval.

    import cmhash
    cfg = cmhash.build_config("djsrh", "wiki", bits=64, base={"data": {"root": "path/to/wiki"}})
    metrics = cmhash.run_experiment(cfg, "runs/djsrh-wiki/bits-64")   # train, select, evaluate
    model = cmhash.load_model("runs/djsrh-wiki/bits-64")             # self-contained checkpoint
    codes = cmhash.sign_codes(model.encode_text(text_vectors))        # (B, K) int8 {-1, +1}
"""
from .utils import CmhashError

# Everything else is loaded on first use (PEP 562), so ``import cmhash.index`` (a store, a search
# server's index side) does not import torch: name -> the module that defines it.
_LAZY = {
    **dict.fromkeys(("check_code_length", "pack_codes", "sign", "sign_codes", "unpack_codes"), "codes"),
    **dict.fromkeys(("RunConfig", "build_config"), "config"),
    **dict.fromkeys(("PairedData", "Split", "load_dataset", "make_split", "make_synthetic"), "data"),
    **dict.fromkeys(("Inputs", "input_spec", "prepare_inputs"), "data.inputs"),
    **dict.fromkeys(("evaluate_retrieval", "map_at_k", "mean_average_precision"), "eval"),
    **dict.fromkeys(("HashModel", "build_method", "create_model", "load_model"), "model"),
    **dict.fromkeys(("BACKBONES", "DATASETS", "INDEX_BACKENDS", "METHODS", "TEXT_ENCODERS", "register_backbone",
                     "register_dataset", "register_index_backend", "register_method", "register_text_encoder"),
                    "registry"),
    **dict.fromkeys(("ImageSpec", "InputSpec", "TextSpec"), "spec"),
    **dict.fromkeys(("run_experiment", "train_run", "train_lengths"), "train"),
}


def __getattr__(name: str):
    """The API, loaded on first use: ``import cmhash`` (to encode, index or search) does not import
    the trainer, and the index layer does not import torch."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'cmhash' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["check_code_length", "sign", "sign_codes", "RunConfig", "build_config", "PairedData", "Split", "load_dataset", "make_split",
           "make_synthetic", "Inputs", "input_spec", "prepare_inputs", "evaluate_retrieval", "map_at_k",
           "mean_average_precision", "pack_codes", "unpack_codes", "HashModel", "build_method", "create_model",
           "load_model", "BACKBONES", "DATASETS", "INDEX_BACKENDS", "METHODS", "TEXT_ENCODERS", "register_backbone",
           "register_dataset", "register_index_backend", "register_method", "register_text_encoder", "ImageSpec", "InputSpec", "TextSpec",
           "run_experiment", "train_run", "train_lengths", "CmhashError"]
