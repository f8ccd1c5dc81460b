"""k8s-bootstrap: prepare Enterprise Linux (EL7, EL8, EL9) nodes and run kubeadm over SSH."""

__version__ = "0.1.0"
