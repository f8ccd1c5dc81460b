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
# The lab's own Debian packages (sshd, sudo, dnf, rpm, createrepo_c, ...); it says what is missing.
.venv/bin/python -m lab deps
