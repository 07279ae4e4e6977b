"""cmhash: deep cross-modal hashing for image-text retrieval.

    import cmhash
    loaded = cmhash.load_dataset("wiki", "path/to/wiki")
    cfg = cmhash.build_config("djsrh", "wiki", bits=64)
    metrics = cmhash.run_experiment(cfg, "runs/djsrh-wiki/bits-64")
"""
from .config import RunConfig, build_config
from .data import PairedData, Split, load_dataset, make_split, make_synthetic
from .eval import evaluate_retrieval, map_at_k, mean_average_precision, pack_codes, unpack_codes
from .methods import build_method
from .registry import BACKBONES, DATASETS, METHODS, register_backbone, register_dataset, register_method
from .train.trainer import prepare_inputs, run_experiment, train_run
from .utils import CmhashError

__version__ = "0.1.0"
__all__ = ["RunConfig", "build_config", "PairedData", "Split", "load_dataset", "make_split", "make_synthetic",
           "evaluate_retrieval", "map_at_k", "mean_average_precision", "pack_codes", "unpack_codes",
           "build_method", "BACKBONES", "DATASETS", "METHODS", "register_backbone", "register_dataset",
           "register_method", "prepare_inputs", "run_experiment", "train_run", "CmhashError"]
