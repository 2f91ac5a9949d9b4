"""One progress display for every pass of a job: rows done of rows known, rows/s and time left.

The driver counts what it consumes (the human pass's written-row counts, generation's finished
batches, scored generations), so the display is the same on embedded Ray and on a cluster: no
worker needs a terminal. On a terminal (stderr is a TTY) it redraws one ``\\r`` line with a bar;
otherwise it logs a line every ``interval_s`` seconds (and one at the end), which is what CI logs
and ``nohup`` files want. ``configure(quiet=True)`` (the CLI's ``--quiet``) turns it off.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

log = logging.getLogger("affalign")

BAR_WIDTH = 24
TTY_REDRAW_S = 0.2  # a terminal line is redrawn at most this often

_settings: dict[str, object] = {"quiet": False, "interval_s": 5.0, "stream": None}


def configure(quiet: bool | None = None, interval_s: float | None = None, stream: TextIO | None = None) -> None:
    """Process-wide settings: ``quiet`` hides every display; ``interval_s`` paces log lines;
    ``stream`` is where a terminal display goes (default: ``sys.stderr``)."""
    if quiet is not None:
        _settings["quiet"] = bool(quiet)
    if interval_s is not None:
        _settings["interval_s"] = float(interval_s)
    if stream is not None:
        _settings["stream"] = stream


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Rows done out of rows known for one pass; ``update(n)`` as rows finish, ``close()`` at the end.

    ``total`` may be ``None`` (unknown, e.g. a JSONL file not yet read): the display then shows
    rows and rows/s without a bar or time left. ``total`` can be raised later (``set_total``).
    """

    def __init__(
        self,
        name: str,
        total: int | None,
        unit: str = "rows",
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float | None = None,
        clock=time.monotonic,
    ):
        self.name = name
        self.total = total if total is None or total >= 0 else None
        self.unit = unit
        self.stream = stream if stream is not None else (_settings["stream"] or sys.stderr)  # type: ignore[assignment]
        if tty is None:
            try:
                tty = self.stream.isatty() and not os.environ.get("CI")
            except (AttributeError, ValueError):
                tty = False
        self.tty = bool(tty)
        self.interval_s = float(interval_s if interval_s is not None else _settings["interval_s"])  # type: ignore[arg-type]
        self.quiet = bool(_settings["quiet"])
        self.clock = clock
        self.done = 0
        self.started = clock()
        self._last_shown = float("-inf")
        self._shown_done = -1  # rows in the last line shown: the closing line is not a repeat
        self._closed = False
        self._line_len = 0

    def set_total(self, total: int | None) -> None:
        self.total = total

    def rate(self) -> float:
        """Rows per second since the pass started."""
        return self.done / max(self.clock() - self.started, 1e-9)

    def eta_s(self) -> float | None:
        """Seconds left at the current rate, or None when unknown."""
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def text(self, bar: bool) -> str:
        """The display line: name, [bar], done/total, rate, elapsed and time left."""
        parts = [self.name]
        if self.total:
            frac = min(self.done / self.total, 1.0)
            if bar:
                full = int(frac * BAR_WIDTH)
                parts.append("[" + "#" * full + "." * (BAR_WIDTH - full) + f"] {frac * 100:3.0f}%")
            parts.append(f"{self.done:,}/{self.total:,} {self.unit}")
        else:
            parts.append(f"{self.done:,} {self.unit}")
        parts.append(f"{self.rate():,.1f} {self.unit}/s")
        parts.append(f"elapsed {_duration(self.clock() - self.started)}")
        eta = self.eta_s()
        if eta is not None and not self._closed:
            parts.append(f"eta {_duration(eta)}")
        return "  ".join(parts)

    def update(self, n: int = 1) -> None:
        """``n`` more rows done; shows the display when it is due."""
        self.done += int(n)
        self._show(force=False)

    def _show(self, force: bool) -> None:
        if self.quiet:
            return
        now = self.clock()
        if self.tty:
            if force or now - self._last_shown >= TTY_REDRAW_S:
                line = self.text(bar=True)
                pad = " " * max(0, self._line_len - len(line))
                self.stream.write("\r" + line + pad + ("\n" if self._closed else ""))
                self.stream.flush()
                self._line_len = len(line)
                self._last_shown = now
        elif (force and self._shown_done != self.done) or now - self._last_shown >= self.interval_s:
            log.info("%s", self.text(bar=False))
            self._last_shown = now
            self._shown_done = self.done

    def close(self) -> None:
        """Show the final line (once)."""
        if self._closed:
            return
        self._closed = True
        self._show(force=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
