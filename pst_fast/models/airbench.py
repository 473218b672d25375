"""airbench: the airbench94 class of CIFAR-10 net (Keller Jordan, KellerJordan/cifar10-airbench; written here from
the published description, not its code), ~236 MFLOPs per 32-px image.

stem: a whitening 2×2 convolution without padding (32 -> 31 px) to 24 channels whose weights are the patch-whitening
filters of the training images and their negatives (set by :meth:`AirBench.data_init`, never trained; its bias
is trained), then GELU. b1, b2, b3: conv3x3 -> 2×2 max-pool -> BN -> GELU -> conv3x3 -> BN -> GELU, widths
64, 256, 256 (31 -> 15 -> 7 -> 3 px). head: 3×3 max-pool, linear without bias, logits × 1/9.

Every 3×3 convolution starts as the identity on its first min(C_in, C_out) output channels (dirac init, an
implicit residual). BatchNorm has a fixed unit scale, momentum 0.4 (torch's convention; airbench's 0.6) and
eps 1e-12; its bias is stored divided by :data:`BIAS_GAIN` = 8, so plain SGD moves it with 8² = 64× the learning
rate of the other weights and the same weight decay: airbench's "bias_scaler 64" in one parameter group per block.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import BlockModel
from .registry import register_model

BIAS_GAIN = 8.0
WHITEN_EPS = 5e-4  # added to the patch covariance's eigenvalues before scaling by their inverse square root


class UnitScaleBatchNorm(nn.Module):
    """(B, C, H, W) -> BatchNorm without a learned scale, plus a bias stored as bias / BIAS_GAIN."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4, affine=False)
        self.scaled_bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) + (BIAS_GAIN * self.scaled_bias).view(1, -1, 1, 1).to(x.dtype)


class Whiten(nn.Conv2d):
    """A k×k convolution (no padding, trained bias) whose weight is a buffer set from data, not a parameter."""

    def __init__(self, cin: int, k: int):
        super().__init__(cin, 2 * cin * k * k, k, padding=0, bias=True)
        weight = self.weight.detach()
        del self.weight
        self.register_buffer("weight", weight)
        nn.init.zeros_(self.bias)

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Set the filters from ``images`` (N, C, H, W), normalized: the eigenvectors of the (uncentred) k×k patch
        covariance scaled by 1 / sqrt(eigenvalue + WHITEN_EPS), largest eigenvalue first, then their negatives."""
        c, k = self.in_channels, self.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)              # (N, C, H', W', k, k)
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat))  # ascending
        filters = (eigenvectors.T.flip(0) / (eigenvalues.flip(0) + WHITEN_EPS).sqrt()[:, None]).reshape(c * k * k, c, k, k)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight))


def identity_conv(cin: int, cout: int) -> nn.Conv2d:
    """Conv 3×3 (same padding, no bias), default init with its first min(cin, cout) filters set to the identity."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    nn.init.dirac_(conv.weight.data[:min(cin, cout)])
    return conv


def conv_group(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(identity_conv(cin, cout), nn.MaxPool2d(2), UnitScaleBatchNorm(cout), nn.GELU(),
                         identity_conv(cout, cout), UnitScaleBatchNorm(cout), nn.GELU())


class AirBenchHead(nn.Module):
    """(B, C, 3, 3) -> (B, num_classes): 3×3 max-pool, linear without bias, × ``scale``."""

    def __init__(self, cin: int, num_classes: int, scale: float = 1 / 9):
        super().__init__()
        self.pool = nn.MaxPool2d(3)
        self.linear = nn.Linear(cin, num_classes, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(x).flatten(1)) * self.scale


class AirBench(BlockModel):
    data_init_samples = 5000  # training images the whitening filters are estimated from

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256)):
        w1, w2, w3 = widths
        whiten = Whiten(3, 2)
        super().__init__([
            ("stem", nn.Sequential(whiten, nn.GELU())),
            ("b1", conv_group(whiten.out_channels, w1)),
            ("b2", conv_group(w1, w2)),
            ("b3", conv_group(w2, w3)),
            ("head", AirBenchHead(w3, num_classes)),
        ])

    def data_init(self, images: torch.Tensor) -> None:
        """Whitening filters from ``images`` (N, 3, H, W), normalized as the model's inputs."""
        self.blocks["stem"][0].fit(images)


@register_model
def airbench(num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256)) -> AirBench:
    return AirBench(num_classes, widths)
