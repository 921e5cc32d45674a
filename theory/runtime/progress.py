"""The one progress bar of the project, on stderr (no dependencies).

The integrators run in compiled chunks, the simulations in kernel blocks, the trainers in
batches; between two of them the driver calls :meth:`ProgressBar.update` with the progress
so far (α, samples, batches). Nothing is printed for runs shorter than ``delay`` seconds, so
short runs (and tests) stay quiet; redraws are throttled to ``min_interval`` seconds. On a
terminal the bar redraws in place (``\\r``); otherwise (a log file) a line is written at most
every 10 % of progress.
"""

from __future__ import annotations

import sys
import time


def _fmt_time(s: float) -> str:
    if s < 60:
        return f"{s:4.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m:d}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h:d}h{m:02d}m"


class ProgressBar:
    """``label [██████░░░░]  62.0%  α = 6200/10000  2.1s < 1.3s  extra``.

    Parameters
    ----------
    total : float
        The value at completion (``alpha_max``).
    label : str
    enabled : bool
        False makes every method a no-op (``--quiet``).
    stream : file, default ``sys.stderr``
    delay : float
        Seconds before the first draw.
    min_interval : float
        Minimum seconds between redraws.
    width : int
        Characters of the bar itself.
    unit : str
        Name of the progress variable (``α``, ``samples``, ``batch``).
    rate : bool
        Show the rate (``unit``/s) instead of ``value/total``.
    """

    def __init__(
        self,
        total: float,
        label: str = "",
        enabled: bool = True,
        stream=None,
        delay: float = 0.5,
        min_interval: float = 0.1,
        width: int = 30,
        unit: str = "α",
        rate: bool = False,
    ):
        self.total = float(total)
        self.label = label
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.delay = delay
        self.min_interval = min_interval
        self.width = width
        self.unit = unit
        self.rate = rate
        self.t0 = time.perf_counter()
        self._last_draw = -1.0
        self._last_frac_line = -1.0
        self._drawn = False
        try:
            self._tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self._tty = False

    def _render(self, value: float, elapsed: float, extra: str = "") -> str:
        frac = 0.0 if self.total <= 0 else min(max(value / self.total, 0.0), 1.0)
        full = int(round(frac * self.width))
        bar = "█" * full + "░" * (self.width - full)
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        eta_s = _fmt_time(eta) if frac > 0 else "  ?  "
        lab = f"{self.label} " if self.label else ""
        if self.rate:
            where = f"{value / elapsed if elapsed > 0 else 0.0:9.3g} {self.unit}/s"
        else:
            where = f"{self.unit} = {value:.4g}/{self.total:.4g}"
        return f"{lab}[{bar}] {100 * frac:5.1f}%  {where}  {_fmt_time(elapsed)} < {eta_s}" + (
            f"  {extra}" if extra else ""
        )

    def update(self, value: float, extra: str = "", force: bool = False) -> None:
        """Report progress ``value`` (same units as ``total``); ``extra``: text after the
        bar (e.g. the current loss)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        if not force and (elapsed < self.delay or now - self._last_draw < self.min_interval):
            return
        text = self._render(value, elapsed, extra)
        if self._tty:
            self.stream.write("\r" + text)
        else:
            frac = value / self.total if self.total > 0 else 1.0
            if not force and frac - self._last_frac_line < 0.1:
                return
            self._last_frac_line = frac
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last_draw = now
        self._drawn = True

    def close(self, value: float | None = None, note: str = "") -> None:
        """Draw the final state (only if anything was drawn) and end the line."""
        if not self.enabled or not self._drawn:
            return
        if value is not None and (self._tty or self._last_frac_line < 1.0):
            self.update(value, force=True)
        if self._tty:
            self.stream.write((f"  {note}" if note else "") + "\n")
        elif note:
            self.stream.write(note + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
