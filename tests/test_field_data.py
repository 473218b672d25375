"""The data the field uses, end to end: SVHN's .mat files and CIFAR-100's python batches as distributed, through
import -> poison -> train (a sweep) -> report."""
import io
import pickle
import tarfile

import numpy as np
import pytest
from test_matfile import write_mat

from pst_fast.cli import main
from pst_fast.data import load


def write_svhn(root, n_train=96, n_test=40):
    """train_32x32.mat / test_32x32.mat as distributed: X (32, 32, 3, N) uint8, y (N, 1) double stored as bytes, 10 = digit 0."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.float64)
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        x[:4, :4, :, :] = (y[:, 0] * 20).astype(np.uint8)  # a learnable corner per digit
        write_mat(root / f"{split}_32x32.mat", {"X": x, "y": y}, stored={"y": "u1"})
    return root


def write_cifar100_tar(path, n_train=200, n_test=100):
    """cifar-100-python.tar.gz as distributed: train, test and meta pickles (str keys here) inside cifar-100-python/."""
    rng = np.random.default_rng(1)
    members = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % 100
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        members[split] = {"data": data, "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                          "filenames": [f"{i}.png" for i in range(n)], "batch_label": split}
    members["meta"] = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    with tarfile.open(path, "w:gz") as tar:
        for name, d in members.items():
            raw = pickle.dumps(d, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def test_svhn_import(tmp_path, fails):
    src = write_svhn(tmp_path / "svhn")
    assert main(["data", "import", str(src), "--out", str(tmp_path / "d")]) == 0
    train = load(tmp_path / "d", "train")
    assert train.classes == [str(d) for d in range(10)] and train.meta["source_kind"] == "svhn" and train.images.shape == (96, 32, 32, 3)
    assert train.labels[:11].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # label 10 is the digit 0
    assert train.images[5, 0, 0, 0] == 120 and len(load(tmp_path / "d", "test")) == 40
    one = tmp_path / "svhn" / "test_32x32.mat"
    assert main(["data", "import", str(one), "--out", str(tmp_path / "t")]) == 0 and (tmp_path / "t" / "test").is_dir()
    write_mat(tmp_path / "bad.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0.0], [3.0]])})
    from pst_fast.data.importers import import_source
    fails("labels 1..10", import_source, tmp_path / "bad.mat", tmp_path / "o1")
    write_mat(tmp_path / "bad.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    fails("variables X and y", import_source, tmp_path / "bad.mat", tmp_path / "o2")
    write_mat(tmp_path / "bad.mat", {"X": np.zeros((32, 32, 3, 2)), "y": np.ones((2, 1))})
    fails("expected X uint8", import_source, tmp_path / "bad.mat", tmp_path / "o3")
    fails("applies to image folders", import_source, src, tmp_path / "o4", image_size=64)


@pytest.mark.parametrize("kind", ["svhn", "cifar100"])
def test_import_poison_train_report(tmp_path, kind, capsys):
    src = write_svhn(tmp_path / "svhn-mat") if kind == "svhn" else write_cifar100_tar(tmp_path / "cifar-100-python.tar.gz")
    data = tmp_path / kind
    assert main(["data", "import", str(src), "--out", str(data)]) == 0
    classes = 10 if kind == "svhn" else 100
    assert load(data, "train").num_classes == classes and load(data, "train").meta["source_kind"] == kind
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
[sweep]
datasets = ["{data}"]
models = ["fastnet-small"]
metrics = ["accuracy"]
[train]
epochs = 1
batch_size = 32
[attacks.clean]
[attacks.lsp]
[defenses.standard]
[resources]
workers = 1
""")
    db = tmp_path / "r.db"
    assert main(["sweep", "run", str(spec), "--db", str(db)]) == 0
    assert main(["report", str(db), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| clean |" in report and "| lsp |" in report and "2/2 cells done" in capsys.readouterr().out
    poison = next(tmp_path.glob("r-runs/poisons/*/train"))
    assert load(poison.parent, "train").meta["attack"] == "lsp" and load(poison.parent, "train").num_classes == classes
