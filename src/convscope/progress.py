"""Progress bars for long jobs (tqdm), switched off with ``progress=False``."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "it",
                 enable: bool = True, leave: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr; a disabled bar still accepts update() and set_postfix()."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enable, leave=leave,
                file=sys.stderr, dynamic_ncols=True, mininterval=0.5, **kwargs)
