"""Importers: an image folder (directory or tar), CIFAR-10/100 python batches, SVHN ``.mat`` files or an ``.npz`` -> canonical splits.

``import_source(src, out)`` detects the kind of ``src`` and writes ``out/train`` (and ``out/test`` when the
source has one) atomically. Image folders are laid out ``[wrapper/][train|test/]<class>/<image>``; classes
are sorted as strings and recorded in ``meta['classes']``, files are read in name order, so an import is
deterministic. Archives are read in one sequential pass: the wanted members are streamed to numbered files of a
temporary spool directory beside the output (never to paths named by the archive), so memory does not grow with
the archive; images are decoded on a thread pool straight into one preallocated (N, H, W, 3) uint8 array. With
``image_size`` S each image is cut to the centred square of its short side and resized to S x S (:func:`square_view`),
so folders of mixed sizes (ImageNet) become a canonical S-px dataset.

Untrusted input is bounded before anything is allocated (:mod:`.limits`): pixels per image from its header,
bytes read out of an archive and decoded bytes against the source's size on disk, regular files only (a FIFO or
device is refused, never read), symbolic links to class folders followed (as :func:`.folder.scan` does, loops
refused). A JPEG cut short and closed with an end marker, which libjpeg fills with grey, is imported and counted
in ``meta['truncated']``.
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from ..io import check_out, temp_dir
from .format import ImageDataset, channel_stats, read_dataset, validate_arrays, write_dataset
from .limits import check_expansion, check_pixels, is_regular, read_regular
from .matfile import read_arrays
from .safe_pickle import brief, safe_load

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLITS = ("train", "test")
CIFAR = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"], "meta": "batches.meta",
                "labels": "labels", "names": "label_names"},
    "cifar100": {"train": ["train"], "test": ["test"], "meta": "meta", "labels": "fine_labels", "names": "fine_label_names"},
}
CIFAR_FILES = {f for lay in CIFAR.values() for f in (*lay["train"], *lay["test"], lay["meta"])}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}  # SVHN format 2 (cropped digits); extra_32x32.mat is not read

MAX_FILE_BYTES = 1 << 32  # one file read whole (an image, a CIFAR batch): what any real one needs

# A listing of a source: relative posix path -> file path (a directory's file, or an archive member's spool file).
Files = dict[str, Path]


# ---------------------------------------------------------------- listing a directory or an archive

def _hidden(rel: str) -> bool:
    """Dot files and folders and macOS resource forks (``.DS_Store``, ``__MACOSX/``, ``._x.jpg``) are ignored."""
    return any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/"))


def _wanted(rel: str) -> bool:
    """An image or a CIFAR batch file outside hidden folders."""
    name = rel.rsplit("/", 1)[-1]
    return not _hidden(rel) and (name.lower().endswith(IMAGE_EXTS) or name in CIFAR_FILES)


def _list_dir(root: Path) -> tuple[Files, set[str]]:
    """Wanted files and all folders under ``root``; linked folders are followed (a link back to a folder being walked is
    refused), and a wanted name that is not a regular file (FIFO, socket, device, dangling link) is refused unread."""
    files, dirs = {}, set()
    ids: dict[str, tuple[int, int]] = {}  # folder -> (device, inode), to see a link back to an ancestor
    for d, subdirs, names in os.walk(root, followlinks=True):
        rel = Path(d).relative_to(root).as_posix()
        st = os.stat(d)
        parts = [] if rel == "." else rel.split("/")
        if any(ids.get("/".join(parts[:i]) or ".") == (st.st_dev, st.st_ino) for i in range(len(parts))):
            raise DataError(f"{root}/{rel}: a symbolic link to a folder that contains it (a loop); refusing to walk it")
        ids[rel] = (st.st_dev, st.st_ino)
        subdirs[:] = [s for s in subdirs if not _hidden(s)]
        if rel != ".":
            dirs.add(rel)
        for n in names:
            key = n if rel == "." else f"{rel}/{n}"
            if _wanted(key):
                if not is_regular(Path(d) / n):
                    raise DataError(f"{root}/{key}: not a regular file (a FIFO, socket, device or dangling link); only regular "
                                    "files are read")
                files[key] = Path(d) / n
    return files, dirs


def _check_member(archive: Path, m: tarfile.TarInfo) -> None:
    p = PurePosixPath(m.name)
    if p.is_absolute() or ".." in p.parts:
        raise DataError(f"{archive}: member {m.name!r} escapes the archive (absolute path or '..'); refusing to read it")
    if not (m.isfile() or m.isdir()):
        raise DataError(f"{archive}: member {m.name!r} is a link or device; only regular files and directories are accepted")


def _list_tar(archive: Path, spool: Path, progress: bool) -> tuple[Files, set[str]]:
    """One sequential pass over a tar / tar.gz (gzip is not seekable): the wanted members streamed to numbered files in
    ``spool``, and all directories. The bytes read out are bounded by :func:`.limits.expansion` of the archive's size,
    checked from each member's header before it is read."""
    files, dirs = {}, set()
    size = archive.stat().st_size
    total = 0
    try:
        with open(archive, "rb") as raw, tqdm.wrapattr(
            raw, "read", total=size, desc=f"read {archive.name}", disable=not progress, leave=False
        ) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for m in tar:
                _check_member(archive, m)
                rel = str(PurePosixPath(m.name))
                if m.isdir() and not _hidden(rel):
                    dirs.add(rel)
                elif _wanted(rel):
                    total += m.size
                    check_expansion(total, size, "the files read out of it", str(archive))
                    files[rel] = spool / f"{len(files):08d}"
                    with open(files[rel], "wb") as out:
                        shutil.copyfileobj(tar.extractfile(m), out, 1 << 20)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{archive}: not a readable tar archive ({brief(e)})") from None
    dirs.discard(".")
    return files, dirs


