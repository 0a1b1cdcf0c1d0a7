"""Closed VMs give their engine instance back for the next restore (the process keeps no more than it needs)."""

from __future__ import annotations

import mvactors
from mvactors.vm import _pool


def test_a_closed_vm_instance_is_reused_by_the_next_restore(snapshot):
    hello = snapshot("hello")
    first = mvactors.VM.restore(hello, imports={1: print})
    instance = first._inst
    first.close()
    assert instance in _pool._idle[True] and instance not in _pool._busy  # not mistaken for one still running
    second = mvactors.VM.restore(hello, imports={1: print})
    try:
        assert second._inst is instance
    finally:
        second.close()
