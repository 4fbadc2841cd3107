"""What the controller writes back to the API: leader election, Ingress status and Events."""
