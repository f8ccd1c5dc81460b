"""Runs an operator can stop and trust, the pure parts: the lease's stale rule and refusals, the
journal's lines, progress lines, the interrupt's presses, the recap after Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from bootstrap import journal, lease
from bootstrap.engine import HostResult, StepResult
from bootstrap.errors import LeaseError
from bootstrap.interrupt import Interrupt, Interrupted
from bootstrap.progress import PLAIN_EVERY, PLAIN_FIRST, Progress, describe
from bootstrap.report import Reporter
from bootstrap.runinfo import RunInfo

ME = RunInfo("prepare-nodes", "20261130-071342-aaaaaa", "client-a", 4242)
NOW = 1_800_000_000


def holder(**kw) -> lease.Holder:
    base = dict(run_id="20261130-070000-bbbbbb", command="prepare-nodes", client="client-b",
                pid=777, started=NOW - 90, renewed=NOW - 30, expires=NOW + 600)
    base.update(kw)
    return lease.Holder(**base)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- the stale rule ------------------------------------------------------------------------------
OTHER = "20261130-070000-bbbbbb"
BREAK = RunInfo(**{**ME.__dict__, "break_lease": True})
MINE = dict(client="client-a")  # a lease taken from this client machine
SCRIPT = dict(script_pid=4711, script_pgid=4710, script_start=123456)
STALE = f"the lease of prepare-nodes run {OTHER} is stale (its process 777 on this machine is gone)"
STOPS = (f"--break-lease: this run stops prepare-nodes run {OTHER}'s script on the node "
         "(process group 4710) and takes over its lease")
JUDGE = [
    # (case, holder, our run, holder's process alive?, its script alive on the node?, expected:
    #  "" nothing to take over, "held"/"busy" refused, else the start of the verdict's note)
    ("no lease", None, ME, True, False, ""),
    ("our own lease", holder(run_id=ME.run_id), ME, True, True, ""),
    ("expired", holder(expires=NOW), ME, True, False, f"the lease of prepare-nodes run {OTHER} "
     "expired"),
    ("expired, its script still runs", holder(expires=NOW, **SCRIPT), ME, False, True,
     f"the lease of prepare-nodes run {OTHER} expired"),
    ("same client, process gone, no script known", holder(**MINE), ME, False, False, STALE),
    ("same client, process and script gone", holder(**MINE, **SCRIPT), ME, False, False, STALE),
    ("same client, process gone, script runs", holder(**MINE, **SCRIPT), ME, False, True, "busy"),
    ("same client, process alive", holder(**MINE), ME, True, False, "held"),
    ("same client, process alive, script runs", holder(**MINE, **SCRIPT), ME, True, True, "held"),
    ("other client, not expired", holder(), ME, False, False, "held"),
    ("other client, script runs", holder(**SCRIPT), ME, False, True, "held"),
    ("other client, --break-lease", holder(), BREAK, True, False,
     f"--break-lease: this run takes over the lease of prepare-nodes run {OTHER}"),
    ("other client, --break-lease, script runs", holder(**SCRIPT), BREAK, True, True, STOPS),
    ("same client, process gone, --break-lease, script gone", holder(**MINE, **SCRIPT), BREAK,
     False, False, STALE),
    ("same client, process gone, --break-lease, script runs", holder(**MINE, **SCRIPT), BREAK,
     False, True, STOPS),
    ("expired, --break-lease, script runs", holder(expires=NOW, **SCRIPT), BREAK, False, True,
     STOPS),
]


@pytest.mark.parametrize(("case", "held", "info", "alive", "script", "want"), JUDGE,
                         ids=[c[0] for c in JUDGE])
def test_the_stale_rule(case, held, info, alive, script, want):
    state = lease.State(NOW, held, "gen", script)
    if want in ("held", "busy"):
        with pytest.raises(LeaseError) as err:
            lease.judge(state, info, "node1", alive=lambda pid: alive)
        msg = str(err.value)
        assert "--break-lease" in msg and "Nothing was changed here" in msg
        if want == "held":
            assert msg.startswith("node1: another run is changing this node: prepare-nodes")
            assert f"run {OTHER}, pid 777 on client-" in msg
            assert "since 2027-01-15 07:58:30 UTC, 90 s ago" in msg  # NOW - 90
        else:
            assert msg == (
                f"node1: the node is busy: prepare-nodes run {OTHER} holds its lease; its "
                "process 777 on this machine is gone, but its script still runs on the node as "
                "pid 4711 since 2027-01-15 07:59:30 UTC (30 s ago). Nothing was changed here; "
                "wait for that script to end and run again, or pass --break-lease to stop it "
                "(process group 4710)")
    else:
        verdict = lease.judge(state, info, "node1", alive=lambda pid: alive)
        assert verdict.take_over == (OTHER if want else "")
        assert verdict.note.startswith(want) and bool(verdict.note) == bool(want)


def test_pid_alive_tells_a_dead_process_from_a_live_one():
    assert lease.pid_alive(os.getpid())
    assert not lease.pid_alive(dead_pid())
    assert not lease.pid_alive(0)


LEASED = "run_id=r1\ncommand=reset\nclient=c\npid=9\nstarted=1\nrenewed=2\nexpires=3\n"
RECORDED = "script_pid=41\nscript_pgid=40\nscript_start=5000\n"
FACT_OUTPUT = [  # the node's clock comes from the clock fact, gathered with it
    ("never leased", "generation=\n", lease.State(0, None, "")),
    ("leased", "generation=r1\n" + LEASED,
     lease.State(0, lease.Holder("r1", "reset", "c", 9, 1, 2, 3), "r1")),
    ("released, generation kept", "generation=r1\n", lease.State(0, None, "r1")),
    ("garbled lease file", "generation=r1\nexpires=x\nrun_id=r2\n",
     lease.State(0, lease.Holder("r2", expires=0), "r1")),
    ("an older lease: no script known", "generation=r1\n" + LEASED + "script_alive=no\n",
     lease.State(0, lease.Holder("r1", "reset", "c", 9, 1, 2, 3), "r1", False)),
    ("its script still runs", "generation=r1\n" + LEASED + RECORDED + "script_alive=yes\n",
     lease.State(0, lease.Holder("r1", "reset", "c", 9, 1, 2, 3, 41, 40, 5000), "r1", True)),
    ("its script is gone", "generation=r1\n" + LEASED + RECORDED + "script_alive=no\n",
     lease.State(0, lease.Holder("r1", "reset", "c", 9, 1, 2, 3, 41, 40, 5000), "r1", False)),
    ("alive, but no script recorded", "generation=r1\n" + LEASED + "script_alive=yes\n",
     lease.State(0, lease.Holder("r1", "reset", "c", 9, 1, 2, 3), "r1", False)),
    ("garbled script pid", "generation=r1\nrun_id=r1\nscript_pid=x\nscript_alive=yes\n",
     lease.State(0, lease.Holder("r1"), "r1", False)),
]


@pytest.mark.parametrize(("case", "out", "want"), FACT_OUTPUT, ids=[c[0] for c in FACT_OUTPUT])
def test_the_lease_fact(case, out, want):
    assert lease.fact().parse(out, 0) == want


HOLDERS = [
    ("lease file", LEASED + RECORDED, lease.Holder("r1", "reset", "c", 9, 1, 2, 3, 41, 40, 5000)),
    ("one line, as in a refusal", (LEASED + RECORDED).replace("\n", " "),
     lease.Holder("r1", "reset", "c", 9, 1, 2, 3, 41, 40, 5000)),
    ("written by an older client: no script", LEASED, lease.Holder("r1", "reset", "c", 9, 1, 2, 3)),
    ("empty script fields", LEASED + "script_pid=\nscript_pgid=\nscript_start=\n",
     lease.Holder("r1", "reset", "c", 9, 1, 2, 3)),
    ("no run id", "pid=9\nscript_pid=41\n", None),
]


@pytest.mark.parametrize(("case", "text", "want"), HOLDERS, ids=[c[0] for c in HOLDERS])
def test_parse_holder(case, text, want):
    assert lease.parse_holder(text) == want


def test_a_lease_fact_that_failed_is_none():
    assert lease.fact().parse("", 1) is None


def test_refusals_of_the_lease_script_become_named_errors():
    held = ("k8s-bootstrap-lease: held: run_id=r9 command=join-workers client=ws1 pid=31 "
            f"started={NOW - 3600} renewed={NOW} expires={NOW + 60} ")
    err = lease.refusal("node2", "some noise\n" + held + "\n", now=NOW)
    assert isinstance(err, LeaseError)
    assert "join-workers (run r9, pid 31 on ws1)" in str(err) and "60 min ago" in str(err)
    changed = lease.refusal("node2", "k8s-bootstrap-lease: changed: r7\n")
    assert "run r7 changed this node after this run read its state" in str(changed)
    assert "nothing was changed here" in str(changed)
    assert lease.refusal("node2", "exit 75 from something else\n") is None
    running = lease.refusal("node2", "k8s-bootstrap-lease: running: run_id=r9 command=reset "
                            f"client=ws1 pid=31 renewed={NOW - 120} script_pid=41 "
                            "script_pgid=40 script_start=5000 ", now=NOW)
    assert str(running).startswith("node2: the node is busy: reset run r9 holds its lease; its "
                                   "script still runs on the node as pid 41 since ")
    assert "(2 min ago)" in str(running) and "--break-lease to stop it (process group 40)" in \
        str(running)


def test_the_lease_script_renews_with_the_command_timeout_and_a_margin():
    script = lease.acquire_script(ME, "gen0", "", ttl=1800)
    assert f"$(( _now + {1800 + lease.MARGIN} ))" in script
    assert "exec 8>&-" in script  # the flock is not held while the step runs
    assert "_gen" in script
    assert "_gen" not in lease.acquire_script(ME, None, "", ttl=1800)  # no gather, no check


# The lease scripts run here on this machine's own processes (a temporary lease directory): a
# script as the toolkit runs one on a node, `timeout ... sh -c`, timeout leading its group.
SHELLS = ["sh", "bash"]  # dash here; bash is the nodes' sh


@pytest.fixture
def lease_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "run"
    for name, path in (("DIR", d), ("LEASE", d / "lease"), ("GENERATION", d / "generation"),
                       ("LOCK", d / "lock")):
        monkeypatch.setattr(lease, name, str(path))
    return d


def proc_stat(pid: int) -> tuple[str, int, int]:
    """(state, process group, start time) of a process of this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[19])


