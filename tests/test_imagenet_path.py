"""The ImageNet path on CPU, on JPEGs as ImageNet ships them (sides 95..1067 px, grayscale, CMYK, progressive): several
epochs through every loader, import at --image-size, in-place poisons at 224 px, training resnet18-imagenet with the poison
added in the pipeline, and the warning for a 32-px model at ImageNet resolution."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import write_mixed_jpeg_tree
from PIL import Image

from pst_fast.cli import main
from pst_fast.data import load
from pst_fast.data.folder import scan
from pst_fast.data.folder_loader import dali_available
from pst_fast.data.importers import square_view

LOADERS = ["fallback"] + (["dali"] if dali_available() else [])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_mixed_jpeg_tree(tmp_path_factory.mktemp("imagenet-like") / "tree")


EPOCHS = textwrap.dedent("""
    import sys
    import numpy as np
    from pst_fast.data.folder import scan
    from pst_fast.data.folder_loader import folder_loader
    kind, root = sys.argv[1], sys.argv[2]
    for split, shuffle in (("train", True), ("test", False)):
        s = scan(f"{root}/{split}")
        for size in (224, 64):
            loader = folder_loader(kind, s, batch_size=5, image_size=size, shuffle=shuffle, augment=shuffle, drop_last=False, workers=2)
            for epoch in range(3):
                seen = []
                for b in loader:
                    assert b.x.shape[1:] == (3, size, size) and bool(b.x.isfinite().all())
                    assert np.array_equal(b.y.numpy(), s.labels[b.idx.numpy()])
                    seen += b.idx.tolist()
                assert sorted(seen) == list(range(len(s))), (kind, split, epoch)
    print("EPOCHS_OK")
""")


@pytest.mark.parametrize("kind", LOADERS)
def test_epochs_over_mixed_jpegs_never_crash(tree, kind):
    """Three epochs of every split at 224 and 64 px, in a child process: DALI's CPU resize used to read out of bounds (a
    segmentation fault) when its pipeline ran past the plan with boxes of other images."""
    r = subprocess.run([sys.executable, "-c", EPOCHS, kind, str(tree)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "EPOCHS_OK" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_import_at_image_size(tree, tmp_path, capsys):
    assert main(["data", "import", str(tree), "--out", str(tmp_path / "mini"), "--image-size", "32"]) == 0
    ds = load(tmp_path / "mini", "train")
    files = scan(tree / "train").files
    assert ds.images.shape == (len(files), 32, 32, 3) and ds.meta["resized"]["image_size"] == 32
    for i in (0, 13, len(files) - 1):  # grayscale and CMYK files come out as RGB centre views
        with Image.open(files[i]) as im:
            assert np.array_equal(ds.images[i], square_view(im, 32))
    assert main(["data", "import", str(tree), "--out", str(tmp_path / "native")]) == 2
    assert "--image-size S imports centred" in capsys.readouterr().err


@pytest.mark.slow
def test_poisons_at_224_then_train_resnet18_imagenet_with_the_poison_in_pipeline(tree, tmp_path, capsys):
    small = {"em": ["--max-rounds", "1", "--train-steps", "1", "--steps", "1", "--batch-size", "12"], "lsp": ["--patch-size", "56"],
             "ops": [], "cuda": []}
    for attack, extra in small.items():
        out = tmp_path / attack
        assert main(["poison", "--attack", attack, "--data", str(tree), "--image-size", "224", "--out", str(out), *extra]) == 0
        meta = json.loads((out / "meta.json").read_text())
        delta = np.load(out / "delta.npy")
        assert meta["image_size"] == 224 and meta["per"] == "sample" and delta.shape == (36, 224, 224, 3) and np.abs(delta).max() > 0
    assert json.loads((tmp_path / "ops" / "meta.json").read_text())["generation"]["clipped"] > 0  # OPS's extreme pixels, declared
    for kind in LOADERS:
        run = tmp_path / f"run-{kind}"
        assert main(["train", "--data", str(tree), "--image-size", "224", "--model", "resnet18-imagenet", "--max-steps", "2",
                     "--batch-size", "6", "--epochs", "1", "--poison", str(tmp_path / "cuda"), "--loader", kind, "--out", str(run),
                     "--quiet"]) == 0
        summary = json.loads((run / "summary.json").read_text())
        assert summary["loader"] == kind and summary["poisoned"] and 0 <= summary["final_test_acc"] <= 1
    assert "warning" not in capsys.readouterr().err


def test_a_32px_model_at_imagenet_resolution_is_warned(tree, capsys):
    for model, variant in (("resnet18", "use resnet18-imagenet,"), ("fastnet-small", "use resnet18-imagenet or resnet50-imagenet,")):
        assert main(["train", "--data", str(tree), "--image-size", "128", "--model", model, "--max-steps", "1", "--batch-size", "4",
                     "--epochs", "1", "--eval-batch-size", "12", "--loader", "fallback", "--quiet"]) == 0
        lines = [l for l in capsys.readouterr().err.splitlines() if "warning" in l]
        assert len(lines) == 1 and f"--model {model} is built for 32-px inputs" in lines[0] and variant in lines[0], lines

