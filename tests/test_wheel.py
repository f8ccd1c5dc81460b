"""The package as an operator installs it: the wheel built from the tree, installed into a fresh
venv without the network (its dependencies from the wheels scripts/setup.sh downloaded), run
from another directory as `k8s-bootstrap`."""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".venv" / "wheels"
SHIPPED = ("pyproject.toml", "README.md", "inventory.example.yaml", "bootstrap", "templates")


def run(*argv: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env["PIP_CONFIG_FILE"] = os.devnull  # no index and no find-links but ours
    res = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                         env=env, timeout=300, stdin=subprocess.DEVNULL)
    if check:
        assert res.returncode == 0, f"{argv}: rc {res.returncode}\n{res.stdout}{res.stderr}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's bin directory, a directory that is not the clone)."""
    if not any(WHEELS.glob("fabric-*.whl")):
        pytest.fail(f"no dependency wheels in {WHEELS}: run ./scripts/setup.sh")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # only what the package ships: the build must not need the rest
    src.mkdir()
    for name in SHIPPED:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "-w", tmp / "dist", src, cwd=tmp)
    wheel = next((tmp / "dist").glob("k8s_bootstrap-*.whl"))
    run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    run(tmp / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index",
        "--find-links", WHEELS, wheel, cwd=tmp)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return tmp / "venv" / "bin", elsewhere


def test_version_and_list(installed):
    bin_dir, cwd = installed
    version = run(bin_dir / "k8s-bootstrap", "--version", cwd=cwd).stdout
    from bootstrap import __version__
    assert version.strip() == f"k8s-bootstrap {__version__}"
    listed = run(bin_dir / "k8s-bootstrap", "--list", cwd=cwd).stdout
    names = {ln.split()[0] for ln in listed.splitlines()[1:] if ln.startswith("  ") and
             not ln.startswith("   ")}
    assert names == {"check", "example", "init-master", "join-workers", "prepare-nodes",
                     "render", "reset", "up", "verify"}, listed  # no demo, no lab.*


def test_every_module_of_the_clone_is_installed(installed):
    bin_dir, cwd = installed
    clone = sorted(m.name for m in pkgutil.walk_packages([str(ROOT / "bootstrap")], "bootstrap."))
    script = ("import importlib, pkgutil, bootstrap\n"
              "names = sorted(m.name for m in pkgutil.walk_packages(bootstrap.__path__, "
              "'bootstrap.'))\n"
              "[importlib.import_module(n) for n in names]\n"
              "print('\\n'.join(names))\n"
              "import importlib.util; print('lab:', importlib.util.find_spec('lab'))")
    out = run(bin_dir / "python", "-c", script, cwd=cwd).stdout.splitlines()
    assert out[-1] == "lab: None"
    assert [n for n in out[:-1] if n != "bootstrap.templates"] == clone


def test_example_and_render_from_another_directory(installed):
    bin_dir, cwd = installed
    example = run(bin_dir / "k8s-bootstrap", "example", cwd=cwd).stdout
    assert example == (ROOT / "inventory.example.yaml").read_text()
    (cwd / "inventory.yaml").write_text(example)
    res = run(bin_dir / "k8s-bootstrap", "render", "-o", "out", cwd=cwd)
    assert "wrote " in res.stdout, res.stdout
    for name in ("master1/etc/hosts", "master1/etc/kubernetes/kubeadm-config.yaml",
                 "master1/etc/kubernetes/addons/kube-flannel.yml",
                 "node1/etc/yum.repos.d/kubernetes.repo"):
        assert (cwd / "out" / name).is_file(), name
    missing = run(bin_dir / "k8s-bootstrap", "render", "-i", "nope.yaml", cwd=cwd, check=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr + missing.stdout
    assert "nope.yaml" in missing.stderr + missing.stdout
