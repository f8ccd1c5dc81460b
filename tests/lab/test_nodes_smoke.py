"""Smoke test of the lab fixtures (a fast check that nodes come up and answer over SSH)."""

from __future__ import annotations

import pytest


@pytest.mark.timeout(60)
def test_lab3_answers_over_ssh(lab3):
    node = lab3.nodes[0]
    res = lab3.ssh(node, "hostname; sudo -n cat /etc/centos-release", timeout=20)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["master1", "CentOS Linux release 7.9.2009 (Core)"]
