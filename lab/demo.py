"""`invoke demo`: the toolkit's commands against a fresh lab of 3 simulated CentOS 7 nodes."""

from __future__ import annotations

from bootstrap import commands, journal
from bootstrap.commands import CommonOptions
from lab.cluster import Lab, LabError


def run(nodes: int = 3, keep: bool = False, log_dir: str = "runs") -> int:
    """Bring up the default lab, run every cluster command that exists, tear down unless keep."""
    try:
        old = Lab.attach("default")
        if old.alive():
            print("demo: stopping the default lab left running by an earlier demo --keep")
            old.down()
    except LabError:
        pass
    lab = Lab.up(nodes, name="default")
    code = 1
    try:
        inventory = str(lab.inventory_path)
        print(f"demo: {nodes} simulated CentOS 7 nodes are up; inventory: {inventory}\n")
        print("demo: invoke prepare-nodes (preflight checks, then every node-preparation step)")
        code = commands.prepare_nodes(CommonOptions(inventory=inventory, log_dir=log_dir))
        if code == 0:
            print("\ndemo: a second run changes nothing:")
            code = commands.prepare_nodes(CommonOptions(inventory=inventory, log_dir=log_dir))
        if code == 0:
            print("\ndemo: invoke init-master (kubeadm init --config, kubeconfig, flannel)")
            code = commands.init_master(CommonOptions(inventory=inventory, log_dir=log_dir))
        if code == 0:
            print("\ndemo: invoke join-workers (fresh 15-minute token, never on a command line)")
            code = commands.join_workers(CommonOptions(inventory=inventory, log_dir=log_dir))
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
