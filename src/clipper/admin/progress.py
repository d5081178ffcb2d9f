"""One transient progress line on stderr for long admin steps (image builds, wheel downloads)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def status_line(title: str, *, quiet: bool) -> Iterator[Callable[[str], None]]:
    """A spinner with `title` and the elapsed time; the yielded function shows the step's latest output."""
    console = Console(stderr=True, quiet=quiet)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(title)

        def show(text: str) -> None:
            if text.strip():
                progress.update(task, description=f"{title}: {text.strip()[:100]}")

        yield show
