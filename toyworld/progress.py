"""Progress bars of the toy world's long stages: a tqdm bar per step, or nothing."""
from __future__ import annotations


def tqdm_bar(total: int, desc: str):
    """The experiment's bar factory: ``bar(total, desc)`` -> a tqdm context manager."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True, mininterval=2.0)


class NoBar:
    """A bar that shows nothing (when the caller gave no bar factory)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(bar, total: int, desc: str):
    """``bar(total, desc)`` when a factory is given, else a silent ``NoBar``."""
    return bar(total, desc) if bar is not None else NoBar()
