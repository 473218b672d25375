"""Model registry (timm style): ``@register_model`` builders, ``create_model(name, num_classes, **kw)``."""
from __future__ import annotations

import inspect
from typing import Callable

from ..errors import PstFastError
from .blocks import BlockModel

_REGISTRY: dict[str, Callable[..., BlockModel]] = {}


def register_model(fn: Callable[..., BlockModel]) -> Callable[..., BlockModel]:
    """Register a builder ``fn(num_classes, **kw) -> BlockModel`` under its name (underscores -> dashes)."""
    _REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 10, **kw) -> BlockModel:
    """A freshly initialized model; ``kw`` are the builder's own options (e.g. ``widths=`` for fastnet)."""
    if name not in _REGISTRY:
        raise PstFastError(f"unknown model {name!r}: expected one of {', '.join(list_models())}")
    if num_classes < 2:
        raise PstFastError(f"num_classes={num_classes}: expected at least 2")
    builder = _REGISTRY[name]
    try:
        inspect.signature(builder).bind(num_classes, **kw)
    except TypeError as e:
        raise PstFastError(f"model {name!r}: {e}") from None
    return builder(num_classes, **kw)


def model_info(name: str, num_classes: int = 10, image_size: int | None = None, **kw) -> dict:
    """Parameter count, FLOPs per image (2×MACs of conv, linear and attention matmuls) and block names.

    ``image_size`` defaults to the model's own input size (32, or 224 for the ImageNet models).
    """
    from .flops import count_flops

    model = create_model(name, num_classes, **kw)
    size = image_size or model.default_image_size
    return {
        "name": name,
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_image": count_flops(model, size),
        "blocks": model.block_names,
        "image_size": size,
    }


def resolution_warning(name: str, default_image_size: int, image_size: int) -> str | None:
    """One line when the model ``name``, built for ``default_image_size``-px inputs, is run at ``image_size`` >= 128 px
    (4x its side or more), naming the variant built for that resolution; None otherwise."""
    if default_image_size > 64 or image_size < 128:
        return None
    variant = f"{name}-imagenet"
    better = variant if variant in _REGISTRY else " or ".join(n for n in list_models() if n.endswith("-imagenet"))
    return (f"--model {name} is built for {default_image_size}-px inputs: at --image-size {image_size} it costs "
            f"{(image_size / default_image_size) ** 2:.0f}x its FLOPs per image; use {better}, built for ImageNet resolution")
