"""A real Kubernetes API server for the lab's Kapsule clusters, and the stand-in for their nodes."""
