"""ImageFolder loading throughput: a plain DataLoader over a PIL Dataset vs the fallback loader vs DALI (CPU), same run.

One epoch over the same N JPEGs of an ImageFolder split with the training transform (random resized crop to
S px, flip, normalize to float32 NCHW, batch 256) is one sample; the candidates take their samples in turns
(pst_fast.benchmark.measure_interleaved) after a warm-up epoch. Prints images/s at the median epoch, the
spread ((max - min) / median) and the ratio to the DataLoader baseline. The baseline is what a
torchvision-style pipeline does, without torchvision: a Dataset decoding one image per __getitem__ with
Pillow, ``workers`` worker processes (persistent), default collation. Without ``--root`` the split is the
training JPEGs of the embedded cifar10-mini (10k CIFAR-10 files), extracted to a temporary directory.
Usage: python benchmarks/loader.py [--root /tmp/cifar10-jpeg/train] [--images 5000] [--sizes 32 64] [--repeat 5]
"""
import argparse
import contextlib
import dataclasses
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pst_fast.benchmark import Entry, Peaks, entry, measure_interleaved, ratio_text
from pst_fast.data.embedded import ASSETS, REGISTRY
from pst_fast.data.folder import FolderSplit, scan
from pst_fast.data.folder_loader import IMAGENET_MEAN, IMAGENET_STD, TRIES, dali_available, folder_loader, random_resized_boxes

CPU_ONLY = True  # pst-fast bench measures this on the CPU on every machine (DALI's GPU 'mixed' path is unmeasured)


class PILFolder(torch.utils.data.Dataset):
    """The baseline: one image per item, decoded, random-resized-cropped, flipped and normalized with Pillow and torch."""

    def __init__(self, split: FolderSplit, size: int):
        self.split, self.size = split, size
        self.mean, self.std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        y0, x0, y1, x1 = random_resized_boxes(self.split.sizes[i : i + 1], np.random.random((1, TRIES, 4)), (0.08, 1.0), (3 / 4, 4 / 3))[0]
        with Image.open(self.split.files[i]) as im:
            x = np.asarray(im.convert("RGB").resize((self.size, self.size), Image.BILINEAR, box=(x0, y0, x1, y1)))
        if np.random.random() < 0.5:
            x = x[:, ::-1]
        t = torch.from_numpy(np.array(x)).permute(2, 0, 1).float().div_(255)
        return (t - self.mean) / self.std, int(self.split.labels[i])


@contextlib.contextmanager
def split_of(root: str | None, images: int, workers: int):
    """``images`` evenly spread files of the split ``root`` (default: cifar10-mini's training JPEGs, extracted for the run)."""
    with tempfile.TemporaryDirectory() as tmp:
        if root is None:
            with tarfile.open(ASSETS / REGISTRY["cifar10-mini"]) as tar:
                tar.extractall(tmp, filter="data")
            root = Path(tmp) / "train"
        full = scan(root, workers=workers)
        rows = np.linspace(0, len(full) - 1, min(images, len(full))).round().astype(np.int64)
        yield dataclasses.replace(full, files=[full.files[i] for i in rows], labels=full.labels[rows], sizes=full.sizes[rows])


def time_loaders(split: FolderSplit, size: int, batch: int, workers: int, repeat: int) -> list[tuple[str, object]]:
    """[(name, Timing of one epoch)]: (a) the DataLoader baseline, (b) the fallback loader, (c) DALI when it imports."""
    kw = dict(batch_size=batch, image_size=size, workers=workers, drop_last=False)
    loaders = [("(a) DataLoader + PIL Dataset", torch.utils.data.DataLoader(
        PILFolder(split, size), batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=True))]
    loaders.append(("(b) fallback (Pillow threads)", folder_loader("fallback", split, **kw)))
    if dali_available():
        loaders.append(("(c) DALI, CPU (device_id=None)", folder_loader("dali", split, **kw)))

    def epoch(loader):
        def run():
            for _ in loader:
                pass
        return run

    timings = measure_interleaved([epoch(l) for _, l in loaders], repeat=repeat, warmup=1)
    return [(name, t) for (name, _), t in zip(loaders, timings)]


def suite(quick: bool, peaks: Peaks) -> list[Entry]:
    """``loader``: the loader ``--loader auto`` picks (DALI when it imports, else the fallback) against the DataLoader
    baseline, one epoch of cifar10-mini JPEGs at 64 px, in turns; float32 bytes written against the copy peak."""
    images, workers = (2000 if quick else 5000), os.cpu_count() or 1
    with split_of(None, images, workers) as split:
        timings = time_loaders(split, 64, 256, workers, 3 if quick else 5)
    (_, base), (name, fast) = timings[0], timings[-1]
    return [entry("loader", "images/s", images, fast, base, "DataLoader + PIL Dataset", peaks, "copy", images * 3 * 64 * 64 * 4,
                  f"{name[4:]}, {images} cifar10-mini JPEGs -> 64 px, random resized crop + flip, batch 256, {workers} workers")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="an ImageFolder split directory (<class>/<image>); default: cifar10-mini's train JPEGs")
    p.add_argument("--images", type=int, default=5000, help="images per epoch, evenly spread over the split")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="output sides S in pixels")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader processes / decoding threads")
    p.add_argument("--repeat", type=int, default=5, help="measured epochs per candidate")
    a = p.parse_args()
    torch.set_num_threads(1)
    with split_of(a.root, a.images, a.workers) as split:
        print(f"{len(split)} images of {a.root or 'cifar10-mini/train'} ({split.num_classes} classes, "
              f"{'x'.join(map(str, split.sizes[0]))} px source), batch {a.batch}, {a.workers} workers/threads, {os.cpu_count()} CPUs, "
              f"train transform, {a.repeat} epochs per candidate after 1 warm-up")
        print(f"{'loader':<38} {'size':>4} {'images/s':>9} {'spread':>7}  vs (a)")
        for size in a.sizes:
            timings = time_loaders(split, size, a.batch, a.workers, a.repeat)
            for name, t in timings:
                print(f"{name:<38} {size:>4} {len(split) / t.median:9.0f} {100 * t.spread / t.median:6.1f}%  "
                      f"{'1.00x' if t is timings[0][1] else ratio_text(t, timings[0][1])}")
    if not dali_available():
        print("(c) DALI: not measured (nvidia.dali does not import here)")
    print("DALI's GPU (mixed) decoding: not measured (no CUDA device here)" if not torch.cuda.is_available() else
          "DALI's GPU (mixed) decoding: not measured by this script (CPU pipelines only)")


if __name__ == "__main__":
    main()
