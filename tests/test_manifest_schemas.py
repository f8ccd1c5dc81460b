"""Rendered Kubernetes manifests validate against the API schemas of each release they target
(`kubernetes-validate` ships them from 1.25; strict: unknown fields are errors)."""

from __future__ import annotations

import kubernetes_validate as kv
import pytest
import yaml

from bootstrap import releases, schema
from bootstrap.cluster import flannel
from bootstrap.inventory import load_text

SCHEMAS = {f"1.{n}" for n in range(25, 38)}  # what kubernetes-validate 1.37 carries
NODES = "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n"
TARGETS = sorted((m for m in releases.MINORS
                  if m in SCHEMAS and (1, int(m[2:])) <= schema.MAX_K8S), key=lambda m: int(m[2:]))
"""The releases the toolkit installs that have a schema."""


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_every_release_with_a_schema_is_covered():
    assert TARGETS and TARGETS[0] == "1.25"


@pytest.mark.parametrize("minor", TARGETS)
def test_the_flannel_manifest_of_each_release_validates(minor):
    inv = load_text(f"cluster: {{kubernetes_version: '{minor}.0'}}\n" + NODES)
    docs = documents(flannel.manifest(inv))
    assert {d["kind"] for d in docs} >= {"DaemonSet", "ConfigMap", "ClusterRole"}
    for doc in docs:
        kv.validate(doc, minor, strict=True)  # raises ValidationError naming the field


@pytest.mark.parametrize("version", sorted({r[0] for r in flannel._RELEASES if r[0] > (0, 0, 0)}))
def test_every_flannel_row_validates_on_the_newest_release(version):
    tag = "v{}.{}.{}".format(*version)
    inv = load_text(f"cluster: {{kubernetes_version: '{TARGETS[-1]}.0'}}\n"
                    f"network: {{flannel_version: {tag}}}\n" + NODES)
    for doc in documents(flannel.manifest(inv)):
        kv.validate(doc, TARGETS[-1], strict=True)


def test_a_wrong_field_is_caught():
    """The validator really is strict: a misspelt field fails."""
    inv = load_text("cluster: {kubernetes_version: '1.30.0'}\n" + NODES)
    ds = next(d for d in documents(flannel.manifest(inv)) if d["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(ds, "1.30", strict=True)
