"""Cluster lifecycle after prepare-nodes: init-master, join-workers, reset (kubeadm phases)."""