def script_gone(pid: int) -> bool:
    try:
        return proc_stat(pid)[0] in "ZXx"
    except FileNotFoundError:
        return True


@contextmanager
def node_script(ignore_term: bool = False) -> Iterator[tuple[int, int, int]]:
    """A running script as the toolkit starts one: (its sh pid, process group, start time)."""
    trap = "trap '' TERM; " if ignore_term else ""
    proc = subprocess.Popen(["timeout", "60", "sh", "-c", trap + "echo $$; sleep 60; true"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        _, pgid, start = proc_stat(pid)
        assert pgid == proc.pid != os.getpgid(0)  # timeout's own group, not this test's
        yield pid, pgid, start
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def write_lease(d: Path, expires: int, **script: int) -> None:
    d.mkdir(exist_ok=True)
    fields = dict(run_id=OTHER, command="prepare-nodes", client="client-a", pid=777,
                  started=NOW, renewed=int(time.time()), expires=expires, **script)
    (d / "lease").write_text("".join(f"{k}={v}\n" for k, v in fields.items()))


def gathered(shell: str) -> lease.State:
    out = subprocess.run([shell, "-c", lease.fact().command], capture_output=True, text=True,
                         check=True).stdout
    return lease.fact().parse(out, 0)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_lease_fact_tells_whether_the_recorded_script_still_runs(lease_dir, shell):
    later = int(time.time()) + 600
    with node_script() as (pid, pgid, start):
        write_lease(lease_dir, later, script_pid=pid, script_pgid=pgid, script_start=start)
        assert gathered(shell).script_alive
        write_lease(lease_dir, later, script_pid=pid, script_pgid=pgid, script_start=start + 1)
        assert not gathered(shell).script_alive, "a reused pid is not the script"
        write_lease(lease_dir, later)
        assert not gathered(shell).script_alive, "no script recorded"
        os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not script_gone(pid):  # it may stay a zombie: that is gone too
            assert time.monotonic() < deadline
            time.sleep(0.02)
        write_lease(lease_dir, later, script_pid=pid, script_pgid=pgid, script_start=start)
        assert not gathered(shell).script_alive


@pytest.mark.parametrize("shell", SHELLS)
def test_the_lease_script_records_its_own_process(lease_dir, shell):
    script = lease.acquire_script(ME, None, "", ttl=60) + "cat /proc/$$/stat"
    ran = subprocess.run(["timeout", "30", shell, "-c", script], capture_output=True, text=True,
                         check=True)
    fields = ran.stdout.rsplit(") ", 1)[1].split()
    held = lease.parse_holder((lease_dir / "lease").read_text())
    assert held is not None and held.run_id == ME.run_id
    assert (held.script_pid, held.script_pgid, held.script_start) == (
        int(ran.stdout.split()[0]), int(fields[2]), int(fields[19]))
    assert held.script_pgid not in (held.script_pid, os.getpgid(0))  # timeout's group


def take(shell: str, info: RunInfo) -> subprocess.CompletedProcess:
    """The lease script of a run that takes over run OTHER's lease."""
    return subprocess.run([shell, "-c", lease.acquire_script(info, None, OTHER, ttl=60)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("shell", SHELLS)
def test_taking_over_a_lease_whose_script_still_runs(lease_dir, shell):
    with node_script() as (pid, pgid, start):
        recorded = dict(script_pid=pid, script_pgid=pgid, script_start=start)
        write_lease(lease_dir, int(time.time()) + 600, **recorded)
        refused = take(shell, ME)
        assert refused.returncode == lease.EXIT
        err = lease.refusal("node1", refused.stderr)
        assert f"its script still runs on the node as pid {pid} since " in str(err)
        assert not script_gone(pid) and f"run_id={OTHER}\n" in (lease_dir / "lease").read_text()

        write_lease(lease_dir, int(time.time()) - 1, **recorded)
        assert take(shell, ME).returncode == 0, "an expired lease is taken over, its script " \
            "left alone"
        assert not script_gone(pid)

        write_lease(lease_dir, int(time.time()) + 600, **recorded)
        started = time.monotonic()
        assert take(shell, BREAK).returncode == 0
        assert script_gone(pid), "--break-lease stopped the script"
        assert time.monotonic() - started < 3, "TERM was enough: no wait for KILL"
        held = lease.parse_holder((lease_dir / "lease").read_text())
        assert held is not None and held.run_id == ME.run_id and held.script_pid != pid


@pytest.mark.parametrize("shell", SHELLS)
def test_break_lease_kills_a_script_that_ignores_term(lease_dir, shell, monkeypatch):
    monkeypatch.setattr(lease, "STOP_WAIT", 1)
    with node_script(ignore_term=True) as (pid, pgid, start):
        write_lease(lease_dir, int(time.time()) + 600, script_pid=pid, script_pgid=pgid,
                    script_start=start)
        started = time.monotonic()
        assert take(shell, BREAK).returncode == 0
        assert script_gone(pid)
        assert 1 <= time.monotonic() - started < 3


# -- the journal ---------------------------------------------------------------------------------
def test_journal_entries_are_one_tab_separated_line_each(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "DIR", str(tmp_path / "log"))
    monkeypatch.setattr(journal, "PATH", str(tmp_path / "log" / "journal.log"))
    kept = tmp_path / "hosts.k8s-bootstrap.bak"
    kept.write_text("x")
    script = "\n".join([
        journal.entry(ME, "hosts", "write /etc/hosts", str(kept)),
        journal.entry(ME, "docker", "yum install -y\tdocker-ce\n  containerd.io",
                      str(tmp_path / "absent.bak")),
        journal.entry(ME, "join-token", "create a join token (ttl 15m)"),
    ])
    subprocess.run(["sh", "-c", script], check=True)
    log = tmp_path / "log" / "journal.log"
    assert oct(log.stat().st_mode & 0o777) == "0o640"
    rows = journal.parse(log.read_text())
    assert [(r["step"], r["change"], r["backup"]) for r in rows] == [
        ("hosts", "write /etc/hosts", str(kept)),
        ("docker", "yum install -y docker-ce containerd.io", "-"),
        ("join-token", "create a join token (ttl 15m)", "-"),
    ]
    assert {r["run_id"] for r in rows} == {ME.run_id}
    assert {r["command"] for r in rows} == {"prepare-nodes"}
    assert all(time.strptime(r["time"], "%Y-%m-%dT%H:%M:%SZ") for r in rows)


def test_a_journal_entry_cannot_inject_shell(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "DIR", str(tmp_path / "log"))
    monkeypatch.setattr(journal, "PATH", str(tmp_path / "log" / "journal.log"))
    pwned = tmp_path / "pwned"
    evil = f"write /etc/x'; touch {pwned}; echo '$(touch {pwned})"
    subprocess.run(["sh", "-c", journal.entry(ME, "s", evil)], check=True)
    assert not pwned.exists()
    assert journal.parse((tmp_path / "log" / "journal.log").read_text())[0]["change"] == evil


# -- progress ------------------------------------------------------------------------------------
KUBEADM_LINES = [
    ("[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods",
     "waiting for the API server"),
    ("[preflight] Pulling images required for setting up a Kubernetes cluster",
     "preflight checks, pulling images"),
    ("[kubelet-start] Starting the kubelet", "starting the kubelet"),
    ("waiting: master1 NotReady node1 Ready", "waiting: master1 NotReady node1 Ready"),
    ("\x1b[31mred\x1b[0m text", "[31mred[0m text"),
    ("x" * 80, "x" * 57 + "..."),
]


@pytest.mark.parametrize(("line", "want"), KUBEADM_LINES)
def test_what_a_line_says_it_waits_for(line, want):
    assert describe(line) == want


def test_the_terminal_shows_the_longest_running_step_after_a_few_seconds():
    clock = [100.0]
    p = Progress(tty=True, clock=lambda: clock[0])
    init = p.start("master1", "kubeadm-init")
    clock[0] = 101.0
    p.start("node1", "docker")
    assert p.status() == ""  # nothing runs long enough yet
    init.update("[wait-control-plane] Waiting for the kubelet")
    clock[0] = 142.0
    assert p.status() == ("[master1] kubeadm-init … 42 s (waiting for the API server) "
                          "(+1 more running)")
    p.finish(init)
    assert p.status() == "[node1] docker … 41 s"


def test_plain_lines_come_after_10_s_then_every_30_s():
    clock = [0.0]
    p = Progress(tty=False, clock=lambda: clock[0])
    p.start("master1", "wait-ready")
    shown = []
    for second in range(0, 80):
        clock[0] = float(second)
        shown += [(second, line) for line in p.due()]
    assert [s for s, _ in shown] == [PLAIN_FIRST, PLAIN_FIRST + PLAIN_EVERY,
                                     PLAIN_FIRST + 2 * PLAIN_EVERY]
    assert shown[0][1] == "[master1] wait-ready … 10 s"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [False, True])
def test_a_reporter_draws_progress_only_on_a_terminal(tty):
    out = Tty() if tty else io.StringIO()
    rep = Reporter(out=out)
    rep.tick_seconds = 0.05
    clock = [0.0]
    rep.progress.clock = lambda: clock[0]
    with rep.running("master1", "kubeadm-init") as note:
        clock[0] = 60.0  # the step has run for a minute
        note("[wait-control-plane] Waiting")
        time.sleep(0.3)
        rep.print("a line in between")
    time.sleep(0.2)
    text = out.getvalue()
    assert "kubeadm-init … 60 s (waiting for the API server)" in text
    assert "a line in between\n" in text
    if tty:
        assert "\r\x1b[K" in text and text.endswith("\r\x1b[K")  # the status line is cleared
    else:
        assert "\x1b" not in text and "\r" not in text


def test_secrets_are_masked_in_progress_lines():
    out = io.StringIO()
    rep = Reporter(out=out)
    rep.secrets.add("abcdef.0123456789abcdef")
    rep.tick_seconds = 0.05
    clock = [0.0]
    rep.progress.clock = lambda: clock[0]
    with rep.running("node1", "kubeadm-join") as note:
        clock[0] = 60.0
        note("using token abcdef.0123456789abcdef")
        time.sleep(0.3)
    assert "[node1] kubeadm-join … 60 s (using token " in out.getvalue()
    assert "0123456789abcdef" not in out.getvalue()


# -- the interrupt -------------------------------------------------------------------------------
def test_presses_first_stop_new_work_and_read_only_waits_then_everything():
    said = []
    intr = Interrupt(say=said.append)
    intr.check()
    assert not intr.aborts(readonly=True)
    intr.press()
    with pytest.raises(Interrupted):
        intr.check()
    assert intr.aborts(readonly=True) and not intr.aborts(readonly=False)
    intr.press()
    assert intr.aborts(readonly=False)
    assert len(said) == 2 and "Ctrl-C again" in said[0]


def test_the_recap_after_ctrl_c_counts_done_running_and_not_started():
    out = io.StringIO()
    res = HostResult("node1", "interrupted", [
        StepResult("hostname", "ok"), StepResult("hosts", "changed"),
        StepResult("bridge-netfilter", "running", message="still running"),
        StepResult("ipvs", "not-started"), StepResult("docker", "not-started"),
    ])
    Reporter(out=out).recap({"node1": res}, "RECAP (interrupted)", interrupted=True)
    lines = out.getvalue().splitlines()
    assert lines[2].split()[:2] == ["host", "done"]
    assert lines[3].split()[:5] == ["node1", "2", "1", "2", "interrupted"]
    assert "(bridge-netfilter: still running)" in lines[3]
