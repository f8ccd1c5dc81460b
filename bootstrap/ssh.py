"""The SSH engine: one persistent Fabric connection per host, sudo done right, a bounded pool.

Fabric's sharp edges are handled here and nowhere else: it accepts any host key (we load
known_hosts and refuse unknown or changed keys), has no TCP_NODELAY (we set it: 45 ms -> 18 ms a
command), ``sudo("a && b")`` elevates only ``a`` (we run whole scripts under one
``sudo sh -c``), Invoke reads stdin unless told not to, and ThreadingGroup has no concurrency cap.
"""

from __future__ import annotations

import getpass
import math
import os
import select
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paramiko
from fabric import Config, Connection

from . import journal, lease
from .errors import BootstrapError, CommandError, CommandTimeout, ConnectError, SudoError
from .interrupt import CLEANUP_TIMEOUT, Interrupt, Interrupted
from .models import SSH, Endpoint, Node
from .runinfo import RunInfo
from .secrets import Secrets

T = TypeVar("T")

_PASSWORD_NEEDED = ("a password is required", "a terminal is required", "no tty present")
_PASSWORD_WRONG = ("incorrect password", "Sorry, try again")
KILL_AFTER = 10  # seconds between timeout's TERM and its KILL on the node
EOF_GRACE = 2.0  # seconds to wait for the output's end after the exit status (ssh.py _collect)


