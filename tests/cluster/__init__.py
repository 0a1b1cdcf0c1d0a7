"""Cluster suites: real redis-server and worker processes."""
