"""The Lab object: N nodes (and maybe a bastion), their known_hosts, inventory, cluster dir and
mirror."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import lab
from lab import bastion as bastion_mod
from lab import deps, flavours, inventory, layer
from lab.node import INIT, Node, NodeError, _alive, _kill, _pids_in_ns

MAX_BLOCK = 254
RUNNING: dict[int, Lab] = {}
"""Labs this process started and has not stopped yet (for safety nets), by id()."""


class LabError(RuntimeError):
    """The lab could not start (or stop); the message says why."""


def node_names(n: int) -> list[str]:
    """master1, node1, node2, ..."""
    return ["master1"] + [f"node{i}" for i in range(1, n)]


def wait_ready(nodes: list[Node], timeout: float = 30.0) -> None:
    """Wait until every node's init has started sshd and its port accepts connections."""
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending:
        still = []
        for node in pending:
            state = node.state()
            if state == "dead":
                raise LabError(f"node {node.name} ({node.address}) died while starting:\n"
                               f"{node.console()}")
            if state != "ready" or (not node.port_closed and not _port_open(node.address)):
                still.append(node)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                names = ", ".join(f"{n.name}/{n.address}" for n in pending[:5])
                raise LabError(f"nodes not ready after {timeout:.0f}s: {names}\n"
                               f"{pending[0].console()}")
            time.sleep(0.01)


def lab_mac(address: str) -> str:
    """The MAC a lab machine answers ARP with (lab/CONTRACT.md "arping"): 52:54:00:00 and
    the address's last two bytes, as the nodes' eth0 would be told apart on a real segment."""
    return "52:54:00:00:" + ":".join(f"{int(x):02x}" for x in address.split(".")[2:])


