"""The stand-ins' own Python modules, importable by host-side tests: the kubelet payload's
``k8s`` package (cluster state, kubeadm's config rules) and the stand-ins' ``labcommon``."""

from __future__ import annotations

import sys
from pathlib import Path

LAB = Path(__file__).resolve().parent
CATALOGUE = LAB / "payloads" / "containerd.io" / "usr" / "share" / "lab" / "registry-catalogue.txt"
"""The lab registry's image list (shipped in containerd.io)."""

for _p in (LAB / "standins", LAB / "payloads" / "kubelet" / "usr" / "lib" / "lab"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from k8s import kubeadm_cfg, state  # noqa: E402

__all__ = ["CATALOGUE", "LAB", "kubeadm_cfg", "state"]
