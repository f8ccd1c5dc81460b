"""Shared code of the lab's kubernetes stand-ins (kubelet, kubeadm, kubectl).

Shipped in the kubelet RPM (kubeadm requires kubelet); see lab/k8s/STATE.md in the repo.
"""
