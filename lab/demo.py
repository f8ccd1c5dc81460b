"""`invoke demo`: the toolkit's commands against a fresh lab of 3 simulated CentOS 7 nodes."""

from __future__ import annotations

from bootstrap import commands
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
    finally:
        if keep:
            print(f"\ndemo: the lab keeps running (--keep). Try: invoke prepare-nodes -i "
                  f"{lab.inventory_path} --dry-run; stop it with: invoke lab.down")
        else:
            lab.down()
            print("\ndemo: lab stopped")
    return code