def _content(v: Path) -> bytes:
    return read_regular(v, MAX_FILE_BYTES)


def disk_bytes(paths) -> int:
    """Bytes on disk of the files ``paths`` (what their decoded contents are bounded against)."""
    return sum(os.stat(p).st_size for p in paths)


# ---------------------------------------------------------------- image folders

def _layout(src: Path, files: Files, dirs: set[str]) -> dict[str, dict[str, list[str]]]:
    """{split: {class: [keys of its images in name order]}} from ``[wrapper/][split/]class/image`` keys."""
    keys = sorted(k for k in files if k.lower().endswith(IMAGE_EXTS))
    if not keys:
        raise DataError(f"{src}: no images found (expected [train/|test/]<class>/<image> with extension {'|'.join(IMAGE_EXTS)})")
    prefix = ""  # single top-level folders wrapping everything, e.g. cifar10/train/cat/1.jpg
    while True:
        rel = [k[len(prefix):] for k in keys]
        tops = {r.split("/", 1)[0] for r in rel}
        if len(tops) != 1 or tops <= set(SPLITS) or min(r.count("/") for r in rel) < 2:
            break
        prefix += tops.pop() + "/"
    by_split = all(r.count("/") == 2 and r.split("/", 1)[0] in SPLITS for r in rel)
    layout: dict[str, dict[str, list[str]]] = {}
    for key, r in zip(keys, rel):
        parts = r.split("/")
        if not by_split and len(parts) != 2:
            raise DataError(f"{src}/{key}: not laid out as [train/|test/]<class>/<image> like the other images")
        split, cls = (parts[0], parts[1]) if by_split else ("train", parts[0])
        layout.setdefault(split, {}).setdefault(cls, []).append(key)
    for d in sorted(d for d in dirs if d.startswith(prefix)):  # an empty class is a mistake, not a class to drop
        parts = d[len(prefix):].split("/")
        split, cls = (parts[0], parts[1:]) if by_split else ("train", parts)
        if (by_split and len(parts) == 1 and split in SPLITS and split not in layout) or (
            len(cls) == 1 and split in layout and cls[0] not in layout[split]
        ):
            raise DataError(f"no images in {src}/{d}")
    return layout


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # JPEG start-of-frame markers


def jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG's start-of-frame segment, or None if ``data`` is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 < n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF:
            return (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8], data[i + 9]
        else:
            i += 2 + ((data[i + 2] << 8) | data[i + 3])
    return None


class _OtherSize(Exception):
    """An image whose header gives another (height, width) than expected; raised before it is decoded."""

    def __init__(self, size: tuple[int, int]):
        super().__init__(size)
        self.size = size


def _check_size(h: int, w: int, where: str, expect: tuple[int, int] | None) -> None:
    check_pixels(h, w, where)
    if expect is not None and (h, w) != expect:
        raise _OtherSize((h, w))


def header_size(data: bytes) -> tuple[int, int]:
    """(height, width) from an image file's header, without decoding it."""
    from PIL import Image

    if (head := jpeg_header(data)) is not None:
        return head[:2]
    with Image.open(io.BytesIO(data)) as im:  # reads the header only
        return im.height, im.width


def square_view(im, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB of the PIL image ``im``: the centred square of its short side, resized (bilinear, antialiased
    when shrinking, as the folder loaders resize)."""
    from PIL import Image

    w, h = im.size
    side = min(w, h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    return np.asarray(rgb.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))


def decode_image(data: bytes, where: str = "image", expect: tuple[int, int] | None = None, image_size: int = 0) -> np.ndarray:
    """The bytes of one image file -> (H, W, 3) uint8 RGB, or (S, S, 3) through :func:`square_view` when ``image_size`` S > 0.
    Before decoding, the size in its header is checked: more than :data:`.limits.MAX_IMAGE_PIXELS` pixels raises
    :class:`DataError` (naming ``where``), and a size other than ``expect`` (height, width) raises ``_OtherSize``.

    Fast path for 3-channel JPEG bytes: libjpeg through ``Image.frombytes(..., "jpeg")`` with the size read
    from the header, skipping PIL's Python marker parsing (half the time for a 32x32 image; the result is
    identical). Anything else, or anything the fast path rejects, goes through ``Image.open``.
    """
    from PIL import Image

    if image_size:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            _check_size(im.height, im.width, where, None)
            return square_view(im, image_size)
    if (head := jpeg_header(data)) is not None:
        _check_size(head[0], head[1], where, expect)
        if head[2] == 3:
            try:
                return np.asarray(Image.frombytes("RGB", (head[1], head[0]), data, "jpeg", "RGB", ""))
            except Exception:  # corrupt or unusual: let Image.open decide and explain
                pass
    with Image.open(io.BytesIO(data)) as im:  # reads the header only
        _check_size(im.height, im.width, where, expect)
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


_FILLER = b"\x55" * 64  # entropy-coded bits: ignored after a complete scan, decoded into a scan that was cut short


def jpeg_truncated(data: bytes, decoded: np.ndarray | None = None) -> bool:
    """Whether the JPEG ``data`` (decoded as ``decoded``, decoded here when None) was cut short and closed with an end
    marker: libjpeg then fills the missing part with grey without an error. Found by decoding it again with filler bits
    before the end marker, which change the picture only when the last scan had not ended."""
    if jpeg_header(data) is None or not data.endswith(b"\xff\xd9"):
        return False
    try:
        decoded = decode_image(data) if decoded is None else decoded
        return not np.array_equal(decode_image(data[:-2] + _FILLER + data[-2:]), decoded)
    except Exception:  # the filler made it undecodable: the scan was cut
        return True


def decode_files(src: Path, split: str, items: list[tuple[str, Path]], workers: int | None, progress: bool,
                 on_bad_image: str, source_bytes: int, image_size: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode ``items`` (name under ``src``, file path) in order into (N, H, W, 3) uint8 on a thread pool, all of the
    first readable image's size (or S x S views of images of any size with ``image_size`` S); returns (images, mask of skipped items, mask of truncated JPEGs). ``split`` labels the
    progress bar. Before allocating, N x H x W x 3 is checked against :func:`.limits.expansion` of ``source_bytes``
    (the source's size on disk); an image of another size is refused from its header, before it is decoded."""
    n = len(items)
    skipped, truncated = np.zeros(n, bool), np.zeros(n, bool)
    wrong: dict[int, tuple] = {}
    expect: list[tuple[int, int] | None] = [None]

    def one(i: int, first: bool = False) -> np.ndarray | None:
        where = f"{src}/{items[i][0]}"
        try:
            data = _content(items[i][1])
            if first:  # the size of every image: all of them must fit before one is decoded
                h, w = header_size(data)
                check_pixels(h, w, where)
                oh, ow = (image_size, image_size) if image_size else (h, w)
                check_expansion(n * oh * ow * 3, source_bytes, f"{n} images of {ow}x{oh}", str(src))
            im = decode_image(data, where, expect[0], image_size)
            truncated[i] = jpeg_truncated(data, None if image_size else im)
            return im
        except _OtherSize as e:
            wrong[i] = e.size
            return None
        except Exception as e:  # PIL raises many types for corrupt data
            if on_bad_image == "fail":
                raise (e if isinstance(e, DataError) else DataError(f"{where}: unreadable image ({type(e).__name__}: {brief(e)})")) from None
            skipped[i] = True
            return None

    first = 0  # the first readable image fixes the size
    while (im := one(first, first=True)) is None:
        first += 1
        if first == n:
            raise DataError(f"{src}: no readable images in split {split}")
    expect[0] = None if image_size else im.shape[:2]
    images = np.empty((n, *im.shape), np.uint8)
    images[first] = im

    def run(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            im = one(i)
            if im is not None:
                images[i] = im

    workers = workers or min(8, os.cpu_count() or 1)
    step = max(1, min(256, n // (4 * workers)))
    ranges = [(lo, min(lo + step, n)) for lo in range(first + 1, n, step)]
    with tqdm(total=n, initial=first + 1, desc=f"decode {split}", unit="img", disable=not progress) as bar:
        pool = ThreadPoolExecutor(workers)
        try:
            for fut, (lo, hi) in zip([pool.submit(run, lo, hi) for lo, hi in ranges], ranges):
                fut.result()
                bar.update(hi - lo)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if wrong:
        i = min(wrong)
        (h, w), (eh, ew) = wrong[i], images.shape[1:3]
        raise DataError(f"{src}/{items[i][0]}: image size {w}x{h} differs from {ew}x{eh} of {items[first][0]}; "
                        "--image-size S imports centred S x S views of images of mixed sizes")
    return images, skipped, truncated


def _import_folder(src: Path, files: Files, dirs: set[str], source_bytes: int, workers, progress, on_bad_image,
                   image_size: int = 0) -> dict[str, tuple]:
    layout = _layout(src, files, dirs)
    classes = sorted(layout.get("train") or layout["test"])
    for split, by_class in layout.items():
        if sorted(by_class) != classes:
            missing, extra = sorted(set(classes) - set(by_class)), sorted(set(by_class) - set(classes))
            raise DataError(f"{src}: the classes of {split} differ from train's (missing: {', '.join(missing[:5]) or '-'}; "
                            f"extra: {', '.join(extra[:5]) or '-'})")
    result = {}
    for split in (s for s in SPLITS if s in layout):
        items, labels = [], []
        for label, cls in enumerate(classes):
            items += [(k, files[k]) for k in layout[split][cls]]
            labels += [label] * len(layout[split][cls])
        images, skipped, truncated = decode_files(src, split, items, workers, progress, on_bad_image, source_bytes, image_size)
        labels = np.asarray(labels, np.int64)
        if skipped.any():
            images, labels = images[~skipped], labels[~skipped]
        names = lambda mask: [items[i][0] for i in np.flatnonzero(mask)]  # noqa: E731
        result[split] = (images, labels, {"classes": classes, "skipped": names(skipped), "truncated": names(truncated & ~skipped)})
    return result


# ---------------------------------------------------------------- CIFAR-10/100 python batches

def _cifar_kind(files: Files) -> tuple[str, dict[str, bytes | Path]] | None:
    """('cifar10' | 'cifar100', {batch file name: data}) when the listing holds a CIFAR download."""
    by_name = {PurePosixPath(k).name: v for k, v in files.items() if PurePosixPath(k).name in CIFAR_FILES}
    for kind, lay in CIFAR.items():
        if lay["meta"] in by_name and all(f in by_name for f in lay["train"]):
            return kind, by_name
    return None


def _field(d, key: str, where: str):
    """A field of a CIFAR pickle dict, whose keys are bytes (Python 2 pickles read with encoding='bytes') or str."""
    if isinstance(d, dict):
        for k in (key.encode(), key):
            if k in d:
                return d[k]
    raise DataError(f"{where}: expected a dict with field {key!r}")


def _import_cifar(src: Path, kind: str, by_name: dict[str, bytes | Path]) -> dict[str, tuple]:
    lay = CIFAR[kind]
    meta_file = f"{src}/{lay['meta']}"
    raw_names = _field(safe_load(_content(by_name[lay["meta"]]), meta_file), lay["names"], meta_file)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw_names]
    result = {}
    for split in SPLITS:
        if not all(f in by_name for f in lay[split]):
            continue
        xs, ys = [], []
        for f in lay[split]:
            where = f"{src}/{f}"
            d = safe_load(_content(by_name[f]), where)
            x, y = np.asarray(_field(d, "data", where)), np.asarray(_field(d, lay["labels"], where))
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"{where}: expected uint8 data of shape (N, 3072) and N integer labels, got {x.dtype} {x.shape} and {y.dtype} {y.shape}")
            _check_labels(y, len(names), where)
            xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(y.astype(np.int64))
        result[split] = (np.concatenate(xs), np.concatenate(ys), {"classes": names})
    return result


# ---------------------------------------------------------------- SVHN .mat files

def _svhn_files(src: Path) -> dict[str, Path] | None:
    """{split: .mat file} when ``src`` is SVHN as distributed: a directory holding train_32x32.mat and/or test_32x32.mat, or
    one ``.mat`` file (its split from its name: test_* is test, anything else train)."""
    if src.is_dir():
        return {split: src / name for split, name in SVHN_FILES.items() if (src / name).is_file()} or None
    if src.is_file() and src.suffix.lower() == ".mat":
        return {"test" if src.name.lower().startswith("test") else "train": src}
    return None


def _import_svhn(files: dict[str, Path]) -> dict[str, tuple]:
    """SVHN's X (H, W, C, N) uint8 and y (N, 1), label 10 meaning the digit 0 (as torchvision maps it) -> classes '0'..'9'."""
    result = {}
    for split, path in files.items():
        arrays = read_arrays(path, ("X", "y"))
        if set(arrays) != {"X", "y"}:
            raise DataError(f"{path}: expected SVHN's variables X and y, found {', '.join(sorted(arrays)) or 'neither'}")
        x, y = arrays["X"], arrays["y"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] not in (1, 3) or y.size != x.shape[3] or (y.ndim == 2 and 1 not in y.shape):
            raise DataError(f"{path}: expected X uint8 (H, W, C, N) with 1 or 3 channels and y of N labels, got X {x.dtype} {x.shape}, y {y.shape}")
        y = y.reshape(-1)
        if len(y) and (not np.array_equal(y, np.round(y)) or y.min() < 1 or y.max() > 10):
            raise DataError(f"{path}: y must hold the digits' labels 1..10 (10 = the digit 0), found values in [{y.min()}, {y.max()}]")
        labels = np.where(y == 10, 0, y).astype(np.int64)
        result[split] = (np.ascontiguousarray(x.transpose(3, 0, 1, 2)), labels, {"classes": [str(d) for d in range(10)]})
    return result


# ---------------------------------------------------------------- .npz

def _nhwc(x: np.ndarray, where: str) -> np.ndarray:
    """(N,H,W,C) as stored, or transposed from (N,C,H,W) when axis 1 has 1 or 3 channels and H, W > 3."""
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DataError(f"{where}: expected uint8 images (N, H, W, C) or (N, C, H, W), got {x.dtype} {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[2] > 3 and x.shape[3] > 3:
        x = x.transpose(0, 2, 3, 1)
    if x.shape[-1] not in (1, 3):
        raise DataError(f"{where}: expected 1 or 3 channels, got shape {x.shape}")
    return x


def _read_npz(src: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz (a zip of .npy files), each checked before it is allocated: a plain dtype (no pickle), and
    the bytes its header declares equal to what its zip member holds; all of them within :func:`.limits.expansion` of
    the file's size."""
    arrays = {}
    try:
        with zipfile.ZipFile(src) as z:
            infos = [i for i in z.infolist() if i.filename.endswith(".npy")]
            check_expansion(sum(i.file_size for i in infos), src.stat().st_size, "its arrays", str(src))
            for info in infos:
                name = info.filename[:-4]
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = read_header(f)
                    if dtype.hasobject:
                        raise DataError(f"{src}: array {name!r} holds Python objects (a pickle); only plain arrays are read")
                    nbytes, held = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, info.file_size - f.tell()
                    if nbytes != held:
                        raise DataError(f"{src}: array {name!r}: its header declares {dtype} {shape} = {nbytes} bytes, the archive "
                                        f"holds {held}")
                    arrays[name] = np.frombuffer(f.read(nbytes), dtype).reshape(shape, order="F" if fortran else "C")
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as e:
        raise DataError(f"{src}: not a readable .npz of plain arrays ({brief(e)})") from None
    return arrays


def _import_npz(src: Path) -> dict[str, tuple]:
    arrays = _read_npz(src)
    pairs = {"train": ("x", "y")} | ({"test": ("x_test", "y_test")} if "x_test" in arrays or "y_test" in arrays else {})
    for xk, yk in pairs.values():
        if xk not in arrays or yk not in arrays:
            raise DataError(f"{src}: expected arrays {xk!r} and {yk!r} (found {', '.join(arrays) or 'none'})")
        y = arrays[yk]
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(arrays[xk]),):
            raise DataError(f"{src}: array {yk!r} must hold {len(arrays[xk])} integer labels (one per image in {xk!r}), got {y.dtype} {y.shape}")
    if "classes" in arrays:
        classes = [str(c) for c in arrays["classes"].reshape(-1)]
    else:
        classes = [str(i) for i in range(max(int(arrays[yk].max(initial=0)) for _, yk in pairs.values()) + 1)]
    result = {}
    for split, (xk, yk) in pairs.items():
        _check_labels(arrays[yk], len(classes), f"{src}: array {yk!r}")
        result[split] = (_nhwc(arrays[xk], f"{src}: array {xk!r}"), arrays[yk].astype(np.int64), {"classes": classes})
    return result


def _check_labels(y: np.ndarray, k: int, where: str) -> None:
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise DataError(f"{where}: labels must lie in [0, {k}) for {k} classes, found [{int(y.min())}, {int(y.max())}]")


# ---------------------------------------------------------------- entry point

def _stem(src: Path) -> str:
    name = src.name
    for suffix in (".tar.gz", ".tgz", ".tar", ".npz", ".mat"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_source_and_out(src: Path, out: Path) -> None:
    """Refuse a missing or special (FIFO, socket, device) source and an existing or unwritable output directory."""
    if not src.exists():
        raise DataError(f"{src}: no such file or directory")
    if out.exists():
        raise DataError(f"{out}: output directory exists (choose another --out or remove it)")
    check_out(out)
    if not src.is_dir() and not is_regular(src):
        raise DataError(f"{src}: not a regular file or a directory (a FIFO, socket or device)")


def import_source(src, out, *, name: str | None = None, workers: int | None = None, progress: bool = True,
                  on_bad_image: str = "fail", image_size: int = 0) -> dict[str, ImageDataset]:
    """Import ``src`` into ``out/<split>`` in the canonical format; returns the written splits (memory-mapped).

    ``src``: an image folder or a .tar/.tar.gz/.tgz of one, CIFAR-10/100 python batches (directory or .tar.gz),
    SVHN's train_32x32.mat / test_32x32.mat (a directory of them or one file) or an .npz with x, y (and x_test,
    y_test, classes). ``workers`` threads decode images (default: the CPU count, at most 8). ``on_bad_image``: 'fail'
    raises on an unreadable image, 'skip' leaves it out and lists it in ``meta['skipped']``. ``image_size`` S > 0 (image
    folders only) stores the centred square of each image's short side resized to S x S. Every split is normalized
    with the training split's mean/std.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if on_bad_image not in ("fail", "skip"):
        raise DataError(f"on_bad_image={on_bad_image!r}: expected 'fail' or 'skip'")
    if workers is not None and workers < 1:
        raise DataError(f"workers={workers}: expected a positive number of decoding threads")
    check_source_and_out(src, out)
    if image_size < 0:
        raise DataError(f"--image-size {image_size}: expected a side in pixels (0 = the images' own size)")
    svhn = _svhn_files(src)
    if image_size and (svhn or src.suffix.lower() == ".npz"):
        raise DataError(f"--image-size {image_size}: applies to image folders; {src} holds arrays of one size")
    if svhn is not None:
        kind, splits = "svhn", _import_svhn(svhn)
    elif src.is_file() and src.suffix.lower() == ".npz":
        kind, splits = "npz", _import_npz(src)
    else:
        spool = None
        try:
            if src.is_dir():
                files, dirs = _list_dir(src)
                source_bytes = disk_bytes(files.values())
            elif tarfile.is_tarfile(src):
                spool = temp_dir(out.parent, f"{out.name}.spool")
                files, dirs = _list_tar(src, spool, progress)
                source_bytes = src.stat().st_size
            else:
                raise DataError(f"{src}: unrecognized source (expected an image folder, a .tar/.tar.gz of one, CIFAR batches, SVHN .mat "
                                "files or an .npz)")
            cifar = _cifar_kind(files)
            if cifar is not None:
                if image_size:
                    raise DataError(f"--image-size {image_size}: applies to image folders; {src} holds CIFAR batches of one size")
                kind, splits = cifar[0], _import_cifar(src, *cifar)
            else:
                kind = "imagefolder"
                splits = _import_folder(src, files, dirs, source_bytes, workers, progress, on_bad_image, image_size)
        finally:
            if spool is not None:
                shutil.rmtree(spool, ignore_errors=True)
    for split, (images, labels, meta) in splits.items():  # every check before anything is written
        validate_arrays(images, labels, len(meta["classes"]), None, str(out / split))
    base = {"name": name or _stem(src), "source": str(src.resolve()), "source_kind": kind}
    if image_size:
        base["resized"] = {"image_size": image_size, "view": "centred square of the short side", "filter": "bilinear, antialiased (Pillow)"}
    if "train" in splits:  # every split is normalized with the training statistics
        base["mean"], base["std"] = channel_stats(splits["train"][0])
    tmp = temp_dir(out.parent, out.name)
    try:
        for split, (images, labels, meta) in splits.items():
            write_dataset(tmp / split, images, labels, {**base, "split": split, **meta})
        try:
            os.rename(tmp, out)
        except OSError:
            raise DataError(f"{out}: output directory appeared during the import (choose another --out or remove it)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {split: read_dataset(out / split, verify=False) for split in splits}
