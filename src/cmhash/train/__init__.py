"""The trainer (the loop and its state) and the protocol run around it."""
from .experiment import run_experiment
from .trainer import TrainResult, Trainer, TrainState, train_run

__all__ = ["run_experiment", "TrainResult", "Trainer", "TrainState", "train_run"]
