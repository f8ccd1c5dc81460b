"""containerd's files for the 1.x line (config version 2): the key paths of containerd's
docs/cri/config.md and docs/hosts.md, read back with a TOML parser."""

from __future__ import annotations

import pytest
import tomllib

from bootstrap import containerd as C

CRI = "io.containerd.grpc.v1.cri"


@pytest.mark.parametrize(("version", "driver", "pause", "systemd"), [
    ("1.28.2", "systemd", "3.9", True),
    ("1.30.1", "cgroupfs", "3.9", False),
    ("1.23.17", "systemd", "3.6", True),
    ("1.20.10", "systemd", "3.2", True),
])
def test_config_toml_version_2(version, driver, pause, systemd):
    cfg = tomllib.loads(C.config_toml(version, "registry.aliyuncs.com/google_containers",
                                      driver))
    assert cfg["version"] == 2
    assert cfg["disabled_plugins"] == []  # containerd.io's shipped file disables "cri"
    cri = cfg["plugins"][CRI]
    assert cri["sandbox_image"] == f"registry.aliyuncs.com/google_containers/pause:{pause}"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is systemd
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert cfg["grpc"]["address"] == "/run/containerd/containerd.sock"


@pytest.mark.parametrize(("version", "containerd", "driver", "pause", "systemd"), [
    ("1.37.0", "2.1.5", "systemd", "3.10.2", True),
    ("1.35.7", "2.2.7", "cgroupfs", "3.10.1", False),
    ("1.33.0", "2.0.11", "systemd", "3.10", True),
])
def test_config_toml_version_3_for_containerd_2(version, containerd, driver, pause, systemd):
    """The 2.x key paths of containerd docs/cri/config.md v2.0-v2.2 (RELEASE-FACTS 6): the
    image settings under io.containerd.cri.v1.images, runc under io.containerd.cri.v1.runtime;
    no version-2 key is left (2.x would migrate them, the file says what it loads as written)."""
    text = C.config_toml(version, "registry.aliyuncs.com/google_containers", driver, containerd)
    cfg = tomllib.loads(text)
    assert cfg["version"] == 3 and cfg["disabled_plugins"] == []
    images = cfg["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"] == {
        "sandbox": f"registry.aliyuncs.com/google_containers/pause:{pause}"}
    assert images["registry"] == {"config_path": "/etc/containerd/certs.d"}
    runtime = cfg["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]
    assert runtime["default_runtime_name"] == "runc"
    runc = runtime["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {"SystemdCgroup": systemd}
    assert set(cfg["plugins"]) == {"io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"}
    assert CRI not in text and "sandbox_image" not in text


@pytest.mark.parametrize(("containerd", "kubernetes", "version"), [
    (None, "1.30.1", 2), ("1.6.33", "1.30.1", 2), ("1.7.27", "1.35.0", 2), ("2.0.0", "1.30.1", 3),
    ("2.1.5", "1.37.0", 3), ("10.0.0", "1.37.0", 3),
    (None, "1.36.0", 3),  # unpinned where the release wants 2.x (ContainerdVersion checks it)
    ("1.7.27", "1.37.0", 2),  # what is pinned decides (preflight refuses it unless ignored)
])
def test_config_version_follows_the_containerd_line(containerd, kubernetes, version):
    assert C.config_version(containerd, kubernetes) == version


def test_hosts_toml_lists_mirrors_in_order_then_the_registry():
    docker = tomllib.loads(C.hosts_toml("docker.io", ["https://m1.example", "https://m2.example"]))
    assert docker["server"] == "https://registry-1.docker.io"
    assert list(docker["host"]) == ["https://m1.example", "https://m2.example"]
    assert docker["host"]["https://m1.example"]["capabilities"] == ["pull", "resolve"]
    k8s = tomllib.loads(C.hosts_toml("registry.k8s.io", ["https://k8s.m.example"]))
    assert k8s["server"] == "https://registry.k8s.io"


def test_files_one_hosts_toml_per_registry_with_mirrors_and_crictl():
    got = C.files("1.28.2", "registry.k8s.io", "systemd",
                  {"docker.io": ["https://m.example"], "quay.io": [], "ghcr.io": ["https://g"]})
    assert sorted(got) == ["/etc/containerd/certs.d/docker.io/hosts.toml",
                           "/etc/containerd/certs.d/ghcr.io/hosts.toml",
                           "/etc/containerd/config.toml", "/etc/crictl.yaml"]
    assert "runtime-endpoint: unix:///run/containerd/containerd.sock\n" in got["/etc/crictl.yaml"]


@pytest.fixture(scope="module")
def loader():
    """Debian's containerd binary: the real config loader (no daemon is started)."""
    from lab import deps

    try:
        return deps.containerd_loader(log=lambda msg: None)
    except deps.DepsError as exc:  # pragma: no cover - only where apt is missing
        pytest.skip(str(exc))


@pytest.mark.parametrize(("version", "driver", "mirrors"), [
    ("1.28.2", "systemd", {"docker.io": ["https://m.example"]}),
    ("1.23.17", "cgroupfs", {}),
])
def test_the_real_containerd_loads_the_rendered_config(loader, tmp_path, version, driver,
                                                       mirrors):
    import subprocess

    files = C.files(version, "registry.aliyuncs.com/google_containers", driver, mirrors)
    cfg = tmp_path / "config.toml"
    cfg.write_text(files[C.CONFIG])
    got = subprocess.run([str(loader), "--config", str(cfg), "config", "dump"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    dumped = tomllib.loads(got.stdout)
    assert "cri" not in dumped.get("disabled_plugins", [])
    cri = dumped["plugins"][CRI]
    assert cri["sandbox_image"].endswith(f"/pause:{C.releases.release(version).pause}")
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is (driver == "systemd")
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"


def test_the_real_containerd_refuses_a_broken_config(loader, tmp_path):
    import subprocess

    cfg = tmp_path / "config.toml"
    cfg.write_text(C.config_toml("1.28.2", "registry.k8s.io", "systemd") + "\n[[[broken\n")
    got = subprocess.run([str(loader), "--config", str(cfg), "config", "dump"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode != 0 and "failed to load TOML" in got.stderr, got.stderr
