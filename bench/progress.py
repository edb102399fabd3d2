"""A one-line progress bar on stderr (a plain line every few seconds when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24
PLAIN_EVERY_S = 5.0


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_plain = 0.0
        self._dirty = False

    def update(self, label: str, fraction: float | None, detail: str = "") -> None:
        if fraction is None:
            bar = "." * WIDTH
            pct = "    "
        else:
            f = min(max(fraction, 0.0), 1.0)
            filled = round(f * WIDTH)
            bar = "#" * filled + "-" * (WIDTH - filled)
            pct = f"{f * 100:3.0f}%"
        line = f"{label[:44]:<44} [{bar}] {pct} {detail}"
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(160))
            self.stream.flush()
            self._dirty = True
        elif time.monotonic() - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = time.monotonic()
            self.stream.write(line + "\n")
            self.stream.flush()

    def done(self, line: str) -> None:
        if self.tty and self._dirty:
            self.stream.write("\r" + " " * 160 + "\r")
        self._dirty = False
        self.stream.write(line + "\n")
        self.stream.flush()
