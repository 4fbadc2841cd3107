"""Sources of Kubernetes objects: the local manifests folder and the Kubernetes API."""
