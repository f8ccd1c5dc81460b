"""The one phase loop (bootstrap/workflow.py) and --skip-phases, pure: fake phases and facts, a
fake runner and session that record what would run on the node, in which order."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest

from bootstrap import commands, workflow
from bootstrap import facts as F
from bootstrap.cluster.init import CONFIG_FILE, init_phases
from bootstrap.cluster.reset import reset_phases
from bootstrap.commands import CommonOptions
from bootstrap.errors import CommandError, UsageError
from bootstrap.inventory import load_text
from bootstrap.plan import Install, Plan
from bootstrap.report import Reporter
from bootstrap.secrets import Secrets
from bootstrap.steps import kubelet, prepare_steps
from bootstrap.workflow import HostResult, Phase, Target

INV = load_text("nodes: [{name: m1, address: 10.0.0.1, role: master}, "
                "{name: w1, address: 10.0.0.2, role: worker}]\n")
T = Target(INV, INV.nodes[0])


@dataclass
class Opts:
    dry_run: bool = False


@dataclass
class FakeSession:
    """Records each script run; ``fail`` names the phases whose script fails."""

    fail: set[str] = field(default_factory=set)
    ran: list[str] = field(default_factory=list)
    connected: bool = False
    on_run: object = None

    def connect(self) -> None:
        self.connected = True

    def run(self, script: str, *, what: str, **kw) -> None:
        name = what.split()[1]
        self.ran.append(name)
        if callable(self.on_run):
            self.on_run(name)
        if name in self.fail:
            raise CommandError("m1", what, 1, f"error: {name} broke\n")


class FakeRunner:
    """What run_host asks of the engine's Runner: options, output, interrupt, journal, gather."""

    def __init__(self, converged: bool = True) -> None:
        self.opts = Opts()
        self.secrets = Secrets()
        self.reporter = Reporter(out=io.StringIO())
        self.interrupted = False
        self.converged = converged
        self.gathers = 0

    def journal(self, session, step):
        return lambda action: ""

    def gather(self, session, facts, last=False):
        self.gathers += 1
        return {"done": self.converged}


def phase(name: str, install: str = "", fails: bool = False) -> Phase:
    """A phase that wants one change until the fact ``done`` says it is there."""

    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        if facts.get("done"):
            return p
        if install:
            p.actions.append(Install((install,), (), f"{name} needs it", "yum"))
        p.run(f"echo {name}", "wanted")
        return p

    return Phase(name, name, lambda t: [F.command("done", "true")], plan)


def run(phases: list[Phase], session: FakeSession | None = None, runner: FakeRunner | None = None,
        **kw) -> tuple[list[tuple[str, str]], list[str]]:
    """(phase, status) in the order recorded, and the scripts the node ran, in order."""
    session = session or FakeSession()
    runner = runner or FakeRunner()
    result = HostResult("m1")
    workflow.run_host(runner, session, T, phases, result, {"done": False}, **kw)
    return [(s.name, s.status) for s in result.steps], session.ran


def test_phases_run_in_order_and_are_checked_for_convergence():
    got, ran = run([phase("a"), phase("b"), phase("c")])
    assert got == [("a", "changed"), ("b", "changed"), ("c", "changed")]
    assert ran == ["a", "b", "c"]


def test_a_failed_phase_skips_the_rest():
    got, ran = run([phase("a"), phase("b"), phase("c")], FakeSession(fail={"b"}))
    assert got == [("a", "changed"), ("b", "failed"), ("c", "skipped")]
    assert ran == ["a", "b"]


def test_a_phase_that_did_not_converge_fails():
    got, _ = run([phase("a")], runner=FakeRunner(converged=False))
    assert got == [("a", "failed")]


def test_skipped_phases_show_as_skipped_and_run_nothing():
    got, ran = run([phase("a"), phase("b"), phase("c")], skipped=frozenset({"b"}))
    assert got == [("b", "skipped"), ("a", "changed"), ("c", "changed")]
    assert ran == ["a", "c"]


def test_the_packages_transaction_runs_before_the_first_phase_that_installs():
    got, ran = run([phase("a"), phase("b", install="pkg-b"), phase("c", install="pkg-c")],
                   transaction=True, noun="step")
    assert ran == ["a", "packages", "b", "c"]
    assert got[:2] == [("a", "changed"), ("packages", "changed")]


