"""A small Kubernetes API server for the kubernetes runtime's tests (see server.py)."""
