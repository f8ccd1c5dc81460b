"""`invoke demo`: the toolkit's commands against a fresh lab of simulated nodes, by default the
seed's own system: CentOS 8 with Docker 20.10 and Kubernetes 1.20.10."""

from __future__ import annotations

from bootstrap import commands, journal
from bootstrap.commands import CommonOptions
from lab.cluster import Lab, LabError
from lab.inventory import control_planes as set_control_planes
from lab.inventory import pin

# What the demo pins per flavour: the seed's header versions (Docker 20.10.8 on CentOS 8,
# Kubernetes 1.20.10), or the Docker 20.10 the release's docker-ce repo has. The inventory's
# own defaults stay as the README documents them.
DOCKER = {"el7": None, "el8": "20.10.8", "el9": "20.10.21"}
NAMES = {"el7": "CentOS 7", "el8": "CentOS 8", "el9": "Rocky 9"}
DEFAULT_OS = "el8"
VERIFY_ONLY: str | None = None  # every check


def run(nodes: int = 3, keep: bool = False, log_dir: str = "runs", os: str = DEFAULT_OS,
        kubernetes: str | None = None, control_planes: int = 1,
        load_balancer: str | None = None) -> int:
    """Bring up the default lab, run `up` on it (and prepare-nodes again: a no-op), show the
    nodes and the journal; tear the lab down unless keep. ``control_planes``: the first nodes
    are control planes (an HA cluster from 3), reached through ``load_balancer`` (the
    inventory's default: local)."""
    if os not in DOCKER:
        raise LabError(f"--os {os!r}: choose one of {', '.join(DOCKER)}")
    if control_planes > nodes:
        raise LabError(f"--control-planes {control_planes} needs at least as many --nodes")
    try:
        old = Lab.attach("default")
        if old.alive():
            print("demo: stopping the default lab left running by an earlier demo --keep")
            old.down()
    except LabError:
        pass
    lab = Lab.up(nodes, name="default", os=os)
    code = 1
    try:
        inventory = str(lab.inventory_path)
        modern = bool(kubernetes) and int(kubernetes.split(".")[1]) >= 24
        pin(inventory, lab.mirror_url, kubernetes, docker=None if modern else DOCKER[os])
        if control_planes != 1 or load_balancer:
            set_control_planes(inventory, control_planes, load_balancer)
        docker = (f", Kubernetes {kubernetes}, containerd" if modern
                  else f", Docker {DOCKER[os]}" if DOCKER[os] else "")
        planes = f", {control_planes} of them control planes" if control_planes != 1 else ""
        planes += f", load balancer {load_balancer}" if load_balancer else ""
        print(f"demo: {nodes} simulated {NAMES[os]} nodes ({os}{docker}{planes}) are up; "
              f"inventory: {inventory}\n")
        print("demo: invoke up (prepare-nodes: preflight checks, then every node-preparation "
              "step; init-master; join-workers; verify: nodes, system pods, proxy mode, pod "
              "network, DNS, seed 004's nginx NodePort test, seed 000's Pod chapter)")
        code = commands.up(CommonOptions(inventory=inventory, log_dir=log_dir, only=VERIFY_ONLY,
                                         program="invoke"))
        if code == 0:
            print("\ndemo: a second prepare-nodes changes nothing:")
            code = commands.prepare_nodes(CommonOptions(inventory=inventory, log_dir=log_dir))
        if code == 0:
            master = lab.nodes[0]
            print(f"\ndemo: kubectl get nodes -o wide (on {master.name}, as {lab.user})")
            out = master.run("kubectl get nodes -o wide", user=lab.user)
            print(out.stdout + out.stderr, end="")
            ready = [ln for ln in out.stdout.splitlines()[1:] if ln.split()[1:2] == ["Ready"]]
            if out.returncode != 0 or len(ready) != len(lab.nodes):
                print(f"demo: expected {len(lab.nodes)} Ready nodes")
                code = 1
            print(f"\ndemo: what the toolkit changed on {master.name}, from its journal "
                  f"({journal.PATH}), last 8 of "
                  f"{master.run(f'wc -l < {journal.PATH}').stdout.strip()} lines")
            print(master.run(f"tail -n 8 {journal.PATH} | cut -c1-150").stdout, end="")
    finally:
        if keep:
            print(f"\ndemo: the lab keeps running (--keep). Try: invoke reset -i "
                  f"{lab.inventory_path} --dry-run; stop it with: invoke lab.down")
        else:
            lab.down()
            print("\ndemo: lab stopped")
    return code
