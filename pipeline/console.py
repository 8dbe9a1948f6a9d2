"""What a person sees in the terminal.

Each stage prints one line when it starts and one when it ends (what it did, in numbers, and
its seconds); in between, a progress bar with counts and ETA when the output is a terminal,
or a plain line at every tenth of the work (and at least every `LINE_EVERY_S` seconds) when
it is not (CI logs, `dvc repro > log`). Prefect's own INFO lines (one per task run state)
go to the Prefect UI only; `-v` (or `LACP_VERBOSE=1`) brings them back to the terminal.

A stage started by `python -m pipeline repro` writes into DVC's pipe, not into a terminal:
`repro` tells it through `PROGRESS_ENV` whether its own output is a terminal, and relays
every byte (bars included) as it comes (`relay`).
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from typing import IO, Any, Literal

PROGRESS_ENV = "LACP_PROGRESS"  # "bar" | "lines": how a stage shows progress (default: bar on a terminal)
VERBOSE_ENV = "LACP_VERBOSE"  # "1": Prefect's INFO lines on the terminal too
LINE_EVERY_S = 30.0  # lines mode: at most this long between two progress lines
PROJECT_LOGGERS = ("pipeline", "stages", "features", "lacp", "sources")
CONSOLE_LOGGER = "pipeline.console"  # start / progress / end lines: printed bare, also sent to the UI

ProgressMode = Literal["bar", "lines"]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def progress_mode() -> ProgressMode:
    """ "bar" or "lines": `PROGRESS_ENV` when set, else "bar" exactly when stderr is a terminal."""
    asked = os.environ.get(PROGRESS_ENV, "")
    if asked in ("bar", "lines"):
        return asked  # type: ignore[return-value]
    return "bar" if sys.stderr.isatty() else "lines"


def verbose_requested() -> bool:
    """Whether `VERBOSE_ENV` asks for Prefect's INFO lines on the terminal."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false")


class _ConsoleFilter(logging.Filter):
    """Project INFO lines and everyone's warnings pass; Prefect's INFO only when verbose."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "relayed", False):
            return False  # already on the terminal as the child printed it
        if record.levelno >= logging.WARNING:
            return True
        if record.name.split(".")[0] in PROJECT_LOGGERS:
            return True
        return self.verbose and record.name.startswith("prefect")


class _ConsoleFormatter(logging.Formatter):
    """Console lines bare; other INFO as `name: message`; warnings and errors say so."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.name == CONSOLE_LOGGER:
            return message
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {record.name}: {message}"
        return f"{record.name}: {message}"


def configure_logging(*, verbose: bool) -> None:
    """The terminal's logging for this process; call before Prefect is imported.

    Prefect keeps a root handler that is already there, so its per-task-run lines reach its
    API (the UI) but this handler decides what the terminal shows.

    Args:
        verbose: also show Prefect's INFO lines (flow and task run states).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ConsoleFilter(verbose))
    handler.setFormatter(_ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore"):  # one line per API call otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)


def say(line: str) -> None:
    """One console line: on the terminal as it is, and in the current flow run's log."""
    logging.getLogger(CONSOLE_LOGGER).info(line)


def format_seconds(seconds: float) -> str:
    """`42.1 s`, `3m05s`, `1h02m`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_summary(summary: Mapping[str, Any]) -> str:
    """The numbers of a stage summary as `key value, ...` (long strings and containers left out)."""
    parts = []
    for key, value in summary.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            parts.append(f"{key} {value}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif isinstance(value, str) and len(value) <= 24:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


class Progress:
    """Progress of one loop of a stage: a tqdm bar, or plain lines every tenth of the work.

    Args:
        stage: the stage's name (the line prefix).
        total: units of work in all.
        unit: what one unit is ("video", "step").
        initial: units already done when the loop starts (a resumed run).
        mode: "bar" or "lines" (default: `progress_mode()`).
    """

    def __init__(self, stage: str, total: int, *, unit: str, initial: int = 0, mode: ProgressMode | None = None):
        self.stage, self.total, self.unit = stage, max(int(total), 1), unit
        self.mode = mode or progress_mode()
        self.initial = self.done = int(initial)
        self.started = self._last_line = time.monotonic()
        self._tenth = self.initial * 10 // self.total
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            columns = os.environ.get("COLUMNS", "")
            self._bar = tqdm(
                total=self.total,
                initial=self.initial,
                desc=stage,
                unit=unit,
                file=sys.stderr,
                ncols=int(columns) if columns.isdigit() else None,
                dynamic_ncols=not columns.isdigit(),
                leave=False,
            )

    def update(self, done: int, *, short: str = "", detail: str = "") -> None:
        """Report `done` units finished.

        Args:
            done: units finished so far (not an increment).
            short: a few words for the bar (e.g. "loss 1.23").
            detail: what a plain line adds (e.g. every loss term).
        """
        self.done = int(done)
        if self._bar is not None:
            self._bar.update(self.done - self._bar.n)
            if short:
                self._bar.set_postfix_str(short, refresh=True)
            return
        now = time.monotonic()
        tenth = self.done * 10 // self.total
        if self.done < self.total and (tenth > self._tenth or now - self._last_line >= LINE_EVERY_S):
            self._tenth, self._last_line = tenth, now
            say(self.line(now, detail or short))

    def line(self, now: float, detail: str = "") -> str:
        """`[stage] 12/60 videos (20%), 1.6 video/s, ETA 30.0 s[, detail]`."""
        elapsed = max(now - self.started, 1e-9)
        rate = (self.done - self.initial) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        text = (
            f"[{self.stage}] {self.done}/{self.total} {self.unit}s ({100 * self.done // self.total}%), "
            f"{rate:.3g} {self.unit}/s, ETA {format_seconds(eta) if eta == eta else '?'}"
        )
        return f"{text}, {detail}" if detail else text

    def close(self) -> None:
        """Remove the bar (the stage's end line follows)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def relay(stream: IO[bytes], out: IO[str]) -> Iterator[str]:
    """Copy a child's output to `out` as it comes, and yield its lines for a log.

    Bytes are written unchanged (a progress bar's carriage returns included), so a bar that a
    child draws into a pipe still moves on the terminal. Each yielded line is what a person saw
    last on that line: the text after its last carriage return, without colour codes.

    Args:
        stream: the child's stdout (binary, unbuffered reads).
        out: where to copy it (the terminal).

    Yields:
        Complete, non-empty lines.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    fd = stream.fileno()
    while True:
        chunk = os.read(fd, 65536)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            out.write(text)
            out.flush()
            pending += text
            *lines, pending = pending.split("\n")
            for line in lines:
                shown = _ANSI.sub("", line.rsplit("\r", 1)[-1]).rstrip()
                if shown:
                    yield shown
        if not chunk:
            break
    shown = _ANSI.sub("", pending.rsplit("\r", 1)[-1]).rstrip()
    if shown:
        yield shown


def terminal_columns() -> str:
    """The terminal's width, for children that draw bars into a pipe."""
    return str(shutil.get_terminal_size().columns)
