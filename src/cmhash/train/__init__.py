"""Training: the loop and its state (``trainer``), the protocol around it (``protocol``: prepare,
train each code length, score, report) and sweeps (``sweep``)."""
from .protocol import run_experiment, train_lengths, train_run
from .trainer import Trainer, TrainResult, TrainState

__all__ = ["run_experiment", "train_lengths", "train_run", "Trainer", "TrainResult", "TrainState"]
