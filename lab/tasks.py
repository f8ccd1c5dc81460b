"""invoke tasks `lab.up` and `lab.down` (add with `ns.add_collection(lab.tasks.ns)`)."""

from __future__ import annotations

from invoke import Collection, task

from lab import cli


@task(help={"nodes": "number of nodes (default 3)", "name": "lab name (default: 'default')",
            "user": "login user in the inventory: lab, labpw or root",
            "no_mirror": "do not build/serve the yum mirror",
            "os": "node flavour: el7 (default), el8 or el9",
            "podman": "el8/el9: podman, buildah, runc and podman-docker installed",
            "bastion": "one more node, bastion (127.0.B.10), the only way in to the nodes"})
def up(c, nodes=3, name="default", user="lab", no_mirror=False, os="el7", podman=False,
       bastion=False):
    """Start a lab of simulated EL nodes and print its inventory."""
    args = ["up", "--nodes", str(nodes), "--name", name, "--user", user, "--os", os]
    if podman:
        args.append("--podman")
    if bastion:
        args.append("--bastion")
    if no_mirror:
        args.append("--no-mirror")
    rc = cli.main(args)
    if rc:
        raise SystemExit(rc)


@task(help={"name": "lab name (default: 'default')", "all": "stop every lab"})
def down(c, name="default", all=False):
    """Stop a lab started by `lab.up`."""
    rc = cli.main(["down", "--name", name] + (["--all"] if all else []))
    if rc:
        raise SystemExit(rc)


@task
def status(c):
    """List the labs under the lab root."""
    cli.main(["status"])


@task
def deps(c):
    """Check the lab's preconditions and install its Debian packages."""
    rc = cli.main(["deps"])
    if rc:
        raise SystemExit(rc)


ns = Collection("lab")
ns.add_task(up)
ns.add_task(down)
ns.add_task(status)
ns.add_task(deps)
