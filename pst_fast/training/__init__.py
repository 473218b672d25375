"""The trainer's parts: ``TrainConfig`` (every option of a run), ``Hooks`` / ``TrainState`` (the loop's extension
points), ``fit`` / ``evaluate`` (the loop). A run is assembled from them by :mod:`pst_fast.run` (``pst_fast.train``)."""
from .config import TrainConfig
from .hooks import Hooks, TrainState
from .loop import evaluate, fit

__all__ = ["TrainConfig", "Hooks", "TrainState", "fit", "evaluate"]
