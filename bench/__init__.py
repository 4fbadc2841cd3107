"""ingressctl benchmarks (issue 5): see bench/run.py and bench/README.md."""
