"""One package transaction per node: each step says which packages (and repo files) it needs; the
engine writes the repo files first, then installs everything missing in one ``yum install``, then
runs the steps that configure those packages. yum loads its repository metadata once, not once
per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .plan import Install, Plan, WriteFile, install_command

NAME = "packages"  # how the transaction shows in the output, the report and the journal
REPO_DIR = "/etc/yum.repos.d/"


@dataclass
class Batch:
    """The node's transaction: where it goes in the step order (before the step at ``at``), the
    steps it serves, and its plan (their repo files, then one install)."""

    at: int
    steps: list[str]
    plan: Plan = field(default_factory=Plan)

    @property
    def command(self) -> str:
        return install_command(self.plan.installs())


def batch(plans: list[tuple[str, Plan]], manager: str = "yum") -> tuple[Batch | None, list[Plan]]:
    """Move every Install, and the repo files of the steps that install, out of ``plans`` into
    one Batch run by ``manager`` (the node's yum or dnf); return it (None when nothing is to be
    installed) and the plans without them.

    Only plans before the first one with an error take part: no step after a failed one runs.
    """
    usable = []
    for _, plan in plans:
        if plan.error:
            break
        usable.append(plan)
    needing = [i for i, plan in enumerate(usable) if plan.installs()]
    if not needing:
        return None, [plan for _, plan in plans]
    b = Batch(needing[0], [plans[i][0] for i in needing])
    rest: list[Plan] = []
    repos: list[WriteFile] = []
    installs: list[Install] = []
    reasons: dict[str, list[str]] = {}
    for i, (name, plan) in enumerate(plans):
        if i not in needing:
            rest.append(plan)
            continue
        moved = [a for a in plan.actions if isinstance(a, Install)
                 or (isinstance(a, WriteFile) and a.path.startswith(REPO_DIR))]
        repos += [a for a in moved if isinstance(a, WriteFile)]
        installs += [a for a in moved if isinstance(a, Install)]
        reasons[name] = [a.why for a in moved if isinstance(a, Install) and a.why]
        rest.append(Plan([a for a in plan.actions if a not in moved], list(plan.notes),
                         plan.error))
    why = "; ".join(f"{name}: {', '.join(whys)}" for name, whys in reasons.items() if whys)
    b.plan.actions = [*repos, Install(
        tuple(p for i in installs for p in i.packages),
        tuple(dict.fromkeys(o for i in installs for o in i.options)),
        why,
        manager,
    )]
    return b, rest
