"""fastnet: the CPU default — a small 4-stage residual net (widths 16-32-64-128), ~57 MFLOPs per image;
fastnet-small (8-16-32-64, ~14 MFLOPs) is the CPU default surrogate of the optimization-based attacks.

stem: conv3x3-BN-ReLU at 32x32 (width w0). Each stage s1, s2, s3: conv3x3-BN-ReLU to the next width at
the incoming resolution, 2x2 max-pool, then one residual block (two conv3x3-BN, ReLU after the sum) at the
pooled resolution: s1 32x32 -> 16x16 (w1), s2 16x16 -> 8x8 (w2), s3 8x8 -> 4x4 (w3). head: pool + linear.
"""
from torch import nn

from ..errors import PstFastError
from .blocks import BlockModel, Head, Residual, conv_bn
from .registry import register_model


def stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(cin, cout), nn.MaxPool2d(2), Residual(nn.Sequential(conv_bn(cout, cout), conv_bn(cout, cout, act=False))))


class FastNet(BlockModel):
    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int, int] = (16, 32, 64, 128)):
        if len(widths) != 4 or min(widths) < 1:
            raise PstFastError(f"fastnet widths={tuple(widths)}: expected 4 positive channel counts (stem, s1, s2, s3)")
        w0, w1, w2, w3 = widths
        super().__init__([
            ("stem", conv_bn(3, w0)),
            ("s1", stage(w0, w1)),
            ("s2", stage(w1, w2)),
            ("s3", stage(w2, w3)),
            ("head", Head(w3, num_classes)),
        ])


@register_model
def fastnet(num_classes: int = 10, widths: tuple[int, int, int, int] = (16, 32, 64, 128)) -> FastNet:
    return FastNet(num_classes, widths)


@register_model
def fastnet_small(num_classes: int = 10) -> FastNet:
    return FastNet(num_classes, (8, 16, 32, 64))
