"""The toolkit's Invoke tasks: thin wrappers that parse flags, call the library (commands.py) and
turn its errors into Exit. The installed ``k8s-bootstrap`` command (cli.py) and ``invoke`` in a
clone (the top-level tasks.py, which adds the lab's tasks) run this same collection."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection, Context, Exit, task

from . import commands, resources, stock
from .commands import CommonOptions
from .errors import BootstrapError
from .inventory import load
from .render import render_all

INVENTORY_HELP = "inventory file (YAML rendered with Jinja2); default: inventory.yaml"


OS_HELP = "el7 (CentOS 7), el8 (CentOS 8, the seed's) or el9 (Rocky 9)"


@task(help={"inventory": INVENTORY_HELP, "out": "directory to write into (default: render-out)",
            "os": f"render for stock nodes of this release: {OS_HELP}; default el7"})
def render(c: Context, inventory: str = "inventory.yaml", out: str = "render-out",
           os: str = "el7") -> None:
    """Write every managed file's desired state per node into OUT/NODE/, connecting to nothing.

    Node files and the cluster files (kubeadm configs, flannel manifest; token and CA hash as
    placeholders)."""
    if os not in stock.FLAVOURS:
        raise Exit(f"render: --os {os!r}: choose one of {', '.join(stock.FLAVOURS)}", code=2)
    try:
        inv = load(inventory)
        for note in inv.notes:
            print(f"{inventory}: note: {note}")
        written = render_all(inv, Path(out), os)
    except BootstrapError as exc:
        raise Exit(str(exc), code=exc.exit_code) from None
    print(
        f"wrote {len(written)} files for {len(inv.nodes)} nodes into {out}/ (see {out}/README.txt)"
    )


COMMON_HELP = {
    "inventory": INVENTORY_HELP,
    "limit": "only these nodes (comma-separated names)",
    "parallel": "at most this many nodes at once (default: ssh.parallel)",
    "report": "write a JSON report to this path",
    "log_dir": "per-run log directory parent (default: runs)",
}


IGNORE_HELP = "preflight errors to skip, by check name (comma-separated, or all)"


def skip_help(command: str) -> str:
    """--skip-phases' help: the command's phases, in order."""
    return ("phases not to run (comma-separated); they show as skipped, and a phase that needs "
            "what a skipped one leaves is refused unless that is there. Phases: "
            + ", ".join(commands.phase_names(command)))
BREAK_LEASE_HELP = (
    "take over a lease another run holds on a node, first stopping that run's script on the "
    "node if it still runs there. Only when that run is dead: if it still runs, both change "
    "the node at once and may undo each other's changes"
)


def _run(command, **flags) -> None:
    """Call a library command with the task's flags (empty means default); errors become Exit.
    The command takes Ctrl-C itself (Invoke's own answer is exit 1): after it, exit 130."""
    opts = CommonOptions(**{k: (v if v or isinstance(v, bool) else None) for k, v in flags.items()})
    try:
        code = command(opts)
    except BootstrapError as exc:
        raise Exit(str(exc), code=exc.exit_code) from None
    if code:
        raise Exit(code=code)


@task(help={**COMMON_HELP, "ignore": IGNORE_HELP})
def check(c: Context, inventory: str = "inventory.yaml", limit: str = "", parallel: int = 0,
          ignore: str = "", report: str = "", log_dir: str = "runs") -> None:
    """Run the preflight checks on every node (SSH, sudo, OS, CPU, memory, ...); change nothing."""
    _run(commands.check, inventory=inventory, limit=limit, parallel=parallel, ignore=ignore,
         report=report, log_dir=log_dir)


@task(help={"skip_phases": skip_help("prepare-nodes"), **COMMON_HELP, "ignore": IGNORE_HELP,
            "dry_run": "show every file diff and command; change nothing",
            "pull_images": "also pull kubeadm's images from cluster.image_repository",
            "break_lease": BREAK_LEASE_HELP})
def prepare_nodes(c: Context, inventory: str = "inventory.yaml", limit: str = "",
                  parallel: int = 0, dry_run: bool = False, ignore: str = "", report: str = "",
                  log_dir: str = "runs", pull_images: bool = False,
                  break_lease: bool = False, skip_phases: str = "") -> None:
    """Prepare every node as seed 004 does (hostname ... kubelet), idempotently, in parallel."""
    _run(commands.prepare_nodes, inventory=inventory, limit=limit, parallel=parallel,
         dry_run=dry_run, ignore=ignore, report=report, log_dir=log_dir,
         pull_images=pull_images, break_lease=break_lease, skip_phases=skip_phases)


KUBEADM_IGNORE_HELP = ("kubeadm preflight errors to skip, by kubeadm's check name "
                       "(comma-separated, or all); passed as --ignore-preflight-errors")
TIMEOUT_HELP = "seconds to wait for nodes to become Ready (default 300)"


@task(help={"skip_phases": skip_help("init-master"), "inventory": INVENTORY_HELP,
            "report": COMMON_HELP["report"],
            "log_dir": COMMON_HELP["log_dir"], "ignore": KUBEADM_IGNORE_HELP,
            "timeout": TIMEOUT_HELP,
            "dry_run": "show the kubeadm config, the flannel manifest and every command; "
                       "change nothing",
            "fetch_kubeconfig": "also save the cluster's admin kubeconfig to this local path "
                                "(mode 0600)",
            "limit": "only these control-plane nodes join (comma-separated names): how to add "
                     "one later",
            "break_lease": BREAK_LEASE_HELP})
def init_master(c: Context, inventory: str = "inventory.yaml", dry_run: bool = False,
                ignore: str = "", fetch_kubeconfig: str = "", timeout: int = 0,
                report: str = "", log_dir: str = "runs", break_lease: bool = False,
                skip_phases: str = "", limit: str = "") -> None:
    """kubeadm init on the first control plane (rendered config), $HOME/.kube/config, flannel;
    the other control planes join one at a time; wait Ready."""
    _run(commands.init_master, inventory=inventory, dry_run=dry_run, ignore=ignore,
         fetch_kubeconfig=fetch_kubeconfig, timeout=timeout, report=report, log_dir=log_dir,
         break_lease=break_lease, skip_phases=skip_phases, limit=limit)


@task(help={"skip_phases": skip_help("join-workers"), **COMMON_HELP,
            "ignore": KUBEADM_IGNORE_HELP, "timeout": TIMEOUT_HELP,
            "limit": "only these workers (comma-separated names); also how to add a new one",
            "dry_run": "show each JoinConfiguration (token hidden) and command; change nothing",
            "break_lease": BREAK_LEASE_HELP})
def join_workers(c: Context, inventory: str = "inventory.yaml", limit: str = "",
                 parallel: int = 0, dry_run: bool = False, ignore: str = "", timeout: int = 0,
                 report: str = "", log_dir: str = "runs", break_lease: bool = False,
                 skip_phases: str = "") -> None:
    """Join every worker not yet joined (fresh short-lived token, kept off command lines)."""
    _run(commands.join_workers, inventory=inventory, limit=limit, parallel=parallel,
         dry_run=dry_run, ignore=ignore, timeout=timeout, report=report, log_dir=log_dir,
         break_lease=break_lease, skip_phases=skip_phases)


@task(help={"skip_phases": skip_help("reset"), **COMMON_HELP,
            "yes": "do not ask for the cluster name (for scripts)",
            "dry_run": "show what would be drained, reset and removed; change nothing",
            "dead": "the --limit nodes cannot be reached (dead machines): delete them from the "
                    "cluster and remove their etcd members through a control plane that stays; "
                    "nothing runs on them",
            "allow_quorum_loss": "remove a control plane's etcd member even when the healthy "
                                 "members left would not be a majority (etcd stops)",
            "break_lease": BREAK_LEASE_HELP})
def reset(c: Context, inventory: str = "inventory.yaml", limit: str = "", parallel: int = 0,
          dry_run: bool = False, yes: bool = False, report: str = "",
          log_dir: str = "runs", break_lease: bool = False, skip_phases: str = "",
          dead: bool = False, allow_quorum_loss: bool = False) -> None:
    """Drain, delete and kubeadm-reset nodes, then clean what kubeadm reset leaves behind; a
    control plane leaving a cluster that keeps others has its etcd member removed first."""
    _run(commands.reset, inventory=inventory, limit=limit, parallel=parallel, dry_run=dry_run,
         yes=yes, report=report, log_dir=log_dir, break_lease=break_lease, skip_phases=skip_phases,
         dead=dead, allow_quorum_loss=allow_quorum_loss)


@task(help={"inventory": INVENTORY_HELP,
            "only": "run only these checks (comma-separated: Nodes, SystemPods, ProxyMode, "
                    "PodNetwork, DNS, NginxNodePort, seed 004's ObjectManagement, and seed "
                    "000's Pod chapter: NoCommand, "
                    "CommandArgs, Env, ContainerPort, Resources, InitContainers, "
                    "LifecycleHooks, LivenessProbes, ReadinessProbe, RestartPolicy, "
                    "NodePlacement; and, only when named here because it stops one control "
                    "plane's API server for a while, ControlPlaneFailover)",
            "keep": "leave verify's namespace and workloads in place afterwards",
            "skip": "skip these checks (comma-separated names)",
            "timeout": "seconds any one observation may take (default 60; the Pod chapter as "
                       "a whole gets twice that)",
            "dry_run": "print the commands verify would run on each host; connect to nothing",
            "report": "write the checks as JSON to this path",
            "parallel": COMMON_HELP["parallel"], "log_dir": COMMON_HELP["log_dir"]})
def verify(c: Context, inventory: str = "inventory.yaml", only: str = "", skip: str = "",
           timeout: int = 0, dry_run: bool = False, report: str = "", parallel: int = 0,
           log_dir: str = "runs", keep: bool = False) -> None:
    """Check that the built cluster works; exit 1 when a check fails, saying where to look.

    Nodes Ready at the pinned version and runtime, system pods, kube-proxy's mode, the pod
    network, DNS, seed 004's nginx NodePort test and its three ways to manage objects (run,
    create -f, apply -f), and seed 000's Pod chapter (in a namespace verify deletes afterwards;
    a node label and a hostPath directory it also removes). `--only ControlPlaneFailover`
    stops the API server of the control plane holding the endpoint, checks that the endpoint
    still answers from every node (and that the VIP moved), and starts it again."""
    _run(commands.verify, inventory=inventory, only=only, skip=skip, timeout=timeout,
         dry_run=dry_run, report=report, parallel=parallel, log_dir=log_dir, keep=keep)



@task(help={"skip_phases": skip_help("up") + " (each part skips the ones it has)",
            "inventory": INVENTORY_HELP, "parallel": COMMON_HELP["parallel"],
            "log_dir": COMMON_HELP["log_dir"], "ignore": IGNORE_HELP, "timeout": TIMEOUT_HELP,
            "kubeadm_ignore": "init-master's and join-workers' --ignore: " + KUBEADM_IGNORE_HELP,
            "from": "start at this part (prepare-nodes, init-master, join-workers, verify); "
                    "what a stopped up prints to resume",
            "only": "verify: run only these checks (see verify --help)",
            "skip": "verify: skip these checks",
            "pull_images": "prepare-nodes: also pull kubeadm's images",
            "fetch_kubeconfig": "init-master: also save admin.conf to this local path (0600)",
            "dry_run": "each part's dry run in turn (later parts plan against nodes the earlier "
                       "ones did not change); change nothing",
            "break_lease": BREAK_LEASE_HELP})
def up(c: Context, inventory: str = "inventory.yaml", parallel: int = 0, ignore: str = "",
       kubeadm_ignore: str = "", timeout: int = 0, only: str = "", skip: str = "",
       pull_images: bool = False, fetch_kubeconfig: str = "", dry_run: bool = False,
       log_dir: str = "runs", break_lease: bool = False, from_: str = "",
       skip_phases: str = "") -> None:
    """The whole cluster: prepare-nodes, init-master, join-workers, verify; stops at a failure.

    Prints what was done and the command to resume from the part that failed. Safe to run
    again: every part changes only what is not yet done."""
    _run(commands.up, inventory=inventory, parallel=parallel, ignore=ignore,
         kubeadm_ignore=kubeadm_ignore, timeout=timeout, only=only, skip=skip,
         pull_images=pull_images, fetch_kubeconfig=fetch_kubeconfig, dry_run=dry_run,
         log_dir=log_dir, break_lease=break_lease, start=from_, program=_program(),
         skip_phases=skip_phases)


@task
def example(c: Context) -> None:
    """Print inventory.example.yaml: k8s-bootstrap example > inventory.yaml, then edit it.

    Seed 004's three nodes, every key with its default or, where the release table chooses,
    as a comment."""
    print(resources.example_inventory(), end="")


def _program() -> str:
    """How the user called the toolkit (invoke in a clone, or the installed k8s-bootstrap)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name in ("invoke", "inv") else "k8s-bootstrap"


ns = Collection(render, example, check, prepare_nodes, init_master, join_workers, reset, verify,
                up)
ns.configure({"run": {"in_stream": False}})
