"""scripts/device_check.sh in its CPU mode, from a copy of the checkout without ignored files (no .device-data, no
build outputs): every check must pass and the JSON and Markdown records must be written. On a CUDA machine the same
script checks the GPU path (README.md, docs/benchmarks.md)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_check_cpu_mode_from_a_clean_checkout(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list its files")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    clean = tmp_path / "checkout"
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (clean / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, clean / f)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PST_FAST_INSTALL="0")  # pst_fast itself is installed already
    r = subprocess.run(["bash", str(clean / "scripts" / "device_check.sh"), str(out), "--mode", "cpu", "--budget", "900"], env=env,
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    record = json.loads((out / "device_check.json").read_text())
    checks = record["checks"]
    assert record["environment"]["mode"] == "cpu" and len(checks) == 8
    assert all(c["status"] == "ok" and c["rows"] for c in checks.values()), {n: c.get("error") for n, c in checks.items()}
    assert "generated JPEGs" in " ".join(checks["imagenet_224"]["notes"])  # the clean copy has no .device-data
    md = (out / "device_check.md").read_text()
    assert md.count("| ok |") == 8 and "## em_sal" in md
    assert {e["name"] for e in json.loads((out / "bench.json").read_text())} == {"augment", "pgd_step"}
    print(f"CPU mode: {record['environment']['seconds']} s")
