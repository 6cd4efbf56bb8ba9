"""Helpers shared by the test layers: a real etcd + kube-apiserver, kubectl and helm."""
