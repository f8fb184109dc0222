"""Progress of long commands: a tqdm bar (rate, ETA, metrics) on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import shutil
import sys
import time


def say(text: str) -> None:
    """Report one line to the user: stderr, flushed at once (stdout holds the results tables)."""
    print(text, file=sys.stderr, flush=True)


class Progress:
    """A tqdm bar (rate, ETA, loss) on a terminal; plain log lines otherwise."""

    def __init__(
        self,
        total: int,
        enabled: bool | None = None,
        desc: str = "meta-train",
        every: int = 10,
        start: int = 0,
        unit: str = "it",
    ):
        self.total, self.desc, self.every, self.begin, self.unit = total, desc, every, start, unit
        # a terminal that reports no width (e.g. under `script`) gets plain lines: tqdm would draw nothing
        self.tty = sys.stderr.isatty() and shutil.get_terminal_size((0, 0)).columns > 0 if enabled is None else enabled
        self.start = time.perf_counter()
        self.calls = 0
        self.done = start
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, done: int, postfix: dict[str, float]) -> None:
        """``done`` of ``total`` finished (the bar advances by what finished since the last update)."""
        self.calls += 1
        n, self.done = done - self.done, done
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            return
        if self.calls % self.every and done < self.total:
            return
        elapsed = time.perf_counter() - self.start
        rate = (done - self.begin) / elapsed if elapsed > 0 else float("nan")
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        stats = " ".join(f"{k}={v:.4g}" for k, v in postfix.items())
        print(
            f"{self.desc} {done}/{self.total} {rate:.3g} {self.unit}/s eta {eta:.0f}s {stats}".rstrip(),
            file=sys.stderr,
            flush=True,
        )

    def note(self, text: str) -> None:
        """A status between updates (e.g. validation progress): the bar's postfix, or a log line."""
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        else:
            print(f"{self.desc} {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
