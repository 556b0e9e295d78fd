"""Command line entry point (placeholder until wired)."""

from __future__ import annotations


def main() -> int:
    return 0