def _port_open(address: str, port: int = 22) -> bool:
    s = socket.socket()
    s.settimeout(0.2)
    try:
        s.connect((address, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


class Lab:
    """A running lab instance living in `<root>/labs/<name>/`."""

    def __init__(self, name: str, block: int, root: Path | None = None) -> None:
        self.name = name
        self.block = block
        self.root = root or lab.lab_root()
        self.dir = self.root / "labs" / name
        self.nodes: list[Node] = []
        """The cluster nodes (master1, node1, ...); never the bastion."""
        self.bastion: Node | None = None
        """The bastion node (`bastion`, 127.0.B.10) of a lab started with `bastion=True`."""
        self.via: str | None = None
        """How the last inventory written reaches the nodes: None (directly), "bastion" or
        "ssh_config" (`write_inventory`)."""
        self.mirror = None
        self.mirror_url: str | None = None
        self.mirror_pid: int | None = None
        self.user = "lab"
        self.owner_pid = os.getpid()
        self.os = flavours.DEFAULT
        """The nodes' flavour: el7, el8 or el9 (lab/flavours.py)."""
        self.podman = False
        """True for the podman variant (el8/el9: podman, buildah, runc, podman-docker in the
        rpmdb)."""

    def __repr__(self) -> str:
        extra = " +bastion" if self.bastion else ""
        return f"<Lab {self.name} {self.os} block={self.block} nodes={len(self.nodes)}{extra}>"

    @property
    def all_nodes(self) -> list[Node]:
        """The cluster nodes and the bastion (if any): every node the lab starts and stops."""
        return [*self.nodes, *([self.bastion] if self.bastion else [])]

    # -- paths -------------------------------------------------------------------------------
    @property
    def cluster_dir(self) -> Path:
        return self.dir / "cluster"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yaml"

    @property
    def key_file(self) -> Path:
        return self.root / "keys" / "id_ed25519"

    @property
    def json_path(self) -> Path:
        return self.dir / "lab.json"

    @property
    def ssh_config_path(self) -> Path:
        """The OpenSSH client config `write_inventory(via="ssh_config")` writes."""
        return self.dir / "ssh_config"

    def _ssh_options(self) -> list[str]:
        return ["-F", "/dev/null", "-i", str(self.key_file),
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]

    def ssh_argv(self, node: Node, script: str, user: str = "lab") -> list[str]:
        """OpenSSH's client to ``node`` as ``user`` with the lab's key, checking its host key,
        and nothing from ~/.ssh: what a user's own ssh to the node looks like. In a lab with a
        bastion a cluster node is reached through it (``ssh -W``, as ProxyJump does, with the
        same options and user)."""
        argv = ["ssh", *self._ssh_options()]
        if self.bastion is not None and node is not self.bastion:
            jump = ["ssh", *self._ssh_options(), "-W", "%h:%p", f"{user}@{self.bastion.address}"]
            argv += ["-o", "ProxyCommand=" + shlex.join(jump)]
        return [*argv, f"{user}@{node.address}", script]

    def ssh(self, node: Node, script: str, user: str = "lab",
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``script`` on ``node`` over real SSH (``ssh_argv``); output captured."""
        return subprocess.run(self.ssh_argv(node, script, user), capture_output=True, text=True,
                              timeout=timeout)

    def node(self, name: str) -> Node:
        """The node called `name` (or with that address); the bastion too."""
        for n in self.all_nodes:
            if name in (n.name, n.address):
                return n
        raise KeyError(name)

    # -- up ----------------------------------------------------------------------------------
    @classmethod
    def up(cls, n: int, name: str | None = None, block: int | None = None, user: str = "lab",
           root: Path | None = None, mirror: bool = True, closed: tuple[str, ...] = (),
           timeout: float = 60.0, log=print, os: str = flavours.DEFAULT,
           podman: bool = False, bastion: bool = False) -> Lab:
        """Start a lab of `n` nodes and write its inventory.

        `name` None: a free address block B>=1 is taken and the lab is called `b<B>`;
        name "default" uses B=0. `closed`: names of nodes that start with their port closed.
        `os`: the nodes' flavour, el7 (default), el8 or el9; `podman`: the podman variant
        (el8/el9 only). `bastion`: one more node, `bastion` at 127.0.B.10 (`lab.bastion`), the
        only address the cluster nodes accept logins from; the inventory is then written with
        `via="bastion"` (lab/CONTRACT.md, "Bastion").
        """
        if not 1 <= n <= 240:
            raise LabError("a lab has 1 to 240 nodes")
        try:
            layer.variant(os, podman)
        except ValueError as exc:
            raise LabError(str(exc)) from exc
        root = (root or lab.lab_root()).resolve()
        for top in layer.TOPS:
            if root.is_relative_to(f"/{top}") and top != "var":
                raise LabError(f"the lab root {root} must not be under /{top} (nodes overlay it)")
        try:
            deps.ensure(log=log)
        except deps.DepsError as exc:
            raise LabError(str(exc)) from exc
        lay = layer.ensure(root, log=log, os_name=os, podman=podman)
        shim = None
        if bastion:
            try:
                shim = bastion_mod.shim(root)
            except bastion_mod.ShimError as exc:
                raise LabError(str(exc)) from exc
        with _locked(root / "labs" / ".lock"):
            if block is None:
                block = 0 if name == "default" else _free_block(root, bastion)
            name = name or f"b{block}"
            existing = root / "labs" / name / "lab.json"
            if existing.exists():
                old = cls.attach(name, root)
                if old.alive():
                    raise LabError(f"lab {name} is already up (python -m lab down --name {name})")
                old.down()
            if _block_in_use(root, block):
                raise LabError(f"address block 127.0.{block}.x is used by another lab")
            self = cls(name, block, root)
            self.user = user
            self.os, self.podman = os, podman
            self.dir.mkdir(parents=True, exist_ok=True)
            self.save()
        RUNNING[id(self)] = self
        try:
            self._start(n, lay, mirror, closed, timeout, log, shim)
        except BaseException:
            self.down(quiet=True)
            raise
        return self

    def _start(self, n: int, lay: Path, mirror: bool, closed: tuple[str, ...], timeout: float,
               log, shim: Path | None = None) -> None:
        self.cluster_dir.mkdir(exist_ok=True)
        init = self.dir / "init.sh"
        init.write_text(INIT)
        (self.dir / "layer").write_text(f"{lay}\n")
        if mirror:
            self._start_mirror(log)
        for i, nm in enumerate(node_names(n)):
            node = Node(self.dir, self.root, nm, f"127.0.{self.block}.{11 + i}", self.cluster_dir,
                        self.mirror_url, os=self.os)
            node.port_closed = nm in closed
            self.nodes.append(node)
        if shim is not None:
            self._add_bastion(shim, closed)
        for node in self.all_nodes:
            _check_address_free(node.address)
            node.prepare()
        (self.cluster_dir / "machines.json").write_text(json.dumps(
            {nd.address: lab_mac(nd.address) for nd in self.all_nodes}) + "\n")
        try:
            for node in self.all_nodes:
                node.spawn(lay, init)
            self.save()
            wait_ready(self.all_nodes, timeout)
        finally:
            for node in self.all_nodes:
                node.find_pid()
            self.save()
        self.known_hosts.write_text(
            "".join(f"{nd.address} {nd.host_public_key()}\n" for nd in self.all_nodes))
        self.write_inventory(self.user, via="bastion" if self.bastion else None)

    def _add_bastion(self, shim: Path, closed: tuple[str, ...]) -> None:
        """The bastion node: its sshd preloads the shim that binds its outgoing connections to
        its own address; every cluster node's sshd allows logins from that address only."""
        address = bastion_mod.address(self.block)
        node = Node(self.dir, self.root, bastion_mod.NAME, address, self.cluster_dir,
                    self.mirror_url, os=self.os)
        node.port_closed = bastion_mod.NAME in closed
        node.seed_files = {bastion_mod.SHIM_NODE_PATH: str(shim)}
        node.sshd_env = {"LD_PRELOAD": bastion_mod.SHIM_NODE_PATH, "LAB_BIND_ADDRESS": address}
        node.sshd_options = ["-o", "AllowTcpForwarding=yes"]
        for other in self.nodes:
            other.sshd_options = ["-o", f"AllowUsers=*@{address}"]
        self.bastion = node

    def _start_mirror(self, log) -> None:
        try:
            from lab.mirror import Mirror  # type: ignore[import-not-found]
        except ImportError:
            log("lab: lab/mirror.py not available yet; no mirror, no repos in the inventory")
            return
        self.mirror = Mirror(self.root)
        self.mirror.build()
        self.mirror_url = self.mirror.start()
        proc = getattr(self.mirror, "proc", None) or getattr(self.mirror, "process", None)
        self.mirror_pid = getattr(self.mirror, "pid", None) or getattr(proc, "pid", None)
        self.save()

    def write_inventory(self, user: str = "lab", via: str | None = None) -> Path:
        """(Re)write inventory.yaml for login user `user` (lab, labpw or root).

        `via` (a lab with a bastion): None, the nodes directly (which refuse such logins);
        "bastion", the same plus `ssh.bastion: {address: 127.0.B.10}`; "ssh_config", an OpenSSH
        client config `<lab dir>/ssh_config` (`Host bastion` and one `Host <node>` block per
        node with `ProxyJump bastion`) named by `ssh.config_file`, user and key only there."""
        if user not in lab.LOGIN_USERS:
            raise LabError(f"user must be one of {lab.LOGIN_USERS}")
        if via not in inventory.VIAS:
            raise LabError(f"via must be one of {inventory.VIAS}, not {via!r}")
        if via is not None and self.bastion is None:
            raise LabError(f"via={via!r} needs a lab with a bastion (Lab.up(..., bastion=True))")
        self.user, self.via = user, via
        if via == "ssh_config":
            inventory.write_ssh_config(self.ssh_config_path, self, user)
        inventory.write(self.inventory_path, self, user, via)
        self.save()
        return self.inventory_path

    # -- persistence -------------------------------------------------------------------------
    def save(self) -> None:
        data = {"name": self.name, "block": self.block, "root": str(self.root),
                "owner_pid": self.owner_pid, "user": self.user, "os": self.os,
                "podman": self.podman, "mirror_url": self.mirror_url,
                "mirror_pid": self.mirror_pid, "nodes": [n.to_json() for n in self.nodes],
                "bastion": self.bastion.to_json() if self.bastion else None, "via": self.via}
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.json_path)

    @classmethod
    def attach(cls, name: str = "default", root: Path | None = None) -> Lab:
        """The lab `name` started by this or another process (from its lab.json)."""
        root = root or lab.lab_root()
        path = root / "labs" / name / "lab.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"no lab called {name} under {root}") from exc
        self = cls(name, data["block"], root)
        self.owner_pid = data.get("owner_pid", 0)
        self.user = data.get("user", "lab")
        self.os = data.get("os", flavours.DEFAULT)
        self.podman = data.get("podman", False)
        self.mirror_url = data.get("mirror_url")
        self.mirror_pid = data.get("mirror_pid")
        self.via = data.get("via")
        for nd in [*data["nodes"], *([data["bastion"]] if data.get("bastion") else [])]:
            node = Node(self.dir, root, nd["name"], nd["address"], self.cluster_dir,
                        self.mirror_url, os=self.os)
            node.load_json(nd)
            if nd is data.get("bastion"):
                self.bastion = node
            else:
                self.nodes.append(node)
        return self

    def alive(self) -> bool:
        """True while any of its processes (nodes, bastion, mirror) runs."""
        pids = [p for nd in self.all_nodes for p in (nd.pid, nd.unshare_pid)]
        return any(p and _alive(p) for p in [*pids, self.mirror_pid])

    # -- down --------------------------------------------------------------------------------
    def down(self, keep: bool = False, timeout: float = 60.0, quiet: bool = False) -> None:
        """Stop every node and the bastion (SIGKILL to PID 1) and the mirror; check nothing is
        left. ``timeout``: killed processes may take long to go under I/O load (a real etcd's
        writes, a mount namespace's teardown): seen at over 15 s in a CI run of 4 labs."""
        every = self.all_nodes
        for node in every:
            node.kill()
        if self.mirror is not None:
            with suppress(Exception):
                self.mirror.stop()
        if self.mirror_pid:
            _kill(self.mirror_pid, 15)
        deadline = time.monotonic() + timeout
        left: list[int] = []
        while True:
            for node in every:
                if node._proc is not None:
                    node._proc.poll()
            table = _pids_in_ns()
            left = [p for nd in every for p in (nd.pid, nd.unshare_pid) if p and _alive(p)]
            left += [p for nd in every if nd.pidns for p in table.get(nd.pidns, []) if _alive(p)]
            if self.mirror_pid and _alive(self.mirror_pid):
                left.append(self.mirror_pid)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if left and not quiet:
            raise LabError(f"lab {self.name}: processes left after down: {sorted(set(left))}")
        mounts = [ln for ln in Path("/proc/self/mounts").read_text().splitlines()
                  if str(self.dir) in ln]
        if mounts and not quiet:
            raise LabError(f"lab {self.name}: mounts left after down: {mounts}")
        for node in every:
            node.pid = node.unshare_pid = None
            node._proc = None
        if not left:
            RUNNING.pop(id(self), None)
        if not keep and not left:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir.exists():
            self.save()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.down()


def _block_in_use(root: Path, block: int) -> bool:
    for path in (root / "labs").glob("*/lab.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("block") != block:
            continue
        other = Lab.attach(path.parent.name, root)
        if other.alive() or (_alive(data.get("owner_pid") or 0) and not other.nodes):
            return True
        shutil.rmtree(path.parent, ignore_errors=True)  # stale: nothing of it runs
    return False


def _free_block(root: Path, bastion: bool = False) -> int:
    for block in range(1, MAX_BLOCK + 1):
        if _block_in_use(root, block) or _port_open(f"127.0.{block}.11"):
            continue
        if bastion and _port_open(bastion_mod.address(block)):
            continue
        return block
    raise LabError("no free address block 127.0.B.x left")


def _check_address_free(address: str) -> None:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, 22))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise LabError(f"{address}:22 is already in use (another sshd? a host sshd on "
                           f"0.0.0.0:22?)") from exc
        raise
    finally:
        s.close()


__all__ = ["Lab", "LabError", "Node", "NodeError", "wait_ready"]