def test_ctrl_c_during_the_transaction_starts_nothing_after_it():
    runner = FakeRunner()
    session = FakeSession()
    session.on_run = lambda name: setattr(runner, "interrupted", name == "packages")
    got, ran = run([phase("a"), phase("b", install="pkg-b"), phase("c")], session, runner,
                   transaction=True)
    assert ran == ["a", "packages"]
    assert got == [("a", "changed"), ("packages", "changed"), ("b", "not-started"),
                   ("c", "not-started")]


def test_a_dry_run_connects_to_nothing_and_runs_nothing():
    runner = FakeRunner()
    runner.opts.dry_run = True
    session = FakeSession()
    got, ran = run([phase("a"), phase("b")], session, runner)
    assert got == [("a", "changed"), ("b", "changed")] and ran == []
    assert not session.connected and runner.gathers == 0


# -- --skip-phases -------------------------------------------------------------------------------
def test_an_unknown_phase_name_is_a_usage_error_naming_the_phases():
    with pytest.raises(UsageError) as err:
        workflow.parse_skip("swapp", "prepare-nodes", commands.phase_names("prepare-nodes"))
    assert str(err.value).startswith("--skip-phases: prepare-nodes has no phase 'swapp' (did "
                                     "you mean 'swap'?); its phases: hostname, hosts")
    assert workflow.parse_skip(" swap, ,kubelet ", "prepare-nodes",
                               commands.phase_names("prepare-nodes")) == {"swap", "kubelet"}


def test_up_refuses_an_unknown_phase_before_reading_the_inventory():
    with pytest.raises(UsageError, match="up has no phase 'kubeadm-inti'"):
        commands.up(CommonOptions(inventory="/nonexistent.yaml", skip_phases="kubeadm-inti"))


def test_each_command_lists_its_real_phases_in_order():
    steps = [s.name for s in prepare_steps(pull_images=True, runtime="containerd", proxy=True)]
    assert [n for n in commands.phase_names("prepare-nodes") if n != "docker"] == steps
    assert commands.phase_names("init-master") == (
        *(p.name for p in init_phases([])), "upload-certs", "kubeadm-join", "wait-ready")
    assert commands.phase_names("reset") == ("drain", "etcd-member",
                                             *(p.name for p in reset_phases()))
    assert set(commands.phase_names("up")) >= {"swap", "kubeadm-init", "kubeadm-join"}


UNMET = [
    # (phase that runs, its need, skipped, facts, refused?)
    ("kubelet", kubelet.PACKAGES, {"kubernetes-packages"},
     {"unit:kubelet.service": {"exists": False}}, True),
    ("kubelet", kubelet.PACKAGES, {"kubernetes-packages"},
     {"unit:kubelet.service": {"exists": True}}, False),
    ("kubelet", kubelet.PACKAGES, set(), {"unit:kubelet.service": {"exists": False}}, False),
    ("kubeadm-init", CONFIG_FILE, {"kubeadm-config"},
     {"file:/etc/kubernetes/kubeadm-config.yaml": None, "kubeadm-files": set()}, True),
    ("kubeadm-init", CONFIG_FILE, {"kubeadm-config"},
     {"file:/etc/kubernetes/kubeadm-config.yaml": object(), "kubeadm-files": set()}, False),
]


@pytest.mark.parametrize(("name", "need", "skipped", "facts", "refused"), UNMET)
def test_a_phase_needing_a_skipped_one_is_refused_unless_its_work_is_there(
        name, need, skipped, facts, refused):
    from bootstrap.cluster.common import present

    facts = {present().name if k == "kubeadm-files" else k: v for k, v in facts.items()}
    needing = Phase(name, name, lambda t: [], lambda t, f: Plan(), needs=(need,))
    why = workflow.unmet(T, [needing], frozenset(skipped), facts)
    assert bool(why) == refused
    if refused:
        assert why == [f"{name} needs {need.phase} ({need.what}), which --skip-phases skips: "
                       f"run without skipping {need.phase}"]
