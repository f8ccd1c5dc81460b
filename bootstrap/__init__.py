"""k8s-bootstrap: prepare CentOS-family nodes and run kubeadm over SSH."""

__version__ = "0.1.0"
