"""Ports: the small interfaces the core and the edges depend on; adapters implement them."""

from __future__ import annotations

from typing import Protocol


class DependencyProbe(Protocol):
    """A reachability check for one external dependency, used by ``/ready``."""

    name: str

    async def check(self) -> None:
        """Return when the dependency answers; raise ``Unavailable`` otherwise."""
        ...
