"""Progress bars for long stages (rich, on stderr), a no-op when disabled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True, completed: int = 0
) -> Iterator[Callable[..., None]]:
    """Yields `advance(step="")`: one more unit done, `step` shown beside `description` (e.g.
    the label and query being scraped). Thread-safe (rich's Progress is). `completed` starts
    a resumed run where it stopped."""
    if not enabled or total == 0:
        yield lambda step="": None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{description}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("", total=total, completed=completed)
        yield lambda step="": bar.update(task, advance=1, description=step)
