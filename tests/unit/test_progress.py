"""The one progress display of every pass: log lines off a terminal, a redrawn bar on one."""

from __future__ import annotations

import io
import logging
import re

import pytest

from affalign import progress
from affalign.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def _not_quiet():
    progress.configure(quiet=False)
    yield
    progress.configure(quiet=False)


def test_log_lines_off_a_terminal_carry_done_total_rate_and_eta(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger="affalign")
    p = Progress("human pass", 1000, stream=io.StringIO(), tty=False, interval_s=5.0, clock=clock)
    clock.t += 2.0
    p.update(100)  # the first update is shown at once: 100 rows in 2 s
    clock.t += 1.0
    p.update(100)  # 1 s later: not due yet
    clock.t += 4.0
    p.update(150)  # 5 s after the first line: due; 350 rows in 7 s
    clock.t += 1.0
    p.update(50)  # not due
    p.close()  # the final line
    lines = [r.getMessage() for r in caplog.records if r.name == "affalign"]
    assert len(lines) == 3
    assert lines[0].startswith("human pass") and "100/1,000 rows" in lines[0] and "50.0 rows/s" in lines[0]
    assert "eta 0:18" in lines[0]  # 900 rows left at 50 rows/s
    assert "350/1,000 rows" in lines[1] and "50.0 rows/s" in lines[1] and "eta 0:13" in lines[1]
    assert "400/1,000 rows" in lines[2] and "eta" not in lines[2]  # closed: no time left shown
    assert all("[" not in line for line in lines)  # no bar in a log
    p2 = Progress("again", 10, stream=io.StringIO(), tty=False, clock=clock)
    p2.update(10)
    p2.close()  # nothing new since the line just shown: no repeat
    assert len([r for r in caplog.records if r.getMessage().startswith("again")]) == 1


def test_terminal_mode_redraws_one_line_with_a_bar():
    clock = Clock()
    out = io.StringIO()
    p = Progress("scoring generations", 200, stream=out, tty=True, clock=clock)
    clock.t += 1.0
    p.update(50)
    clock.t += 1.0
    p.update(50)
    p.close()
    text = out.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 3 and text.endswith("\n") and text.count("\n") == 1
    assert re.search(r"\[######\.{18}\]\s+25%", frames[0]) and "50/200 rows" in frames[0] and "eta 0:03" in frames[0]
    assert re.search(r"\[#{12}\.{12}\]\s+50%", frames[2]) and "100/200 rows" in frames[2] and "50.0 rows/s" in frames[2]


def test_unknown_total_shows_rows_and_rate_without_bar_or_eta():
    clock = Clock()
    out = io.StringIO()
    p = Progress("human pass", None, stream=out, tty=True, clock=clock)
    clock.t += 4.0
    p.update(1000)
    assert p.eta_s() is None
    line = out.getvalue().strip("\r")
    assert "1,000 rows" in line and "250.0 rows/s" in line and "[" not in line and "eta" not in line


def test_quiet_shows_nothing(caplog):
    progress.configure(quiet=True)
    out = io.StringIO()
    caplog.set_level(logging.INFO, logger="affalign")
    with Progress("human pass", 10, stream=out, tty=True) as p:
        p.update(10)
    with Progress("human pass", 10, stream=out, tty=False) as p:
        p.update(10)
    assert out.getvalue() == "" and not [r for r in caplog.records if "human pass" in r.getMessage()]
