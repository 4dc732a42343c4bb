"""Fleet-wide commands: one operation on several nodes (names or --cluster), in parallel with a
bound, with progress (a rich bar on a terminal, a line per node otherwise, on stderr) and one
table at the end. A node's failure is one line naming the system and the cause; its traceback is
printed only with --debug."""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import click

from ..errors import InputError, ProvisionError
from ..workflow import submit

PARALLEL_DEFAULT = 8


def options(f):
    """--cluster and --parallel, for a command taking NAMES."""
    f = click.option("--parallel", type=click.IntRange(1, 64), default=PARALLEL_DEFAULT, show_default=True,
                     help="nodes worked on at once")(f)
    return click.option("--cluster", help="every node of this cluster")(f)


def targets(store, names, cluster: str | None) -> list[str]:
    """The nodes named (each must exist: exit 2), or every node of --cluster (as a rebuild selects)."""
    if not names and not cluster:
        raise InputError("name one or more nodes, or give --cluster")
    return submit.select(store, names, cluster)


@dataclass
class Outcome:
    value: Any = None
    error: str | None = None  # one line


def one_line(exc: BaseException) -> str:
    """What a failure says without --debug: our own errors name the system and the cause; anything
    else its type and message, on one line."""
    text = str(exc) if isinstance(exc, ProvisionError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def each(ctx: click.Context, names: list[str], fn: Callable[[str], Any], parallel: int, verb: str) -> dict[str, Outcome]:
    """fn(name) for every node, at most `parallel` at once; every node's Outcome, in `names` order."""
    debug = bool(ctx.find_root().obj.get("debug"))
    out: dict[str, Outcome] = {}
    lock = threading.Lock()
    bar = _Bar(len(names), verb) if sys.stderr.isatty() else None

    def one(name: str) -> Outcome:
        try:
            return Outcome(fn(name))
        except Exception as exc:
            if debug:
                with lock:
                    click.echo(f"{name}: {verb} failed:\n{traceback.format_exc()}", err=True)
            return Outcome(error=one_line(exc))

    with ThreadPoolExecutor(max_workers=min(parallel, len(names)) or 1, thread_name_prefix=verb) as pool:
        futures = {pool.submit(one, n): n for n in names}
        for i, fut in enumerate(as_completed(futures), 1):
            name = futures[fut]
            out[name] = fut.result()
            with lock:
                if bar:
                    bar.advance(name)
                elif len(names) > 1:
                    click.echo(f"{verb} {i}/{len(names)}: {name}" + (" (failed)" if out[name].error else ""), err=True)
    if bar:
        bar.close()
    return {n: out[n] for n in names}


class _Bar:
    """rich's progress bar on stderr, for one node too: "checking ━━━━━━━━━ 12/43 0:00:09 rhvnode12"."""

    def __init__(self, total: int, verb: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn(verb), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("", total=total)
        self.progress.start()

    def advance(self, name: str) -> None:
        self.progress.update(self.task, advance=1, description=name)

    def close(self) -> None:
        self.progress.stop()
