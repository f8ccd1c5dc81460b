"""Invoke tasks: thin wrappers that parse flags, call the library, turn its errors into Exit."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, Context, Exit, task

from bootstrap.errors import BootstrapError
from bootstrap.inventory import load
from bootstrap.render import render_all

INVENTORY_HELP = "inventory file (YAML rendered with Jinja2); default: inventory.yaml"


@task(help={"inventory": INVENTORY_HELP, "out": "directory to write into (default: render-out)"})
def render(c: Context, inventory: str = "inventory.yaml", out: str = "render-out") -> None:
    """Write every managed file's desired state per node into OUT/NODE/..., without connecting."""
    try:
        inv = load(inventory)
        written = render_all(inv, Path(out))
    except BootstrapError as exc:
        raise Exit(str(exc), code=exc.exit_code) from None
    print(
        f"wrote {len(written)} files for {len(inv.nodes)} nodes into {out}/ (see {out}/README.txt)"
    )


ns = Collection(render)
ns.configure({"run": {"in_stream": False}})
