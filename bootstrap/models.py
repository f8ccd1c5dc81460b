"""Typed inventory: what the user asked for, after validation. Defaults follow seed 004."""

from __future__ import annotations

from dataclasses import dataclass, field

ALIYUN_DOCKER_CE = "https://mirrors.aliyun.com/docker-ce/linux/centos"
ALIYUN_KUBERNETES = "https://mirrors.aliyun.com/kubernetes/yum"
ALIYUN_KUBERNETES_NEW = "https://mirrors.aliyun.com/kubernetes-new/core/stable/v{minor}/rpm/"
"""pkgs.k8s.io's layout, one repo per minor, as Aliyun mirrors it; signed by
``repodata/repomd.xml.key`` (kubernetes.io blog 2023-08-15 "pkgs.k8s.io: Introducing Kubernetes
Community-Owned Package Repositories"). ``{minor}`` is filled in per release."""


VIP_KINDS = ("kube-vip", "haproxy-keepalived")
"""The load balancers that give the API a virtual IP (README "HA control planes")."""
ENDPOINT_PORTS = {"kube-vip": 6443, "haproxy-keepalived": 8443}
"""The endpoint's default port by kind (others: the API server's, 6443). kube-vip's ARP mode
hands the VIP to the API server's own port; haproxy cannot take 6443 on a control-plane node,
where kube-apiserver binds ``*:6443``."""


@dataclass(frozen=True)
class Vip:
    """``cluster.vip``: the NIC and subnet of the virtual IP (the endpoint's host)."""

    interface: str = ""
    prefix: int = 24
    router_id: int = 51
    """keepalived's virtual_router_id (VRRP VRID 1-255), unique on the subnet."""
    image: str | None = None
    """kube-vip's image; None: the release table's (releases.KUBE_VIP_IMAGE)."""


@dataclass(frozen=True)
class Cluster:
    name: str = "k8s"
    kubernetes_version: str = "1.20.10"
    image_repository: str = "registry.aliyuncs.com/google_containers"
    pod_network_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    proxy_mode: str = "ipvs"
    control_plane_endpoint: str | None = None
    load_balancer: str | None = None
    """none | local | external | kube-vip | haproxy-keepalived; None: by the inventory (below)."""
    vip: Vip | None = None  # kube-vip and haproxy-keepalived: where the virtual IP lives
    container_runtime: str | None = None  # docker | containerd; None: the release's default
    allow_cgroup_v1: bool = False  # 1.35+: kubelet failCgroupV1 false, kubeadm skips the check
    cgroup_driver: str = "systemd"  # the kubelet's and the runtime's: one setting for both
    kubectl_on_workers: str = "none"  # none | view | admin (bootstrap/cluster/worker_kubectl.py)

    @property
    def runtime(self) -> str:
        """The container runtime: the inventory's, else the release's (releases.MINORS)."""
        from .releases import release

        return self.container_runtime or release(self.kubernetes_version).runtime

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        major, minor, patch = self.kubernetes_version.split(".")
        return int(major), int(minor), int(patch)


@dataclass(frozen=True)
class SSH:
    user: str = "root"
    port: int = 22
    key_file: str | None = "~/.ssh/id_ed25519"
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_policy: str = "strict"
    connect_timeout: float = 10
    command_timeout: float = 1800  # bounds every remote command (image pulls take minutes)
    parallel: int = 20
    sudo_password_env: str | None = None
    bastion: Bastion | None = None  # a jump host every node is reached through (ProxyJump)
    config_file: str | None = None  # an OpenSSH client config to read (opt-in)
    given: frozenset[str] = frozenset()  # the keys the inventory sets (they win over the file)


