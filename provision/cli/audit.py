"""`provision audit`: the audit trail, newest first."""

from __future__ import annotations

import json

import click

from .common import svc, table


@click.command()
@click.option("--node", help="only actions on this node (and the runs and imports that named it)")
@click.option("--target", help="only actions on this target (e.g. 'rebuild 7', 'media rhvh')")
@click.option("--actor", help="only this actor's actions")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit(ctx: click.Context, node: str | None, target: str | None, actor: str | None, limit: int,
          as_json: bool) -> None:
    """Who did what, when, from where, and how it ended (API, console and CLI actions)."""
    store = svc(ctx).store
    if node is not None:
        store.node_state(node)  # NotFound names it
    rows = [{"time": r.ts.isoformat(timespec="seconds"), "actor": r.actor, "source": r.source, "action": r.action,
             "target": r.target, "outcome": r.outcome, "detail": r.detail}
            for r in store.audit(target=node or target, actor=actor, limit=limit)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table(rows, ["time", "actor", "source", "action", "target", "outcome", "detail"])
