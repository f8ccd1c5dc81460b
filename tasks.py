"""`invoke` in a clone: the toolkit's tasks (bootstrap/tasks.py, the same the installed
`k8s-bootstrap` runs), plus the lab's: `demo` and `lab.*`, which need the lab's Debian packages
and stay in the clone."""

from __future__ import annotations

from invoke import Collection, Context, Exit, task

from bootstrap import tasks as toolkit
from bootstrap.errors import BootstrapError
from lab import tasks as lab_tasks


@task(help={"nodes": "number of lab nodes (default 3)",
            "keep": "leave the lab running afterwards (stop it with invoke lab.down)",
            "os": f"the nodes' release: {toolkit.OS_HELP}; default el8, the seed's own",
            "kubernetes": "Kubernetes version, 1.15 to 1.37 (default 1.20.10, the seed's); "
                          "1.24 and later run on containerd (2.x from 1.36)",
            "control_planes": "control-plane nodes (1, 3, 5 or 7; default 1); with 3 the lab "
                              "has 5 nodes unless --nodes says otherwise",
            "load_balancer": "how nodes reach the API: local (the default with several "
                             "control planes), kube-vip or haproxy-keepalived (a virtual IP, "
                             "127.0.B.100 in the lab)"})
def demo(c: Context, nodes: int = 0, keep: bool = False, os: str = "el8",
         kubernetes: str = "", control_planes: int = 1, load_balancer: str = "") -> None:
    """Run `up` against a lab of simulated nodes on this machine (no VMs).

    By default the seed's CentOS 8 with Docker 20.10 and Kubernetes 1.20.10."""
    from lab import demo as lab_demo

    try:
        code = lab_demo.run(nodes or control_planes + 2, keep, os=os,
                            kubernetes=kubernetes or None, control_planes=control_planes,
                            load_balancer=load_balancer or None)
    except (BootstrapError, RuntimeError) as exc:
        raise Exit(f"demo: {exc}", code=getattr(exc, "exit_code", 1)) from None
    if code:
        raise Exit(code=code)


ns = Collection(*toolkit.ns.tasks.values(), demo)
ns.configure(toolkit.ns.configuration())
ns.add_collection(lab_tasks.ns)
