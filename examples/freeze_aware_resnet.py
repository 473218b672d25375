"""Freeze-aware training and fused PGD on a model from another codebase: a torchvision-style ResNet-18.

The ResNet below is written the way ``torchvision.models.resnet`` defines it (``BasicBlock``, ``conv1`` /
``bn1`` / ``maxpool`` / ``layer1``..``layer4`` / ``fc``, the same initialization; ``width`` = 64 is
torchvision's) and knows nothing of pst_fast. The script

1. builds ``FreezeAwareSGD.from_blocks`` with one group per block (``conv1`` + ``bn1`` as the stem),
2. trains a few steps, freezes ``layer1`` at ``--freeze-at`` and trains on (layer1 gets no gradients, no update,
   its momentum is kept),
3. crafts error-minimizing noise (EM-style, L∞ ε = 8/255) on one batch with ``pst_fast.ops.pgd_step``.

    python examples/freeze_aware_resnet.py                                 # synthetic images, a few seconds on CPU
    python examples/freeze_aware_resnet.py --data cifar10-mini --steps 20  # the embedded CIFAR-10 subset

``main(argv)`` returns the model, the optimizer and the tensors it made, for tests.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from pst_fast.ops import pgd_step
from pst_fast.training.freeze import FreezeAwareSGD


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers: list[int], num_classes: int = 1000, width: int = 64):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 10, width: int = 64) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, width)


def load_images(data: str, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (n, 3, 32, 32) float in [0, 1] and labels (n,) in [0, 10): noise around a colour per class
    (``random``, learnable in a few steps), or evenly spaced rows of a pst_fast dataset."""
    if data == "random":
        y = torch.randint(0, 10, (n,), generator=generator)
        colours = torch.rand(10, 3, 1, 1, generator=generator)
        return (0.6 * colours[y] + 0.4 * torch.rand(n, 3, 32, 32, generator=generator)), y
    from pst_fast import data as datasets

    ds = datasets.load(data, "train", verify=False)
    rows = torch.linspace(0, len(ds) - 1, n).round().long().numpy()
    x = torch.from_numpy(ds.images[rows]).permute(0, 3, 1, 2).float() / 255
    return x, torch.from_numpy(ds.labels[rows])


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="random", help="'random' (noise around a colour per class) or a pst_fast dataset: cifar10-mini or a directory")
    p.add_argument("--steps", type=int, default=8, help="training steps")
    p.add_argument("--freeze-at", type=int, default=4, help="step at which layer1 is frozen")
    p.add_argument("--batch", type=int, default=32, help="images per step")
    p.add_argument("--width", type=int, default=64, help="channels of layer1 (torchvision: 64)")
    p.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (momentum 0.9, nesterov, weight decay 5e-4)")
    p.add_argument("--pgd-steps", type=int, default=5, help="error-minimizing PGD steps on the last batch")
    p.add_argument("--eps", type=float, default=8 / 255, help="L∞ budget of the noise, in [0, 1] pixel units")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 0 <= args.freeze_at < args.steps:
        p.error(f"--freeze-at {args.freeze_at}: expected a step in [0, --steps={args.steps})")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    torch.manual_seed(args.seed)
    x, y = load_images(args.data, args.steps * args.batch, torch.Generator().manual_seed(args.seed))
    model = resnet18(num_classes=10, width=args.width)
    blocks = {"stem": [model.conv1, model.bn1], "layer1": model.layer1, "layer2": model.layer2,
              "layer3": model.layer3, "layer4": model.layer4, "fc": model.fc}
    opt = FreezeAwareSGD.from_blocks(blocks, model=model, lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sizes = ", ".join(f"{g['name']} ({sum(p.numel() for p in g['params']):,})" for g in opt.param_groups)
    print(f"torchvision-style ResNet-18, width {args.width}; FreezeAwareSGD groups (parameters): {sizes}")

    losses, layer1_at_freeze = [], None
    model.train()
    for step in range(args.steps):
        if step == args.freeze_at:
            opt.freeze("layer1")
            layer1_at_freeze = [p.detach().clone() for p in model.layer1.parameters()]
            print(f"step {step}: froze layer1 (frozen groups: {', '.join(opt.frozen)})")
        xb, yb = x[step * args.batch:(step + 1) * args.batch], y[step * args.batch:(step + 1) * args.batch]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        print(f"step {step}: loss {loss.item():.4f}")

    model.eval()  # error-minimizing noise for the last batch: descend the loss inside the L∞ ball
    delta, pgd_losses = torch.zeros_like(xb), []
    for _ in range(args.pgd_steps):
        xadv = (xb + delta).requires_grad_(True)
        loss = F.cross_entropy(model(xadv), yb)
        (grad,) = torch.autograd.grad(loss, xadv)
        delta = pgd_step(xb, delta, grad, step_size=args.eps / 4, eps=args.eps, norm="linf", direction=-1)
        pgd_losses.append(loss.item())
    with torch.no_grad():
        pgd_losses.append(F.cross_entropy(model(xb + delta), yb).item())
    print(f"pgd_step x{args.pgd_steps} (error-minimizing, eps {args.eps * 255:.3g}/255, eval mode): loss {pgd_losses[0]:.4f} -> "
          f"{pgd_losses[-1]:.4f}, max |delta| {delta.abs().max().item() * 255:.3g}/255")
    return {"model": model, "optimizer": opt, "layer1_at_freeze": layer1_at_freeze, "losses": losses,
            "x": xb, "y": yb, "delta": delta, "pgd_losses": pgd_losses, "args": args}


if __name__ == "__main__":
    main()
