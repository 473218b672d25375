"""A straightforward re-creation of the official SAL loop: deep copies, one layer at a time, a whole-model
forward per batch and per copy. The reference the fast engine (:func:`pst_fast.metrics.sal.sal_epoch`) is
tested against, and the baseline of ``benchmarks/sal_epoch.py``. Same data passes as the engine."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .sal import SALConfig, SALData, SALResult, finish_result, mean_loss, sal_layers


def sal_epoch_reference(model: nn.Module, data: SALData, scfg: SALConfig, l0: float | None, label_smoothing: float = 0.0,
                        layers: list[str] | None = None) -> SALResult:
    t0 = time.perf_counter()
    scfg = scfg.resolved()
    model = copy.deepcopy(model).eval()
    layers = layers or sal_layers(model)
    if l0 is None:
        l0 = mean_loss(model, data.eval_pass(scfg.rounds), label_smoothing)
    R, L = scfg.rounds, len(layers)
    loss_min, loss_max, ratio_min, ratio_max = (np.zeros((R, L)) for _ in range(4))
    for i, layer in enumerate(layers):
        copies = []
        for sign, lr in ((1.0, scfg.lr_min), (-1.0, scfg.lr_max)):
            m = copy.deepcopy(model)
            for name, p in m.named_parameters():
                p.requires_grad_(name == layer)
            w = dict(m.named_parameters())[layer]
            copies.append((sign, m, w, w.detach().clone(), torch.optim.SGD([w], lr=lr)))
        for k in range(R):
            for j, (sign, m, w, w0, opt) in enumerate(copies):
                for x, y, _ in data.train_pass(k):
                    opt.zero_grad()
                    (sign * F.cross_entropy(m(x).float(), y, label_smoothing=label_smoothing)).backward()
                    opt.step()
                with torch.no_grad():
                    diff = w - w0
                    times = torch.linalg.norm(diff) / torch.linalg.norm(w0)
                    (ratio_min if j == 0 else ratio_max)[k, i] = times.item()
                    if times > scfg.radius:
                        w.copy_(w0 + diff / times * scfg.radius)
            total, n = torch.zeros(2, dtype=torch.float64), 0
            with torch.no_grad():
                for x, y, _ in data.eval_pass(k):
                    for j, (_, m, *_rest) in enumerate(copies):
                        total[j] += F.cross_entropy(m(x).float(), y, reduction="sum", label_smoothing=label_smoothing).double().item()
                    n += len(y)
            loss_min[k, i], loss_max[k, i] = (total / n).tolist()
    return finish_result(layers, l0, loss_min, loss_max, ratio_min, ratio_max, t0)
