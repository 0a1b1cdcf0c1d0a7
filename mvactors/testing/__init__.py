"""Helpers for testing mvactors and the guest scripts built on it."""

from ..vm._native import NativeVM, native_available

__all__ = ["NativeVM", "native_available"]
