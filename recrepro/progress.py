"""Progress bars that also work in log files: live on a terminal, a line every 30 s otherwise."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool | None = None, **kwargs) -> tqdm:
    """A tqdm bar; ``enabled=None`` means on (throttled when stderr is not a terminal)."""
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=enabled is False,
        mininterval=0.5 if interactive else 30,
        dynamic_ncols=interactive,
        **kwargs,
    )
