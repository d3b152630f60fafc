"""Loopback stand-ins for the external services the backend talks to.

Each one implements the documented contract of a real service (including its failure
modes, switched on by tests) and listens on 127.0.0.1 only.
"""
