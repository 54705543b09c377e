"""Progress bars for long jobs (tqdm), switched off with ``progress=False``.

On a terminal the bar redraws in place.  When stderr is not a terminal (CI, ``> log``)
it becomes plain lines: one when a bar starts, at most one every ``LOG_INTERVAL``
seconds, and one at the end of a bar that is kept, never carriage returns.
"""

from __future__ import annotations

import re
import sys

from tqdm.auto import tqdm

LOG_INTERVAL = 5.0  # seconds between two lines of a bar written to a log
# cursor moves tqdm writes to redraw a nested bar (position > 0): ESC [ n A and friends
_CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Lines:
    """A stream for tqdm that turns its in-place redraws into whole lines."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, s: str) -> int:
        text = _CONTROL.sub("", s).replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "it",
                 enable: bool = True, leave: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr; a disabled bar still accepts update() and set_postfix()."""
    if _is_tty(sys.stderr):
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enable,
                    leave=leave, file=sys.stderr, dynamic_ncols=True, mininterval=0.5, **kwargs)
    kwargs.setdefault("ncols", 100)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enable, leave=leave,
                file=_Lines(sys.stderr), mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL,
                ascii=True, **kwargs)
