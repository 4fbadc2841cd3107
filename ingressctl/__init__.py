"""ingressctl: a Kubernetes Ingress controller that puts nginx in front of a cluster's Services."""

__version__ = "0.1.0"
