"""The lab's keepalived daemon (started by the stand-in /usr/sbin/keepalived, detached, in the
node's PID namespace: it ends with the node). No VRRP packet is sent: each node's daemon
publishes its instances in the lab's shared cluster dir and reads the others' records, which
stand for the adverts (lab/k8s/STATE.md "Virtual IPs", written by helper H3):

  /var/lib/lab-cluster/vip/<node>.keepalived.json
  {"node", "address", "heartbeat", "instances": [{"name", "interface", "router_id",
   "priority" (effective), "fault", "advert_int", "addresses": ["A/P", ...]}]}

rewritten every advert_int (atomic replace), removed on SIGTERM. The VRRP rule per router id:
among records fresher than 3 * advert_int + 1 s whose instance is not in fault, the highest
effective priority holds the addresses; a tie goes to the higher node address.

Semantics taken from acassen/keepalived (v2.2.8 unless said):
- vrrp_script defaults (vrrp_data.c alloc_vrrp_script): interval 1, weight 0, rise 1,
  fall 1; timeout 0 = the interval (unconfirmed: the parser's fallback); run as the script's
  `user`, else global_defs script_user (root when set so).
- rise/fall (vrrp_scheduler.c vrrp_script_child_thread): `result` counts 0..rise+fall-1 and
  starts at rise-1 (one success is enough); the script is up while result >= rise. A
  timeout is a failure ("timed_out").
- weights (vrrp_track.c initialise_track_script_state / process_script_update_priority):
  weight > 0 is added while the script is up, weight < 0 while it is down; weight 0 puts
  the instance in FAULT while down. A track_script line may override the weight
  (`NAME weight N`). Effective priority clamped to 1..254; 255 (owner) never changes.
- texts: 2.x `(NAME) Entering BACKUP STATE (init)`, `(NAME) Entering MASTER STATE`,
  `(NAME) Entering BACKUP STATE`, `(NAME) Entering FAULT STATE`, `Script `S` now returning
  N`, `VRRP_Script(S) succeeded`, `VRRP_Script(S) failed (exited with status N)`,
  `VRRP_Script(S) timed_out`; 1.3.5 `VRRP_Instance(NAME) Entering BACKUP STATE`,
  `VRRP_Instance(NAME) Transition to MASTER STATE`, `VRRP_Instance(NAME) Entering MASTER
  STATE`, `VRRP_Instance(NAME) Entering FAULT STATE`, `VRRP_Script(S) succeeded|failed|timed
  out`. Journal identifiers Keepalived (the parent) and Keepalived_vrrp (2.x; 1.3.5 the same
  names, unconfirmed).
- nopreempt is parsed but has no effect (the shared rule has none).
- SIGHUP: the real config test first; a refused config keeps the running one (its lines
  logged). Every reload rewrites /run/lab/keepalived/loaded.json (`generation`, `ok`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time

sys.path.insert(0, "/usr/lib/lab")
import labcommon as lc

REAL = "/usr/lib/lab/keepalived-real"
PIDFILE = "/run/keepalived.pid"
STATE_DIR = "/run/lab/keepalived"
LOADED = f"{STATE_DIR}/loaded.json"
CLUSTER = "/var/lib/lab-cluster"
VIP_DIR = f"{CLUSTER}/vip"
UNIT = "keepalived.service"
STOPPING = False  # set by SIGTERM


def version() -> str:
    try:
        with open("/usr/lib/lab/versions/keepalived") as fh:
            return fh.read().strip().split(":", 1)[-1].rsplit("-", 1)[0]
    except OSError:
        return "2.2.8"


VERSION = version()
OLD = VERSION.startswith("1.")


def log(ident: str, message: str) -> None:
    """A journal line of keepalived.service (journalctl -u keepalived) from IDENT."""
    os.makedirs(lc.JOURNAL, exist_ok=True)
    stamp = time.strftime("%b %d %H:%M:%S")
    with open(lc.JOURNAL / f"{UNIT}.log", "a") as fh:
        for line in message.splitlines() or [""]:
            fh.write(f"{stamp} {lc.hostname()} {ident}[{os.getpid()}]: {line}\n")


def vlog(message: str) -> None:
    log("Keepalived_vrrp", message)


# ---- config ----------------------------------------------------------------------------------

def tokens(path: str) -> list[str]:
    """The config's words, "{" and "}" split off, "\n" at each line end (`!`, `#` comments
    dropped)."""
    out: list[str] = []
    with open(path) as fh:
        for raw in fh:
            line = raw.split("!", 1)[0].split("#", 1)[0]
            line = line.replace("{", " { ").replace("}", " } ")
            try:
                out += shlex.split(line)
            except ValueError:
                out += line.split()
            out.append("\n")
    return out


def blocks(toks: list[str], i: int = 0) -> tuple[list, int]:
    """Nested items from I: a word list per line, (head words, items) per block."""
    items: list = []
    cur: list[str] = []
    while i < len(toks):
        t = toks[i]
        if t == "\n":
            if cur:
                items.append(cur)
            cur = []
        elif t == "{":
            body, i = blocks(toks, i + 1)
            items.append((cur, body))
            cur = []
        elif t == "}":
            if cur:
                items.append(cur)
            return items, i
        else:
            cur.append(t)
        i += 1
    if cur:
        items.append(cur)
    return items, i


def num(words: list[str], default: float) -> float:
    try:
        return float(words[1])
    except (IndexError, ValueError):
        return default


def parse(path: str) -> dict:
    """global_defs, vrrp_script and vrrp_instance of PATH (the real test accepted it)."""
    conf: dict = {"script_user": None, "security": False, "scripts": {}, "instances": []}
    for item in blocks(tokens(path))[0]:
        if not isinstance(item, tuple) or not item[0]:
            continue
        head, body = item
        kind = head[0]
        lines = [x for x in body if isinstance(x, list) and x]
        if kind == "global_defs":
            for w in lines:
                if w[0] == "script_user" and len(w) > 1:
                    conf["script_user"] = w[1:3]
                elif w[0] == "enable_script_security":
                    conf["security"] = True
        elif kind == "vrrp_script" and len(head) > 1:
            sc = {"script": "", "interval": 1.0, "timeout": 0.0, "weight": 0, "fall": 1,
                  "rise": 1, "user": None}
            for w in lines:
                if w[0] == "script" and len(w) > 1:
                    sc["script"] = " ".join(w[1:])
                elif w[0] in ("interval", "timeout"):
                    sc[w[0]] = num(w, sc[w[0]])
                elif w[0] in ("weight", "fall", "rise"):
                    sc[w[0]] = int(num(w, sc[w[0]]))
                elif w[0] == "user" and len(w) > 1:
                    sc["user"] = w[1:3]
            sc["timeout"] = sc["timeout"] or sc["interval"]
            conf["scripts"][head[1]] = sc
        elif kind == "vrrp_instance" and len(head) > 1:
            inst = {"name": head[1], "state": "BACKUP", "interface": "", "router_id": 0,
                    "priority": 100, "advert_int": 1.0, "nopreempt": False, "addresses": [],
                    "track": []}
            for x in body:
                if isinstance(x, tuple):
                    sub, inner = x
                    words = [w for w in inner if isinstance(w, list) and w]
                    if sub and sub[0] == "virtual_ipaddress":
                        for w in words:
                            dev = w[w.index("dev") + 1] if "dev" in w[:-1] else inst["interface"]
                            addr = w[0] if "/" in w[0] else f"{w[0]}/32"
                            inst["addresses"].append([addr, dev])
                    elif sub and sub[0] == "track_script":
                        for w in words:
                            weight = int(w[w.index("weight") + 1]) if "weight" in w[:-1] else None
                            inst["track"].append([w[0], weight])
                    continue
                w = x
                if not w:
                    continue
                if w[0] == "state" and len(w) > 1:
                    inst["state"] = w[1]
                elif w[0] == "interface" and len(w) > 1:
                    inst["interface"] = w[1]
                elif w[0] == "virtual_router_id":
                    inst["router_id"] = int(num(w, 0))
                elif w[0] == "priority":
                    inst["priority"] = int(num(w, 100))
                elif w[0] == "advert_int":
                    inst["advert_int"] = num(w, 1.0)
                elif w[0] == "nopreempt":
                    inst["nopreempt"] = True
            for a in inst["addresses"]:
                a[1] = a[1] or inst["interface"]
            conf["instances"].append(inst)
    return conf


def real_check(path: str) -> tuple[int, str]:
    res = subprocess.run([REAL, "--config-test", "-f", path], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    return res.returncode, (res.stdout + res.stderr).rstrip("\n")


# ---- scripts ---------------------------------------------------------------------------------

class Script:
    """One vrrp_script: its schedule and rise/fall state."""

    def __init__(self, name: str, sc: dict, default_user: list[str] | None) -> None:
        self.name = name
        self.sc = sc
        self.user = sc["user"] or default_user or ["root"]
        self.result = sc["rise"] - 1  # one success is enough (vrrp_scheduler.c)
        self.init = True  # no result yet
        self.last_status: int | None = None
        self.due = 0.0

    @property
    def up(self) -> bool:
        return self.result >= self.sc["rise"]

    def _demote(self) -> None:
        try:
            pw = pwd.getpwnam(self.user[0])
        except KeyError:
            os._exit(127)
        gid = pw.pw_gid
        if len(self.user) > 1:
            import grp
            with contextlib.suppress(KeyError):
                gid = grp.getgrnam(self.user[1]).gr_gid
        os.setgroups([])
        os.setgid(gid)
        os.setuid(pw.pw_uid)
        os.setsid()

    def run(self) -> None:
        """Run the script once; update result as keepalived does; log its lines."""
        sc = self.sc
        kind = None
        status = 0
        try:
            argv = shlex.split(sc["script"])
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, preexec_fn=self._demote,
                                    cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            end = time.time() + sc["timeout"]
            while True:  # short waits: a SIGTERM (STOPPING) ends the script and the round
                try:
                    status = proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    if time.time() < end and not STOPPING:
                        continue
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                if STOPPING:
                    return
                kind = "timed_out"
                break
        except (OSError, ValueError):
            status = 127
        ok = kind is None and status == 0
        if kind is None:
            if status != self.last_status and not OLD:
                vlog(f"Script `{self.name}` now returning {status}")
            self.last_status = status
            kind = "succeeded" if ok else "failed"
        rise, fall = sc["rise"], sc["fall"]
        changed = False
        if ok:
            if self.result < rise - 1:
                self.result += 1
            elif self.result != rise + fall - 1:
                if self.result < rise or self.init:
                    changed = True
                self.result = rise + fall - 1
        else:
            if self.result > rise:
                self.result -= 1
            else:
                if self.result == rise or self.init:
                    changed = True
                self.result = 0
        if changed or (self.init and ok):
            if OLD:
                text = {"timed_out": "timed out"}.get(kind, kind)
                vlog(f"VRRP_Script({self.name}) {text}")
            elif kind == "failed":
                vlog(f"VRRP_Script({self.name}) failed (exited with status {status})")
            else:
                vlog(f"VRRP_Script({self.name}) {kind}")
        self.init = False


# ---- the daemon ------------------------------------------------------------------------------

class Daemon:
    def __init__(self, path: str) -> None:
        self.path = path
        self.node = lc.hostname()
        self.address = lc.own_address() or ""
        self.record = f"{VIP_DIR}/{self.node}.keepalived.json"
        self.stop = False
        self.reload = False
        self.states: dict[str, str] = {}
        self.generation = 0
        self.load(parse(path))

    def load(self, conf: dict) -> None:
        old = getattr(self, "scripts", {})
        self.conf = conf
        self.scripts = {}
        for name, sc in conf["scripts"].items():
            s = Script(name, sc, conf["script_user"])
            if name in old and old[name].sc == sc:
                s = old[name]
            self.scripts[name] = s
        for name in list(self.states):
            if name not in {i["name"] for i in conf["instances"]}:
                del self.states[name]

    def interfaces(self) -> dict[str, bool]:
        return {ln.get("name"): bool(ln.get("up")) for ln in lc.read_links()}

    def instance_view(self, inst: dict, links: dict[str, bool]) -> dict:
        fault = not links.get(inst["interface"], False)
        prio = inst["priority"]
        total = 0
        for name, override in inst["track"]:
            s = self.scripts.get(name)
            if s is None or s.init:
                continue
            weight = s.sc["weight"] if override is None else override
            if weight == 0:
                fault = fault or not s.up
            elif (weight > 0) == s.up:  # a positive weight while up, a negative one while down
                total += weight
        eff = prio if prio == 255 else max(1, min(254, prio + total))
        return {"name": inst["name"], "interface": inst["interface"],
                "router_id": inst["router_id"], "priority": eff, "fault": fault,
                "advert_int": inst["advert_int"],
                "addresses": [a for a, _dev in inst["addresses"]]}

    def publish(self, views: list[dict]) -> None:
        if not os.path.isdir(CLUSTER):
            return
        if not views:
            self.unpublish()
            return
        if not os.path.isdir(VIP_DIR):
            with contextlib.suppress(OSError):
                os.makedirs(VIP_DIR, exist_ok=True)
                os.chmod(VIP_DIR, 0o777)
        rec = {"node": self.node, "address": self.address, "heartbeat": time.time(),
               "instances": views}
        tmp = f"{VIP_DIR}/.{self.node}.keepalived.json.{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(rec, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.record)

    def unpublish(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.record)

    def holder(self, view: dict) -> str | None:
        """The node holding VIEW's router id now (the shared VRRP rule)."""
        best: tuple | None = None
        now = time.time()
        try:
            names = os.listdir(VIP_DIR)
        except OSError:
            names = []
        for fn in names:
            if not fn.endswith(".keepalived.json") or fn.startswith("."):
                continue
            try:
                with open(os.path.join(VIP_DIR, fn)) as fh:
                    rec = json.load(fh)
            except (OSError, ValueError):
                continue
            for inst in rec.get("instances", []):
                if inst.get("router_id") != view["router_id"] or inst.get("fault"):
                    continue
                if now - float(rec.get("heartbeat", 0)) > 3 * float(inst.get("advert_int",
                                                                            1)) + 1:
                    continue
                try:
                    addr = int(ipaddress.ip_address(rec.get("address", "0.0.0.0")))
                except ValueError:
                    addr = 0
                key = (int(inst.get("priority", 0)), addr, rec.get("node"))
                if best is None or key > best:
                    best = key
        return best[2] if best else None

    def transition(self, name: str, new: str, init: bool) -> None:
        old = self.states.get(name)
        if old == new:
            return
        self.states[name] = new
        if OLD:
            if new == "MASTER":
                vlog(f"VRRP_Instance({name}) Transition to MASTER STATE")
            vlog(f"VRRP_Instance({name}) Entering {new} STATE")
        else:
            vlog(f"({name}) Entering {new} STATE" + (" (init)" if init else ""))

    def round(self) -> float:
        """Run due scripts, publish, decide states; return seconds until the next round."""
        now = time.time()
        for s in self.scripts.values():
            if STOPPING:
                return 0.05
            if now >= s.due:
                s.run()
                s.due = time.time() + s.sc["interval"]
        links = self.interfaces()
        views = [self.instance_view(i, links) for i in self.conf["instances"]]
        self.publish(views)
        for view in views:
            first = view["name"] not in self.states
            if view["fault"]:
                self.transition(view["name"], "FAULT", first)
            elif first:
                self.transition(view["name"], "BACKUP", True)
            elif self.holder(view) == self.node:
                self.transition(view["name"], "MASTER", False)
            else:
                self.transition(view["name"], "BACKUP", False)
        waits = [i["advert_int"] for i in self.conf["instances"]] or [1.0]
        waits += [max(0.0, s.due - time.time()) for s in self.scripts.values()]
        return max(0.05, min(waits))

    def do_reload(self) -> None:
        self.reload = False
        rc, output = real_check(self.path)
        ok = rc == 0 and not output
        if ok:
            log("Keepalived", "Reloading ...")
            self.load(parse(self.path))
        else:
            for line in output.splitlines():
                vlog(line)
            log("Keepalived", "lab: the new config was refused by the config test; the "
                "running config stays")
        self.generation += 1
        write_loaded(self.generation, ok)

    def serve(self) -> None:
        def term(*_: object) -> None:
            global STOPPING
            STOPPING = self.stop = True

        signal.signal(signal.SIGTERM, term)
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload", True))
        while not self.stop:
            if self.reload:
                self.do_reload()
            wait = self.round()
            end = time.time() + wait
            while not self.stop and not self.reload and time.time() < end:
                time.sleep(min(0.1, max(0.0, end - time.time())))
        self.unpublish()
        log("Keepalived", "Stopping")
        vlog("Stopped")
        log("Keepalived", f"Stopped Keepalived v{VERSION}")


def write_loaded(generation: int, ok: bool) -> None:
    os.makedirs(STATE_DIR, exist_ok=True)
    tmp = f"{LOADED}.{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump({"generation": generation, "ok": ok, "t": time.time()}, fh)
    os.replace(tmp, LOADED)


def main() -> int:
    path = sys.argv[1]
    log("Keepalived", f"Starting Keepalived v{VERSION}")
    d = Daemon(path)
    write_loaded(0, True)
    with open(f"{PIDFILE}.tmp", "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(f"{PIDFILE}.tmp", PIDFILE)
    log("Keepalived", "Starting VRRP child process")  # unconfirmed: 2.x forks the vrrp child
    try:
        d.serve()
    finally:
        d.unpublish()
        with contextlib.suppress(OSError):
            os.unlink(PIDFILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
