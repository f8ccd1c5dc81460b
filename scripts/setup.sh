#!/bin/sh
# Set up everything on a fresh Debian/Ubuntu machine (as root): the Python environment in .venv
# with the toolkit and its dev tools, and the Debian packages the lab of simulated nodes needs.
# Safe to run again: it only installs what is missing.
set -eu
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import fabric, invoke, jinja2, yaml, pytest, pytest_timeout, hypothesis, kubernetes_validate' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    touch .venv/.installed
fi
# Wheels of the toolkit and its dependencies: the wheel test installs the built package into a
# fresh venv from these, without the network (--no-index).
if [ ! -f .venv/wheels/.complete ] || [ pyproject.toml -nt .venv/wheels/.complete ]; then
    .venv/bin/python -m pip wheel --quiet --disable-pip-version-check -w .venv/wheels .
    rm -f .venv/wheels/k8s_bootstrap-*.whl  # the test builds its own, from the tree as it is
    touch .venv/wheels/.complete
fi
# The lab's own Debian packages (sshd, sudo, dnf, rpm, createrepo_c, ...); it says what is missing.
.venv/bin/python -m lab deps
