"""Talking to the Kubernetes API: the client (ingressctl.kubeapi.client) and the list/watch loop
(ingressctl.kubeapi.informer)."""
