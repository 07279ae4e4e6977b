"""The one trainer for every method, and the frozen-feature cache."""
from .features import cached_features
from .trainer import TrainResult, prepare_inputs, train_run

__all__ = ["cached_features", "TrainResult", "prepare_inputs", "train_run"]
