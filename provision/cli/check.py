"""`provision check NAME... | --cluster C`: every preflight check, as one table; exit 1 if any fails."""

from __future__ import annotations

import json

import click

from ..workflow.nodecheck import run_checks
from . import many
from .common import svc, table


@click.command()
@click.argument("names", nargs=-1)
@many.options
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check(ctx, names, cluster, parallel, as_json) -> None:
    """Run every preflight check (facts, DNS, BMC login, engine, IPA, Satellite, media) for the
    nodes named or every node of --cluster, several at once; changes nothing. One node: a row per
    check. Several: a row per node whose checks all pass, a row per failing check otherwise."""
    s = svc(ctx)
    nodes = many.targets(s.store, names, cluster)
    results = many.each(ctx, nodes, lambda n: run_checks(s, n), parallel, "checking")
    rows = []
    for n, got in results.items():
        checks = got.value if got.error is None else [{"check": "check", "result": "FAIL", "detail": got.error}]
        rows += [{"node": n, **r} for r in checks]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif len(nodes) == 1:
        table(rows, ["check", "result", "detail"])
    else:
        shown = []
        for n in nodes:
            mine = [r for r in rows if r["node"] == n]
            bad = [r for r in mine if r["result"] != "ok"]
            shown += bad or [{"node": n, "check": "all", "result": "ok", "detail": f"{len(mine)} checks pass"}]
        table(shown, ["node", "check", "result", "detail"])
        failing = sorted({r["node"] for r in rows if r["result"] != "ok"})
        click.echo(f"{len(nodes)} node(s): {len(nodes) - len(failing)} pass, {len(failing)} fail"
                   + (f" ({', '.join(failing)})" if failing else ""))
    if any(r["result"] != "ok" for r in rows):
        ctx.exit(1)
