"""Model zoo: ``create_model(name, num_classes)``; every model is a :class:`BlockModel` (ordered blocks)."""
from . import airbench, densenet, fastnet, mobilenet, resnet, vgg, vit, wrn  # noqa: F401  (registers the builders)
from .blocks import BlockModel
from .fold import fold_batchnorm
from .registry import create_model, list_models, model_info, register_model

__all__ = ["BlockModel", "fold_batchnorm", "create_model", "list_models", "model_info", "register_model"]
