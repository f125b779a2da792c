"""Packaging: `datasets`, `conventional` and the CUDA sources live inside the stylenas namespace,
for a wheel (`pip install .`) and for the editable install (`pip install -e .`)."""
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from PIL import Image

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

    # the installed console command: every subcommand's help, and a real prepare-data run
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    command = venv / "bin" / "stylenas"
    assert command.is_file(), "the wheel installs no 'stylenas' command"
    listed = subprocess.run([str(command), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    for name in ("fid", "prepare-data", "search", "make-demo-data"):
        assert name in listed.stdout
    fid_help = subprocess.run([str(command), "fid", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert fid_help.returncode == 0 and "Usage: stylenas fid" in fid_help.stdout, fid_help.stderr
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        Image.new("RGB", (20 + index, 16), (40 * index, 90, 200)).save(images / f"{index}.png")
    out = tmp_path / "small.lmdb"
    run = subprocess.run([str(command), "prepare-data", str(images), "--out", str(out), "--size", "8",
                          "--workers", "1"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; from stylenas.datasets import "
                            "LMDBImages; d = LMDBImages(sys.argv[1]); print(len(d), tuple(d[0].shape))", str(out)],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert check.stdout.split() == ["3", "(3,", "8,", "8)"], check.stderr


def test_python_m_stylenas_lists_every_script(tmp_path):
    """`python -m stylenas` is the same command, and it has a subcommand for every script."""
    from stylenas.cli import COMMANDS, load_command

    out = subprocess.run([sys.executable, "-m", "stylenas", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    scripts = sorted(p.stem for p in (ROOT / "scripts").glob("*.py"))
    for script in scripts:
        source = (ROOT / "scripts" / f"{script}.py").read_text()
        wrapper = re.search(r"^from (\S+) import (\S+) as main$", source, re.M)
        assert wrapper, f"scripts/{script}.py is not a thin wrapper of a package command"
        module, attribute = wrapper.groups()
        wrapped = [name for name, target in COMMANDS.items() if target == f"{module}:{attribute}"]
        assert wrapped, f"scripts/{script}.py wraps {module}:{attribute}, which is no stylenas subcommand"
        assert wrapped[0] in out.stdout
        assert load_command(wrapped[0]).callback is not None


def test_editable_install_maps_the_top_level_folders(tmp_path):
    direct_url = metadata.distribution("stylenas").read_text("direct_url.json")
    if not direct_url or not json.loads(direct_url).get("dir_info", {}).get("editable"):
        pytest.skip("stylenas is not installed in editable mode here")
    found = probe(sys.executable, tmp_path)
    assert Path(found["datasets"]) == ROOT / "datasets" / "__init__.py"
    assert Path(found["conventional"]) == ROOT / "conventional" / "__init__.py"
    assert Path(found["csrc"]) == ROOT / "csrc"
    assert not found["top_level_datasets"] and not found["top_level_conventional"]