@dataclass(frozen=True)
class Bastion:
    """A jump host as the inventory gives it (``ssh.bastion``, ``nodes[].ssh.bastion``); user and
    key default to the node's."""

    address: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class NodeSSH:
    """What one node's inventory entry overrides (``nodes[].ssh``); ``bastion`` False: none."""

    host: str | None = None  # what to connect to: an ssh_config alias or an address
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    bastion: Bastion | bool | None = None


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom SSH logs in, resolved (bootstrap/endpoints.py); ``jump``: the bastion
    it goes through; ``origins``: (setting, where its value came from), for the dry run."""

    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    jump: Endpoint | None = None
    origins: tuple[tuple[str, str], ...] = ()

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class NodePrep:
    ntp_servers: tuple[str, ...] = ()
    selinux: str = "disabled"
    firewall: str = "disable"
    remove_conflicting_packages: bool = False  # let dnf erase podman, runc... (--allowerasing)


@dataclass(frozen=True)
class Docker:
    version: str = "19.03.15"


@dataclass(frozen=True)
class Containerd:
    version: str | None = None  # the containerd.io pin; None: what the repo (or docker-ce) picks


DEFAULT_REGISTRIES = (("docker.io", ("https://registry.aliyuncs.com",)),)


@dataclass(frozen=True)
class Registries:
    """Mirrors per registry host (docker.io, registry.k8s.io, ghcr.io, quay.io, ...), in order."""

    mirrors: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_REGISTRIES

    def get(self, registry: str) -> tuple[str, ...]:
        return dict(self.mirrors).get(registry, ())

    def as_dict(self) -> dict[str, list[str]]:
        return {name: list(urls) for name, urls in self.mirrors}


@dataclass(frozen=True)
class Repo:
    """One yum repository the toolkit writes (a .repo section)."""

    baseurl: str
    gpgcheck: bool = True
    repo_gpgcheck: bool = False
    gpgkey: tuple[str, ...] = ()
    name: str | None = None


DEFAULT_DOCKER_CE = Repo(
    baseurl=f"{ALIYUN_DOCKER_CE}/$releasever/$basearch/stable",
    gpgcheck=True,
    gpgkey=(f"{ALIYUN_DOCKER_CE}/gpg",),
)
DEFAULT_KUBERNETES = Repo(
    baseurl=f"{ALIYUN_KUBERNETES}/repos/kubernetes-el7-x86_64/",
    gpgcheck=True,
    repo_gpgcheck=True,
    gpgkey=(f"{ALIYUN_KUBERNETES}/doc/yum-key.gpg", f"{ALIYUN_KUBERNETES}/doc/rpm-package-key.gpg"),
)
DEFAULT_KUBERNETES_PER_MINOR = Repo(
    baseurl=ALIYUN_KUBERNETES_NEW,
    gpgcheck=True,
    repo_gpgcheck=False,
    gpgkey=(f"{ALIYUN_KUBERNETES_NEW}repodata/repomd.xml.key",),
)
KUBERNETES_REPOS = {"legacy": DEFAULT_KUBERNETES, "per-minor": DEFAULT_KUBERNETES_PER_MINOR}
"""repos.kubernetes's default by the release's layout (releases.Minor.layout)."""


@dataclass(frozen=True)
class Repos:
    base: Repo | None = None
    docker_ce: Repo = DEFAULT_DOCKER_CE
    kubernetes: Repo = DEFAULT_KUBERNETES


@dataclass(frozen=True)
class Network:
    plugin: str = "flannel"
    flannel_version: str = "v0.14.0"
    flannel_registry: str | None = None


@dataclass(frozen=True)
class Verify:
    """What `invoke verify` runs its workloads with (images pulled through the registries'
    mirrors like any other)."""

    namespace: str = "k8s-bootstrap-verify"
    busybox_image: str = "docker.io/library/busybox:1.36"
    nginx_image: str = "docker.io/library/nginx:1.27"
    nginx_update_image: str = "docker.io/library/nginx:1.28"
    """ObjectManagement's ``apply -f`` changes nginxpod's image to this one (another tag)."""


CONTROL_PLANE_ROLES = ("control-plane", "master")
LOCAL_ENDPOINT = "apiserver.cluster.local:6443"
"""``load_balancer: local``'s default endpoint: a name every node's /etc/hosts resolves (the one
sealos uses; KubeKey's is lb.kubesphere.local)."""


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    role: str
    internal_address: str
    ssh: NodeSSH | None = None  # the entry's own SSH settings
    login: Endpoint | None = None  # resolved at load (bootstrap/endpoints.py)

    @property
    def is_control_plane(self) -> bool:
        """A control-plane node (role ``control-plane``, or ``master``: the seed's word)."""
        return self.role in CONTROL_PLANE_ROLES

    @property
    def roles(self) -> frozenset[str]:
        """What the node is: ``control-plane`` or ``worker``."""
        return frozenset({"control-plane" if self.is_control_plane else "worker"})


@dataclass(frozen=True)
class Inventory:
    path: str
    nodes: tuple[Node, ...]
    cluster: Cluster = field(default_factory=Cluster)
    ssh: SSH = field(default_factory=SSH)
    node_prep: NodePrep = field(default_factory=NodePrep)
    docker: Docker = field(default_factory=Docker)
    containerd: Containerd = field(default_factory=Containerd)
    registries: Registries = field(default_factory=Registries)
    repos: Repos = field(default_factory=Repos)
    network: Network = field(default_factory=Network)
    verify: Verify = field(default_factory=Verify)
    notes: tuple[str, ...] = ()  # what the loader has to say (an old key and its new name)

    @property
    def control_plane(self) -> tuple[Node, ...]:
        """The control-plane nodes, in inventory order (one until HA control planes)."""
        return tuple(n for n in self.nodes if n.is_control_plane)

    @property
    def init_node(self) -> Node:
        """Where ``kubeadm init`` runs and the cluster is asked about: the first control-plane
        node listed."""
        return self.control_plane[0]

    @property
    def workers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if not n.is_control_plane)

    @property
    def load_balancer(self) -> str:
        """How nodes reach the API (README "HA control planes"): ``none``, the init node's
        address (one control plane, no endpoint set); ``local``, a name /etc/hosts resolves to
        the node's own API server or to a local haproxy (the default with more than one control
        plane); ``external``, the user's own endpoint (the default when one is set);
        ``kube-vip`` and ``haproxy-keepalived``, a virtual IP the control planes hold."""
        if self.cluster.load_balancer:
            return self.cluster.load_balancer
        if len(self.control_plane) > 1:
            return "local"
        return "external" if self.cluster.control_plane_endpoint else "none"

    @property
    def control_plane_endpoint(self) -> str:
        """host:port of the API server: the inventory's; ``local``'s name by default; else the
        init node's internal address."""
        default = LOCAL_ENDPOINT if self.load_balancer == "local" else \
            self.init_node.internal_address
        ep = self.cluster.control_plane_endpoint or default
        return ep if ":" in ep else f"{ep}:{ENDPOINT_PORTS.get(self.load_balancer, 6443)}"

    @property
    def vip(self) -> str | None:
        """The virtual IP (the endpoint's host) of kube-vip and haproxy-keepalived, else None."""
        if self.load_balancer not in VIP_KINDS:
            return None
        return self.control_plane_endpoint.rpartition(":")[0]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
