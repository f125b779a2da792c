"""Packaging: `datasets`, `conventional` and the CUDA sources live inside the stylenas namespace,
for a wheel (`pip install .`) and for the editable install (`pip install -e .`)."""
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import importlib.util, json, stylenas.datasets, stylenas.conventional
from stylenas.ops import extension
print(json.dumps({"datasets": stylenas.datasets.__file__, "conventional": stylenas.conventional.__file__,
                  "top_level_datasets": importlib.util.find_spec("datasets") is not None,
                  "top_level_conventional": importlib.util.find_spec("conventional") is not None,
                  "csrc": str(extension.source_dir())}))
"""


def probe(python, tmp_path, extra_path=None):
    env = {"PATH": "/usr/bin:/bin"}
    if extra_path:
        env["PYTHONPATH"] = extra_path
    out = subprocess.run([str(python), "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_wheel_installs_namespaced_packages_and_csrc(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("stylenas", "datasets", "conventional", "csrc"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(src)], check=True, capture_output=True)
    (wheel,) = dist.glob("stylenas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "stylenas/datasets/__init__.py" in names and "stylenas/conventional/__init__.py" in names
    for source in (ROOT / "csrc").iterdir():
        if source.suffix in (".cpp", ".cu", ".cuh", ".h"):
            assert f"stylenas/csrc/{source.name}" in names
    assert not any(n.split("/")[0] in ("datasets", "conventional", "csrc") for n in names)

    # install into a bare venv; torch and friends come from this environment via PYTHONPATH
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    found = probe(venv / "bin" / "python", tmp_path, sysconfig.get_paths()["purelib"])
    site = str(venv)
    assert found["datasets"].startswith(site) and found["datasets"].endswith("stylenas/datasets/__init__.py")
    assert found["conventional"].startswith(site)
    assert found["csrc"].startswith(site) and Path(found["csrc"], "bindings.cpp").is_file()
    assert not found["top_level_datasets"] and not found["top_level_conventional"]


def test_editable_install_maps_the_top_level_folders(tmp_path):
    direct_url = metadata.distribution("stylenas").read_text("direct_url.json")
    if not direct_url or not json.loads(direct_url).get("dir_info", {}).get("editable"):
        pytest.skip("stylenas is not installed in editable mode here")
    found = probe(sys.executable, tmp_path)
    assert Path(found["datasets"]) == ROOT / "datasets" / "__init__.py"
    assert Path(found["conventional"]) == ROOT / "conventional" / "__init__.py"
    assert Path(found["csrc"]) == ROOT / "csrc"
    assert not found["top_level_datasets"] and not found["top_level_conventional"]
