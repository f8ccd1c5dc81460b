"""Runs an operator can stop and trust, the pure parts: the lease's stale rule and refusals, the
journal's lines, progress lines, the interrupt's presses, the recap after Ctrl-C."""

from __future__ import annotations

import io
import os
import subprocess
import time

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
JUDGE = [
    # (holder, our run, pid alive?, expected take_over or "refused")
    ("no lease", None, ME, True, ""),
    ("our own lease", holder(run_id=ME.run_id), ME, True, ""),
    ("expired", holder(expires=NOW), ME, True, "20261130-070000-bbbbbb"),
    ("same client, process gone", holder(client="client-a"), ME, False,
     "20261130-070000-bbbbbb"),
    ("same client, process alive", holder(client="client-a"), ME, True, "refused"),
    ("other client, not expired", holder(), ME, False, "refused"),
    ("other client, --break-lease", holder(),
     RunInfo(**{**ME.__dict__, "break_lease": True}), True, "20261130-070000-bbbbbb"),
]


@pytest.mark.parametrize(("case", "held", "info", "alive", "want"), JUDGE,
                         ids=[c[0] for c in JUDGE])
def test_the_stale_rule(case, held, info, alive, want):
    state = lease.State(NOW, held, "gen")
    if want == "refused":
        with pytest.raises(LeaseError) as err:
            lease.judge(state, info, "node1", alive=lambda pid: alive)
        msg = str(err.value)
        assert msg.startswith("node1: another run is changing this node: prepare-nodes")
        assert "run 20261130-070000-bbbbbb, pid 777 on client-" in msg
        assert "since 2027-01-15 07:58:30 UTC, 90 s ago" in msg  # NOW - 90
        assert "--break-lease" in msg
    else:
        verdict = lease.judge(state, info, "node1", alive=lambda pid: alive)
        assert verdict.take_over == want
        assert bool(verdict.note) == bool(want)


def test_pid_alive_tells_a_dead_process_from_a_live_one():
    assert lease.pid_alive(os.getpid())
    assert not lease.pid_alive(dead_pid())
    assert not lease.pid_alive(0)


FACT_OUTPUT = [  # the node's clock comes from the clock fact, gathered with it
    ("never leased", "generation=\n", lease.State(0, None, "")),
    ("leased", "generation=r1\nrun_id=r1\ncommand=reset\nclient=c\npid=9\n"
     "started=1\nrenewed=2\nexpires=3\n",
     lease.State(0, lease.Holder("r1", "reset", "c", 9, 1, 2, 3), "r1")),
    ("released, generation kept", "generation=r1\n", lease.State(0, None, "r1")),
    ("garbled lease file", "generation=r1\nexpires=x\nrun_id=r2\n",
     lease.State(0, lease.Holder("r2", expires=0), "r1")),
]


@pytest.mark.parametrize(("case", "out", "want"), FACT_OUTPUT, ids=[c[0] for c in FACT_OUTPUT])
def test_the_lease_fact(case, out, want):
    assert lease.fact().parse(out, 0) == want


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


def test_the_lease_script_renews_with_the_command_timeout_and_a_margin():
    script = lease.acquire_script(ME, "gen0", "", ttl=1800)
    assert f"$(( _now + {1800 + lease.MARGIN} ))" in script
    assert "exec 8>&-" in script  # the flock is not held while the step runs
    assert "_gen" in script
    assert "_gen" not in lease.acquire_script(ME, None, "", ttl=1800)  # no gather, no check


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
