"""Inference copies with BatchNorm folded into the preceding convolution (exact up to float rounding)."""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``model`` where every ``Conv2d`` directly followed by a ``BatchNorm2d``
    inside an ``nn.Sequential`` becomes one biased conv (the BN slot becomes ``Identity``).

    For fixed-weight work on a model — PGD sweeps against a surrogate, evaluation — this removes a full
    read+write of every activation per BN, forward and backward (~1.6× on fastnet, CPU, channels_last).
    """
    folded = copy.deepcopy(model).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded
