"""Hostile and careless input (issue 19; cases of /work/shared/notes/hostile-input-cases.md): every case ends in a one-line
error or a correct result, nothing is written for a refused input, and no crafted input under 1 MB takes more than 1 GiB:
the bombs run in a subprocess under an address-space limit, so a regression fails instead of exhausting the machine."""
import io
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib

import numpy as np
import pytest
from conftest import write_noise_dataset
from PIL import Image

from pst_fast import data
from pst_fast.attacks import ATTACKS, poison
from pst_fast.attacks.base import params_from
from pst_fast.cli import main
from pst_fast.data.folder import scan
from pst_fast.data.format import effective_delta, read_dataset, write_dataset, write_poison
from pst_fast.data.grid import info_text
from pst_fast.data.importers import decode_image, import_source, jpeg_truncated
from pst_fast.data.interop import export_png, import_poison
from pst_fast.data.safe_pickle import safe_load
from pst_fast.defenses.pst import PSTParams
from pst_fast.errors import DataError, PstFastError
from pst_fast.io import atomic_write_text
from pst_fast.options import parse_kv_args
from pst_fast.run import train
from pst_fast.sweep import SpecError, parse_spec
from pst_fast.sweep.lock import db_lock
from pst_fast.sweep.run import fail_if_cells_failed
from pst_fast.training import TrainConfig


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and "\x1b" not in msg, msg
    return msg


# ---------------------------------------------------------------- crafted files

def jpeg(w=32, h=32, seed=0, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", **save)
    return buf.getvalue()


def claiming(data: bytes, w: int, h: int) -> bytes:
    """``data`` (a JPEG) with its start-of-frame header rewritten to claim w x h pixels."""
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    b = bytearray(data)
    b[i + 5:i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    return bytes(b)


def write_tar(path, members, mode="w:gz"):
    with tarfile.open(path, mode) as t:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    return path


def small_images(n=3):
    return [(f"train/{c}/{i:03d}.jpg", jpeg(seed=i)) for c in ("a", "b") for i in range(n)]


def gzip_bomb(path, member_bytes: int):
    """A .tar.gz whose one member is ``member_bytes`` of zeros named like an image."""
    info = tarfile.TarInfo("train/a/000.jpg")
    info.size = member_bytes
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts, zeros = [z.compress(info.tobuf(format=tarfile.GNU_FORMAT))], bytes(1 << 24)
    parts += [z.compress(zeros) for _ in range(member_bytes >> 24)]
    path.write_bytes(b"".join(parts + [z.compress(bytes(1024)), z.flush()]))
    return path


def npz_claiming(path, shape):
    """An .npz whose x.npy header declares ``shape`` (uint8) over 1 KB of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", header.getvalue() + bytes(1024))
        y = io.BytesIO()
        np.save(y, np.zeros(1, np.int64))
        z.writestr("y.npy", y.getvalue())
    return path


def cifar_dir(root, pickled: bytes):
    root.mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (root / f).write_bytes(pickled)
    return root


LIST_OF_BYTES = b"\x80\x02cbuiltins\nlist\ncbuiltins\nbytes\nJ\x00\xc2\xeb\x0b\x85R\x85R."  # list(bytes(2 * 10**8)), 43 bytes


def str_list_chain(pairs: int) -> bytes:
    """str(list(str(list(... bytes(255) ...)))): each pair of calls makes about 5x more elements, without bytes(n)."""
    return b"\x80\x02" + b"cbuiltins\nstr\ncbuiltins\nlist\n" * pairs + b"C\xff" + bytes(255) + b"\x85R" * (2 * pairs) + b"."


# ---------------------------------------------------------------- 1. bounded memory (subprocess, address-space limit)

BOMB_RUNNER = r"""
import json, resource, sys
from pathlib import Path
import numpy as np, PIL.Image
from pst_fast.data.importers import import_source
from pst_fast.data.interop import import_poison
from pst_fast.errors import DataError

def vm_size():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))

resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (1 << 30), resource.RLIM_INFINITY))  # 1 GiB above the baseline
out = {}
for name, how, src, extra in json.loads(sys.argv[1]):
    try:
        if how == "import":
            import_source(src, f"{sys.argv[2]}/{name}", progress=False, workers=4)
        else:
            import_poison(src, extra, f"{sys.argv[2]}/{name}", progress=False, workers=4)
        out[name] = "imported"
    except DataError as e:
        out[name] = "DataError: " + str(e)
    except MemoryError:
        out[name] = "MemoryError"
out["peak_rss_kb"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))  # ru_maxrss would include the parent's
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """Every bomb of the issue, crafted here (each well under 1 MB), imported in one subprocess under RLIMIT_AS."""
    d = tmp_path_factory.mktemp("bombs")
    clean = write_noise_dataset(d / "clean", 8, 4)
    png = export_png(clean, d / "png", progress=False)
    (png / "pst_fast.json").unlink()
    (png / "data" / "7.png").write_bytes(claiming(jpeg(), 16000, 16000))  # case 174: chosen by content, not by name
    cases = {
        "jpeg16000": write_tar(d / "j16.tar.gz", small_images() + [("train/a/999.jpg", claiming(jpeg(seed=9), 16000, 16000))]),
        "jpeg65500": write_tar(d / "j65.tar.gz", small_images() + [("train/a/999.jpg", claiming(jpeg(seed=9), 65500, 65500))]),
        "first_sizes_array": write_tar(d / "first.tar.gz", [("train/a/0.jpg", claiming(jpeg(seed=9), 9000, 9000))] + small_images(60)),
        "all_claim_9000": write_tar(d / "all.tar.gz", [(f"train/{c}/{i}.jpg", claiming(jpeg(seed=i), 9000, 9000)) for c in "ab" for i in range(8)]),
        "gzip_bomb": gzip_bomb(d / "gz.tar.gz", 256 << 20),
        "npz_header_30G": npz_claiming(d / "big.npz", (30720000000,)),
        "npz_header_3G": npz_claiming(d / "mid.npz", (3 << 30,)),
        "cifar_list_of_bytes": cifar_dir(d / "cifar1", LIST_OF_BYTES),
        "cifar_str_list_chain": cifar_dir(d / "cifar2", str_list_chain(12)),
        "png_folder_jpeg16000": png,
    }
    for name, path in cases.items():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        assert size < 1 << 20, (name, size)
    jobs = [(name, "poison" if name.startswith("png") else "import", str(p), str(clean)) for name, p in cases.items()]
    env = dict(os.environ, MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", BOMB_RUNNER, json.dumps(jobs), str(d / "out")], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["written"] = sorted(p.name for p in (d / "out").iterdir()) if (d / "out").exists() else []
    return result


@pytest.mark.parametrize("name, match", [
    ("jpeg16000", r"999.jpg: image of 16000x16000 = 256000000 pixels exceeds the limit of 89478485"),
    ("jpeg65500", r"999.jpg: image of 65500x65500 = 4290250000 pixels exceeds the limit"),
    ("first_sizes_array", r"first.tar.gz: 121 images of 9000x9000 would take 2804\d.\d MiB from 0.\d\d MiB on disk, more than 100x"),
    ("all_claim_9000", r"all.tar.gz: 16 images of 9000x9000 would take"),
    ("gzip_bomb", r"gz.tar.gz: the files read out of it would take 256.0 MiB from 0.2\d MiB on disk"),
    ("npz_header_30G", r"big.npz: array 'x': its header declares uint8 \(30720000000,\) = 30720000000 bytes, the archive holds 1024"),
    ("npz_header_3G", r"mid.npz: array 'x': its header declares uint8 \(3221225472,\) = 3221225472 bytes, the archive holds 1024"),
    ("cifar_list_of_bytes", r"pickle calls bytes\(200000000\), which allocates from a number; refused"),
    ("cifar_str_list_chain", r"pickle builds more than 16777216 elements by calls"),
    ("png_folder_jpeg16000", r"data/7.png: image of 16000x16000 = 256000000 pixels exceeds the limit"),
])
def test_bombs_end_in_one_line_errors_within_1_gib(bombs, name, match):
    assert bombs[name].startswith("DataError: ") and "\n" not in bombs[name], bombs[name]
    assert re.search(match, bombs[name]), bombs[name]
    assert bombs["written"] == [], "nothing is written for a refused input"


def test_bombs_peak_memory(bombs):
    assert bombs["peak_rss_kb"] < 1_000_000, bombs["peak_rss_kb"]  # peak RSS of the whole batch, the interpreter's ~0.55 GB included


HANG_RUNNER = r"""
import sys
from pst_fast.data.importers import import_source
from pst_fast.data.folder import scan
from pst_fast.data.grid import info_text
from pst_fast.errors import DataError
for fn, args in ((import_source, (sys.argv[1], sys.argv[2])), (scan, (sys.argv[1] + "/train",))):
    try:
        fn(*args)
        print("no error")
    except DataError as e:
        print("DataError:", e)
"""


def test_fifo_in_a_class_folder_is_refused_not_read(image_tree, tmp_path):
    tree = image_tree()
    os.mkfifo(tree / "train" / "dog" / "009.png")
    r = subprocess.run([sys.executable, "-c", HANG_RUNNER, str(tree), str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all("009.png: not a regular file (a FIFO" in line for line in lines), r.stdout + r.stderr[-2000:]
    assert not (tmp_path / "o").exists()


def test_linked_class_folder_is_followed_by_every_reader_and_a_loop_is_refused(image_tree, tmp_path):
    tree = image_tree(classes=("cat", "dog"))
    real = image_tree(name="elsewhere", classes=("emu",))
    for split in ("train", "test"):
        os.symlink(real / split / "emu", tree / split / "emu")
    imported = import_source(tree, tmp_path / "o", progress=False)
    assert imported["train"].classes == scan(tree / "train").classes == ["cat", "dog", "emu"]
    os.symlink(tree / "train", tree / "train" / "cat" / "loop")
    with pytest.raises(DataError, match="cat/loop: a symbolic link to a folder that contains it") as e:
        import_source(tree, tmp_path / "o2", progress=False)
    one_line(e)


def test_truncated_jpeg_closed_with_an_end_marker_is_counted(tmp_path, capsys):
    full = jpeg(64, 64, seed=1)
    cut = full[: int(len(full) * 0.8)] + b"\xff\xd9"  # case 16: libjpeg fills the rest with grey
    members = small_images() + [("train/a/cut.jpg", cut)]
    write_tar(tmp_path / "t.tar.gz", [(n, jpeg(64, 64, seed=i)) for i, (n, _) in enumerate(members[:-1])] + [members[-1]])
    assert main(["data", "import", str(tmp_path / "t.tar.gz"), "--out", str(tmp_path / "o")]) == 0
    assert data.load(tmp_path / "o", "train").meta["truncated"] == ["train/a/cut.jpg"]
    assert "warning: train: 1 truncated JPEGs" in capsys.readouterr().err
    for complete in (full, jpeg(64, 64, seed=2, progressive=True), jpeg(33, 17, seed=3, quality=95, subsampling=0)):
        assert not jpeg_truncated(complete, decode_image(complete))


# ---------------------------------------------------------------- 2. meta.json schema and checksum, δ, shapes

def edited(ds_dir, **changes):
    meta = json.loads((ds_dir / "meta.json").read_text())
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    (ds_dir / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, match", [
    (dict(sha256="abc"), "sha256 is str 'abc'; expected an object of 64-digit hex sha256"),
    (dict(classes=10), "classes is int 10; expected a non-empty list of distinct strings"),
    (dict(classes="abc"), "classes is str 'abc'; expected a non-empty list"),
    (dict(mean="abc"), "mean is str 'abc'; expected 3 finite numbers in \\[0, 1\\]"),
    (dict(mean=None), r"missing field\(s\) mean"),
    (dict(mean=[float("nan")] * 3), "mean is list \\[nan, nan, nan\\]; expected 3 finite numbers"),
    (dict(std=[0.2]), "std is list \\[0.2\\]; expected 3 finite numbers"),
    (dict(format_version="1"), "format_version is str '1'; expected the integer 1 or 2"),
    (dict(shape="abc"), "shape is str 'abc'; expected \\[N, H, W, C\\]"),
    (dict(budget=float("inf"), attack="x"), "budget is float inf; expected null or a finite number"),
])
def test_meta_json_schema(tiny_dataset, changes, match):
    edited(tiny_dataset, **changes)
    with pytest.raises(DataError, match=match) as e:
        read_dataset(tiny_dataset, verify=False)
    one_line(e)
    assert main(["data", "info", str(tiny_dataset), "--split", "train"]) == 2


def test_meta_json_is_covered_by_the_checksum_and_format_1_still_reads(tiny_dataset):
    meta = json.loads((tiny_dataset / "meta.json").read_text())
    assert meta["format_version"] == 2 and len(meta["sha256"]["meta"]) == 64
    edited(tiny_dataset, name="renamed")
    with pytest.raises(DataError, match="meta.json: sha256 mismatch with its sha256.meta") as e:
        read_dataset(tiny_dataset)
    one_line(e)
    old = {k: v for k, v in meta.items()} | {"format_version": 1, "sha256": {k: v for k, v in meta["sha256"].items() if k != "meta"}}
    (tiny_dataset / "meta.json").write_text(json.dumps(old))  # as written before format 2
    assert read_dataset(tiny_dataset).meta["format_version"] == 1
    assert data.load("cifar10-mini", "test", verify=False).num_classes == 10  # the embedded set, as cached by any version


@pytest.fixture
def poisoned(tmp_path):
    clean = write_noise_dataset(tmp_path / "clean", 16, 4)
    train, test = data.load(clean, "train"), data.load(clean, "test")
    x = np.asarray(train.images)
    images = np.clip(x.astype(np.int16) + np.random.default_rng(0).integers(-8, 9, x.shape), 0, 255).astype(np.uint8)
    write_poison(tmp_path / "p", train, test, images, effective_delta(x, images),
                 {"name": "p", "source": "test", "attack": "random", "norm": "linf", "budget": 8 / 255})
    return clean, tmp_path / "p"


def rewrite_split(d, images=None, delta=None, **meta_changes):
    """Rewrite the split ``d`` consistently (checksums recomputed), as a careful tamperer would."""
    ds = read_dataset(d, verify=False)
    meta = {k: v for k, v in ds.meta.items() if k not in ("shape", "sha256", "format_version")} | meta_changes
    write_dataset(d, np.asarray(ds.images) if images is None else images, np.asarray(ds.labels), meta,
                  delta=np.asarray(ds.delta) if delta is None else delta, overwrite=True)


def test_delta_over_the_budget_or_not_images_minus_clean_is_refused(poisoned):
    _, p = poisoned
    ds = read_dataset(p / "train")
    big = np.asarray(ds.delta).copy()
    big[0, 0, 0, 0] = 100
    images = np.clip(np.asarray(ds.images, np.int16) - ds.delta + big, 0, 255).astype(np.uint8)
    rewrite_split(p / "train", images=images, delta=big)  # case 71: δ = 100/255 under a budget of 8/255
    with pytest.raises(DataError, match=r"delta.npy: max \|δ\| is 100/255, over the linf budget 0.03137 = 8/255") as e:
        data.load(p, "train")
    one_line(e)
    assert "checksums: FAILED: " in info_text(data.load(p, "train", verify=False))
    small = (np.asarray(ds.delta) // 2).astype(np.int8)  # case 72: a δ within the budget that is not images − clean
    rewrite_split(p / "train", images=np.asarray(ds.images), delta=small)
    with pytest.raises(DataError, match="images − δ (is not the clean split|leaves)") as e:
        data.load(p, "train")
    one_line(e)


def test_train_and_test_of_other_sizes_are_refused(tmp_path):
    root = write_noise_dataset(tmp_path / "d", 8, 4)
    rng = np.random.default_rng(0)
    write_dataset(root / "test", rng.integers(0, 256, (4, 28, 28, 3), dtype=np.uint8), np.arange(4, dtype=np.int64),
                  {"name": "d", "split": "test", "classes": list("abcd"), "source": "test"}, overwrite=True)
    with pytest.raises(PstFastError, match="train images are 32x32x3, test images 28x28x3") as e:
        train(TrainConfig(data=str(root), epochs=1, batch_size=4, quiet=True))
    one_line(e)


def test_import_poison_checks_the_budget_claim_and_marks_the_rest_unverified(poisoned, tmp_path):
    clean, p = poisoned
    png = export_png(p, tmp_path / "png", progress=False)
    side = json.loads((png / "pst_fast.json").read_text())
    side["meta"] |= {"budget": 0.001, "seed": 1234}  # case 173: a poison of up to 8/255 recorded as 0.255/255
    (png / "pst_fast.json").write_text(json.dumps(side))
    with pytest.raises(DataError, match=r"claims an linf budget of 0.001 \(0.255/255\), but the images differ from the clean set by up to 8/255") as e:
        import_poison(png, clean, tmp_path / "back", progress=False)
    one_line(e)
    assert not (tmp_path / "back").exists()
    side["meta"]["budget"] = 8 / 255
    (png / "pst_fast.json").write_text(json.dumps(side))
    back = import_poison(png, clean, tmp_path / "back", progress=False)
    assert back.meta["unverified"] == ["attack", "seed"] and back.meta["measured_linf"] == 8 / 255
    assert "not verified: attack, seed" in info_text(back)


# ---------------------------------------------------------------- 3. numbers: finite and in range, one validator

@pytest.mark.parametrize("kw, match", [
    (dict(lr=float("nan")), r"--lr=nan: expected a finite number >= 0"),
    (dict(lr=float("inf")), r"--lr=inf: expected a finite number >= 0"),
    (dict(grad_clip=float("nan")), r"--grad-clip=nan"),
    (dict(weight_decay=float("inf")), r"--weight-decay=inf"),
    (dict(label_smoothing=float("nan")), r"--label-smoothing=nan: expected a finite number >= 0 and < 1"),
    (dict(warmup_epochs=float("nan")), r"--warmup-epochs=nan"),
    (dict(epochs=True), r"--epochs=True: expected an integer, got bool"),
    (dict(seed=-1), r"--seed=-1: expected an integer >= 0"),
])
def test_train_options_are_finite_and_in_range(kw, match):
    with pytest.raises(PstFastError, match=match) as e:
        TrainConfig(**kw).validate()
    one_line(e)


def test_attack_defense_and_spec_values_go_through_the_same_check():
    with pytest.raises(PstFastError, match=r"attack random: parameter eps=nan: expected a finite number >= 0"):
        params_from(ATTACKS["random"], {"eps": float("nan")})
    with pytest.raises(PstFastError, match=r"attack em: parameter steps=-1: expected an integer >= 0"):
        params_from(ATTACKS["em"], {"steps": -1})
    with pytest.raises(PstFastError, match=r"--defense-args threshold=nan: expected a finite number >= 0"):
        parse_kv_args("threshold=nan", PSTParams)
    spec = "[sweep]\nseeds = [0]\n[train]\nlr = nan\n[attacks.random]\n[defenses.standard]\n"
    with pytest.raises(SpecError, match=r"<spec>:4: \[train\] lr=nan: expected a finite number >= 0"):
        parse_spec(spec)


def test_a_diverging_run_stops_with_an_error_and_records_no_epoch(tmp_path):
    root = write_noise_dataset(tmp_path / "d", 32, 8)
    out = tmp_path / "run"
    rc = main(["train", "--data", str(root), "--epochs", "2", "--batch-size", "8", "--lr", "1e30", "--quiet", "--out", str(out)])
    assert rc == 2 and not (out / "metrics.jsonl").exists() and not (out / "summary.json").exists()
    with pytest.raises(PstFastError, match=r"epoch 1: the train loss is (nan|inf) \(training diverged") as e:
        train(TrainConfig(data=str(root), epochs=1, batch_size=8, lr=1e30, quiet=True))
    one_line(e)


# ---------------------------------------------------------------- 4. sweeps

SPEC = "[sweep]\nseeds = [0]\n[train]\nepochs = 1\n[attacks.random]\n[defenses.standard]\n"


@pytest.mark.parametrize("text, match", [
    (SPEC.replace("seeds = [0]", "seeds = [0, 0]"), r"<spec>:2: \[sweep\] seeds: 0 appears twice"),
    (SPEC + '[attacks.r2]\nattack = "random"\neps = 0.03137254901960784\n',
     r"<spec>:7: \[attacks.r2\]: the same attack with the same parameters as \[attacks.random\] \(line 5\)"),
    (SPEC + '[defenses.std2]\ndefense = "standard"\n', r"<spec>:7: \[defenses.std2\]: the same defense with the same parameters as \[defenses.standard\] \(line 6\)"),
    (SPEC + "[resources]\nworkers = 0\n", r"<spec>:8: \[resources\] workers=0: expected an integer >= 1"),
    (SPEC + "[resources]\nthreads = -1\n", r"<spec>:8: \[resources\] threads=-1: expected an integer >= 1"),
])
def test_colliding_cells_and_bad_resources_are_refused_at_plan_time(text, match):
    with pytest.raises(SpecError, match=match) as e:
        parse_spec(text)
    one_line(e)


def test_a_second_runner_names_the_holder_or_waits_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    db = tmp_path / "s.db"
    (tmp_path / "s.toml").write_text(SPEC)
    with db_lock(db):
        assert main(["sweep", "run", str(tmp_path / "s.toml"), "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert f"--db {db}: another 'sweep run' is using it (host {socket.gethostname()}, pid {os.getpid()}, started 20" in err
        assert not (tmp_path / "s-runs").exists()
    events = []
    with db_lock(db):
        def second():
            with db_lock(db, wait=True, say=events.append):
                events.append("got it")
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        assert events and "waiting for the 'sweep run' using it" in events[0]
    t.join(5)
    assert events[-1] == "got it"
    (tmp_path / "s.db.lock").write_text(json.dumps({"host": "gone", "pid": 999999, "started": 0}))  # a killed runner's file
    with db_lock(db):
        assert json.loads((tmp_path / "s.db.lock").read_text())["pid"] == os.getpid()


def test_failed_cells_and_bad_worker_counts_exit_non_zero(tmp_path, capsys):
    with pytest.raises(PstFastError, match=r"1 of 2 cells failed"):
        fail_if_cells_failed([{"status": "done"}, {"status": "failed"}], "x.db")
    (tmp_path / "s.toml").write_text(SPEC)
    assert main(["sweep", "run", str(tmp_path / "s.toml"), "--db", str(tmp_path / "s.db"), "--workers", "-1"]) == 2
    assert "--workers=-1: expected an integer >= 1" in capsys.readouterr().err


# ---------------------------------------------------------------- 5. --out, nothing written, names, umask

@pytest.mark.parametrize("out, match", [
    ("afile", r"--out .*afile: is a file; expected a directory"),
    ("afile/run", r"--out .*afile/run: lies below .*afile, which is a file"),
    ("/proc/pst_fast_probe", r"--out /proc/pst_fast_probe: cannot create it: /proc is not writable"),
])
def test_out_is_checked_before_any_work(tmp_path, out, match):
    (tmp_path / "afile").write_text("keep")
    out = out if out.startswith("/") else str(tmp_path / out)
    root = write_noise_dataset(tmp_path / "d", 8, 4)
    with pytest.raises(PstFastError, match=match) as e:
        train(TrainConfig(data=str(root), epochs=1, batch_size=4, quiet=True, out=out))
    one_line(e)
    if not out.endswith("afile"):  # commands whose --out must be new
        for fn in (lambda: import_source(tmp_path / "d", out, progress=False), lambda: export_png(root, out, progress=False),
                   lambda: poison("random", str(root), out, progress=False)):
            with pytest.raises(PstFastError, match=match.replace("is a file; expected a directory", "")) as e:
                fn()
            one_line(e)
    assert (tmp_path / "afile").read_text() == "keep"


def test_a_run_that_fails_validation_writes_nothing(tmp_path):
    root = write_noise_dataset(tmp_path / "d", 8, 4)
    with pytest.raises(PstFastError, match="--batch-size 128: larger than the training set"):
        train(TrainConfig(data=str(root), epochs=1, quiet=True, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    train(TrainConfig(data=str(root), epochs=1, batch_size=4, eval_batch_size=4, quiet=True, out=str(tmp_path / "run")))


def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_dataset(tmp_path / "d" / "train", rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), np.arange(4, dtype=np.int64) % 2,
                  {"name": "evil\x1b[2J", "split": "train", "classes": ["a\nb", "\x1b[31mred"], "source": "test"})
    assert main(["data", "info", str(tmp_path / "d"), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "a\\nb=2" in out and "\\x1b[31mred=2" in out and out.count("\n") == 6


def test_files_and_directories_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        d = write_noise_dataset(tmp_path / "d", 4, 4)
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert oct((d / "train").stat().st_mode & 0o777) == "0o755" and oct((d / "train" / "meta.json").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "f.txt").stat().st_mode & 0o777) == "0o644"


def test_misleading_messages_are_fixed(tmp_path):
    (tmp_path / "hello.npz").write_text("hello")
    with pytest.raises(DataError, match=r"hello.npz: not a readable .npz of plain arrays \(File is not a zip file\)"):
        import_source(tmp_path / "hello.npz", tmp_path / "o")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 8, 8, 3), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match=rf"^{tmp_path}/o/train: the dataset is empty$"):
        import_source(tmp_path / "empty.npz", tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npz", "hello.npz"]
    with pytest.raises(DataError, match="not a readable pickle"):
        safe_load(pickle.dumps([1, 2])[:-3])