@dataclass(frozen=True)
class Result:
    """What a remote script returned."""

    rc: int
    stdout: str
    stderr: str
    seconds: float
    sent: float = 0.0  # when the command was sent (time.time())
    first_out: float | None = None  # when its first stdout bytes arrived (time.time())

    @property
    def ok(self) -> bool:
        return self.rc == 0


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Record a host key never seen before in known_hosts; a changed key is still refused."""

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        with self._lock:
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _Strict(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        raise _UnknownHostKey(hostname, key)


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class SudoPassword:
    """The sudo password for a run: from ``ssh.sudo_password_env`` or asked once at a terminal."""

    def __init__(
        self, env_name: str | None, secrets: Secrets, prompt: Callable[[str], str] | None = None
    ) -> None:
        self.env_name = env_name
        self.secrets = secrets
        self._prompt = prompt
        self._value: str | None = None
        self._lock = threading.Lock()
        if env_name and os.environ.get(env_name):
            self._set(os.environ[env_name])

    def _set(self, value: str) -> None:
        self._value = value
        self.secrets.add(value)

    @property
    def known(self) -> bool:
        return self._value is not None

    def get(self, host: str, user: str) -> str:
        with self._lock:
            if self._value is not None:
                return self._value
            if self.env_name:
                raise SudoError(
                    host,
                    f"sudo asks {user} for a password and environment variable "
                    f"{self.env_name} (ssh.sudo_password_env) is not set: export it",
                )
            prompt = self._prompt
            if prompt is None and sys.stdin.isatty():
                prompt = getpass.getpass
            if prompt is None:
                raise SudoError(
                    host,
                    f"sudo asks {user} for a password: set ssh.sudo_password_env "
                    "to the name of an environment variable holding it, or allow "
                    f"NOPASSWD sudo for {user}",
                )
            self._set(prompt(f"sudo password for {user}: "))
            return self._value  # type: ignore[return-value]


def _open(login: Endpoint, cfg: SSH, name: str, sock: _Tunnel | None = None
          ) -> paramiko.SSHClient:
    """An SSH client logged in at ``login`` (over ``sock``: a bastion's channel), the host key
    checked against known_hosts under ssh.host_key_policy; each failure a ConnectError that
    says what to fix."""
    known_hosts = Path(os.path.expanduser(cfg.known_hosts))
    kwargs: dict = {"look_for_keys": False, "allow_agent": False,
                    "banner_timeout": cfg.connect_timeout, "auth_timeout": cfg.connect_timeout,
                    "timeout": cfg.connect_timeout}
    if login.key_file:
        key_file = os.path.expanduser(login.key_file)
        if not os.path.exists(key_file):
            raise ConnectError(name, f"SSH key file {login.key_file} does not exist "
                               "(set ssh.key_file in the inventory)")
        try:  # loaded here, by its own type: paramiko's key_filename tries every type and
            # reports the last one's parse error ("expected OPENSSH key") for a refused key
            kwargs["pkey"] = paramiko.PKey.from_path(key_file)
        except paramiko.PasswordRequiredException:
            raise ConnectError(name, f"SSH key file {login.key_file} is encrypted: load it into "
                               "ssh-agent and set its key_file to null") from None
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise ConnectError(name, f"cannot read SSH key file {login.key_file}: {exc}"
                               ) from None
    else:
        kwargs.update(look_for_keys=True, allow_agent=True)
    if sock is not None:
        kwargs["sock"] = sock
    client = paramiko.SSHClient()
    if known_hosts.exists():
        try:
            client.load_host_keys(str(known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise ConnectError(name, f"cannot read known_hosts {known_hosts}: {exc}") from None
    elif cfg.host_key_policy == "strict":
        raise ConnectError(
            name,
            f"known_hosts file {cfg.known_hosts} does not exist: "
            "add the node's host key there (ssh-keyscan, then verify it) or "
            "set ssh.host_key_policy: accept-new",
        )
    client.set_missing_host_key_policy(
        _AcceptNew(known_hosts) if cfg.host_key_policy == "accept-new" else _Strict()
    )
    where = login.where
    started = time.monotonic()
    try:
        client.connect(login.host, port=login.port, username=login.user, **kwargs)
    except _UnknownHostKey as exc:
        raise ConnectError(
            name,
            f"unknown host key for {exc.hostname} "
            f"({exc.key.get_name()}, not in {cfg.known_hosts}): verify it and "
            "add it, or set ssh.host_key_policy: accept-new",
        ) from None
    except paramiko.BadHostKeyException as exc:
        raise ConnectError(
            name,
            f"HOST KEY CHANGED for {exc.hostname}: the key offered "
            f"does not match {cfg.known_hosts}. If the node was reinstalled, "
            f"remove its old line (ssh-keygen -R {exc.hostname}); otherwise "
            "suspect an attack",
        ) from None
    except paramiko.AuthenticationException as exc:
        raise ConnectError(
            name, f"{where}: authentication failed ({exc}); check ssh.user and ssh.key_file",
        ) from None
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        # Its own text ("Unable to connect to port 22 on ...") hides the reason.
        reasons = sorted({e.strerror or str(e) for e in exc.errors.values()})
        raise ConnectError(name, f"{where}: cannot connect: {'; '.join(reasons) or exc}"
                           ) from None
    except TimeoutError:
        raise ConnectError(
            name, f"{where}: no answer within {cfg.connect_timeout:g}s (ssh.connect_timeout)",
        ) from None
    except (OSError, paramiko.SSHException, EOFError) as exc:
        if isinstance(exc, paramiko.SSHException) and \
                time.monotonic() - started >= cfg.connect_timeout:
            # A banner that never came surfaces as "No existing session" from paramiko.
            raise ConnectError(
                name, f"{where}: no SSH answer within {cfg.connect_timeout:g}s "
                "(ssh.connect_timeout)",
            ) from None
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConnectError(name, f"{where}: cannot connect: {reason}") from None
    return client


class _Tunnel:
    """A bastion's channel as a node connection's socket, whose sends the close never overtakes.
    paramiko's Channel sends outside its lock, so a close from another thread (a node's
    connection given up, its banner late under load) could send CHANNEL_CLOSE before the data;
    OpenSSH then drops the whole bastion connection ("data packet referred to nonexistent
    channel"), and with it every node behind the bastion."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self._chan = chan
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._lock:
            return self._chan.send(data)

    def sendall(self, data: bytes) -> None:
        with self._lock:
            self._chan.sendall(data)

    def close(self) -> None:
        with self._lock:
            self._chan.close()

    def __getattr__(self, name: str):
        return getattr(self._chan, name)


class Jumps:
    """One SSH connection per bastion, shared by every node behind it (each node's connection
    is a ``direct-tcpip`` channel of it, as OpenSSH's ProxyJump). A bastion that cannot be
    reached fails every node behind it at once, with the bastion's reason."""

    def __init__(self, cfg: SSH) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._clients: dict[Endpoint, paramiko.SSHClient] = {}
        self._errors: dict[Endpoint, str] = {}

    def channel(self, jump: Endpoint, to: Endpoint, name: str) -> _Tunnel:
        """A channel from the bastion ``jump`` to ``to``'s SSH port."""
        with self._lock:  # the first node connects; the others wait for its outcome
            if jump in self._errors:
                raise ConnectError(name, self._errors[jump])
            client = self._clients.get(jump)
            transport = client.get_transport() if client else None
            if transport is None or not transport.is_active():
                try:
                    client = _open(jump, self.cfg, f"bastion {jump.host}")
                except ConnectError as exc:
                    detail = exc.detail.removeprefix(f"{jump.where}: ")
                    self._errors[jump] = (f"bastion {jump.where}: {detail} (every node "
                                          "behind it fails with it)")
                    raise ConnectError(name, self._errors[jump]) from None
                self._clients[jump] = client
                transport = client.get_transport()
                if transport is not None and hasattr(transport.sock, "setsockopt"):
                    transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert transport is not None
        try:
            return _Tunnel(transport.open_channel(
                "direct-tcpip", (to.host, to.port), ("127.0.0.1", 0),
                timeout=self.cfg.connect_timeout))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ConnectError(name, f"{to.where} via bastion {jump.where}: cannot connect: "
                               f"{reason}") from None

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


class Session:
    """One node, one SSH connection at a time (opened on first use, reopened after close())."""

    def __init__(
        self,
        node: Node,
        cfg: SSH,
        secrets: Secrets,
        password: SudoPassword,
        log: Callable[[str], None] | None = None,
        run_info: RunInfo | None = None,
        interrupt: Interrupt | None = None,
        node_lease: lease.NodeLease | None = None,
        jumps: Jumps | None = None,
    ) -> None:
        self.node = node
        self.login = node.login or Endpoint(node.address, cfg.port, cfg.user, cfg.key_file)
        self.jumps = jumps
        self.run_info = run_info
        self.interrupt = interrupt
        self.lease = node_lease
        self.cfg = cfg
        self.secrets = secrets
        self.password = password
        self.log = log or (lambda _text: None)
        self.conn: Connection | None = None
        self._use_password = password.known and self.login.user != "root"

    @property
    def name(self) -> str:
        return self.node.name

    def connect(self) -> None:
        """Open the connection (through the node's bastion, if it has one), checking the host
        key against known_hosts."""
        if self.conn is not None:
            return
        login, sock = self.login, None
        if login.jump is not None:
            if self.jumps is None:
                self.jumps = Jumps(self.cfg)
            sock = self.jumps.channel(login.jump, login, self.name)
        conn = Connection(
            login.host,
            user=login.user,
            port=login.port,
            connect_timeout=max(1, math.ceil(self.cfg.connect_timeout)),
            connect_kwargs={},
            config=Config(lazy=True),
        )
        conn.client = _open(login, self.cfg, self.name, sock)
        transport = conn.client.get_transport()
        if transport is not None:
            conn.transport = transport
            if sock is None and hasattr(transport.sock, "setsockopt"):
                transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport.set_keepalive(15)
        self.conn = conn

    def close(self) -> None:
        """Release the node's lease if this run took it, then disconnect."""
        if self.conn is not None and self.lease is not None and self.lease.taken:
            self._release()
        self._drop()

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _release(self) -> None:
        assert self.lease is not None and self.run_info is not None
        if self.lease.abandoned:  # a script of ours may still run there: let the lease expire
            return
        try:
            self.run(lease.release_script(self.run_info), what="release the lease",
                     cleanup=True, timeout=CLEANUP_TIMEOUT)
            self.lease.taken = False
        except BootstrapError as exc:
            self.log(f"could not release the lease: {exc}")

    def _command(self, script: str, privileged: bool, limit: float) -> str:
        inner = f"timeout -k {KILL_AFTER} {limit:g} sh -c {shlex.quote(script)}"
        if not privileged or self.login.user == "root":
            return inner
        if self._use_password:
            return f"sudo -S -p '' {inner}"
        return f"sudo -n {inner}"

    def journal_entry(self, step: str, change: str, backup: str | None = None) -> str:
        """Shell that records one change in the node's journal ('' when the run changes
        nothing, e.g. a dry run)."""
        if self.run_info is None or not self.run_info.changes:
            return ""
        return journal.entry(self.run_info, step, change, backup)

    def run(
        self,
        script: str,
        *,
        privileged: bool = True,
        what: str = "command",
        timeout: float | None = None,
        check: bool = False,
        stdin: str | None = None,
        sensitive: bool = False,
        readonly: bool = False,
        scratch: bool = False,
        cleanup: bool = False,
        journal: tuple[str, str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Result:
        """Run a shell script as one remote command (as root when privileged), under
        ``timeout --kill-after`` (``timeout`` seconds, default ``ssh.command_timeout``).

        ``stdin`` is fed to the script (a secret file's content never goes on a command line);
        ``sensitive`` keeps stdout out of the logs (the caller registers the secret it holds).
        ``scratch``: it changes only what this run removes again itself (verify's namespace,
        node label and scratch files): like a read, it takes no lease, is not journalled and
        is given up at once on Ctrl-C.
        Any other script that is not ``readonly`` changes the node: it first takes (or renews) the
        node's lease, and ``journal`` (step, change) is recorded on success. Ctrl-C gives up a
        read-only script at once, any other only at the second press; a ``cleanup`` runs to
        its end regardless. ``progress`` gets each line the script prints.
        """
        self.connect()
        assert self.conn is not None
        if journal is not None and self.journal_entry(*journal):
            script = f"{script}\n_rc=$?; [ $_rc != 0 ] || {self.journal_entry(*journal)}; " \
                     "exit $_rc"
        changes = privileged and not readonly and not scratch and not cleanup
        if changes and self.lease is not None and self.run_info is not None:
            script = (
                lease.acquire_script(self.run_info, self.lease.seen, self.lease.take_over,
                                     self.cfg.command_timeout)
                + script
            )
        if stdin is not None:
            # sudo -S reads the password line first; a marker makes the script skip to its data
            # whether or not sudo consumed that line.
            marker = "k8s-bootstrap-stdin-" + os.urandom(8).hex()
            script = (
                f'while IFS= read -r _l; do [ "$_l" = {marker} ] && break; done\n{script}'
            )
            stdin = f"{marker}\n{stdin}"
        taking = changes and self.lease is not None and self.run_info is not None
        if taking:  # from here on the node may hold our lease, even if the script never ends
            self.lease.taken = True
        limit = self.cfg.command_timeout if timeout is None else timeout
        source = "ssh.command_timeout" if timeout is None else "the limit for this command"
        call = _Call(what, limit, source, readonly or scratch, cleanup, sensitive,
                     None if sensitive else progress)
        result = self._exec(script, privileged, call, stdin)
        if (
            privileged
            and not self._use_password
            and self.login.user != "root"
            and result.rc != 0
            and any(s in result.stderr for s in _PASSWORD_NEEDED)
        ):
            self.password.get(self.name, self.login.user)
            self._use_password = True
            result = self._exec(script, privileged, call, stdin)
        if privileged and self._use_password and any(s in result.stderr for s in _PASSWORD_WRONG):
            raise SudoError(self.name, f"sudo rejected the password for {self.login.user}")
        if privileged and "is not in the sudoers file" in result.stderr:
            raise SudoError(
                self.name,
                f"{self.login.user} may not use sudo there: add it to "
                "sudoers (or log in as root with ssh.user: root)",
            )
        if result.rc == lease.EXIT:
            refused = lease.refusal(self.name, result.stderr)
            if refused is not None:
                raise refused
        if check and not result.ok:
            raise CommandError(self.name, what, result.rc, self.secrets.mask(result.stderr))
        return result

    def _exec(self, script: str, privileged: bool, call: _Call, data: str | None) -> Result:
        """One exec channel: feed stdin, read both streams until the exit status, giving up
        on Ctrl-C (see ``run``) or when the node outlives the timeout."""
        assert self.conn is not None
        command = self._command(script, privileged, call.limit)
        feed = ""
        if privileged and self._use_password:
            feed = self.password.get(self.name, self.login.user) + "\n"
        if data is not None:
            feed += data
        started, sent = time.monotonic(), time.time()
        self.log(f"$ {call.what}\n{self.secrets.mask(script)}")
        transport = self.conn.client.get_transport()
        try:
            if transport is None or not transport.is_active():
                raise EOFError("the SSH connection is closed")
            chan = transport.open_session(timeout=self.cfg.connect_timeout)
            chan.exec_command(command)
            if feed:
                chan.sendall(feed.encode())
            chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._drop()
            raise ConnectError(
                self.name, f"connection lost during {call.what}: {exc or type(exc).__name__}"
            ) from None
        try:
            rc, out, err, first_out = self._collect(chan, call, started)
        finally:
            chan.close()
        seconds = time.monotonic() - started
        if rc < 0:
            self._drop()
            raise ConnectError(self.name, f"connection lost during {call.what}")
        if rc in (124, 128 + 9) and seconds >= call.limit - 0.5:
            raise CommandTimeout(
                self.name,
                f"{call.what} ran out of time after {call.limit:g} s ({call.source}); "
                "it was stopped on the node",
            )
        result = Result(rc, out, err, seconds, sent, first_out)
        shown = "[stdout withheld: sensitive]" if call.sensitive else self.secrets.mask(out)
        self.log(
            f"[rc={rc} {seconds:.2f}s]\n{shown}"
            + (f"\n[stderr]\n{self.secrets.mask(err)}" if err else "")
        )
        return result

    def _collect(self, chan: paramiko.Channel, call: _Call, started: float
                 ) -> tuple[int, str, str, float | None]:
        out, err, line = bytearray(), bytearray(), bytearray()
        first_out: float | None = None
        exited: float | None = None  # when the exit status was first seen
        deadline = started + call.limit + KILL_AFTER + 15
        while True:
            while chan.recv_ready():
                chunk = chan.recv(65536)
                if first_out is None and chunk:
                    first_out = time.time()
                out += chunk
                if call.progress is not None:
                    line = _progress(line + chunk, call.progress)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            # Done at the channel's EOF, not at its exit status: sshd sends the status when the
            # script exits, while the rest of its output may still be on the way (a gather
            # under load lost its last facts so, with exit 0). A process the script left
            # running may hold its output open: then EOF_GRACE seconds after the status.
            if chan.exit_status_ready() and not chan.recv_ready() \
                    and not chan.recv_stderr_ready():
                if exited is None:
                    exited = time.monotonic()
                if chan.eof_received or chan.closed or time.monotonic() - exited > EOF_GRACE:
                    break
            if not call.cleanup and self.interrupt is not None and self.interrupt.aborts(
                call.interruptible
            ):
                if not call.interruptible and self.lease is not None:
                    self.lease.abandoned = True
                raise Interrupted(f"{self.name}: {call.what}: given up (Ctrl-C)")
            if time.monotonic() > deadline:
                self._drop()
                raise CommandTimeout(
                    self.name,
                    f"{call.what}: no answer after {call.limit:g} s ({call.source}); "
                    "connection closed",
                )
            if chan.eof_received:
                chan.status_event.wait(0.2)
            else:
                select.select([chan], [], [], 0.2)
        rc = chan.recv_exit_status()
        if not (chan.eof_received or chan.closed):
            self.log(f"[no end of output {EOF_GRACE:g} s after the exit status: a process the "
                     "script started holds it open]")
        return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), first_out


@dataclass(frozen=True)
class _Call:
    """How one remote command is run and reported."""

    what: str
    limit: float
    source: str
    interruptible: bool  # a read (or scratch work): Ctrl-C gives it up at once
    cleanup: bool
    sensitive: bool
    progress: Callable[[str], None] | None


def _progress(buf: bytearray, note: Callable[[str], None]) -> bytearray:
    """Pass the last complete non-empty line of ``buf`` to ``note``; return the rest."""
    *complete, rest = bytes(buf).split(b"\n")
    for raw in reversed(complete):
        text = raw.decode("utf-8", "replace").strip()
        if text:
            note(text)
            break
    return bytearray(rest[-4096:])


def run_pool(items: Iterable[T], work: Callable[[T], object], parallel: int) -> dict[T, object]:
    """Run ``work`` for every item with at most ``parallel`` at once.

    One item's exception never stops the others: it is returned as that item's result.
    """
    items = list(items)
    results: dict[T, object] = {}
    if not items:
        return results
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        futures = {pool.submit(work, item): item for item in items}
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                results[item] = fut.result()
            except BaseException as exc:
                results[item] = exc
    return results
