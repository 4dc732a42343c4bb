"""`provision media import ISO --name NAME | list | remove NAME` (see provision/media.py)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import media as media_mod
from .common import audited, svc, table


def _media_of_profile(cfg):
    return lambda profile: cfg.defaults.rhvh_media if profile == "rhvh" else cfg.defaults.el_media


@click.group()
def media() -> None:
    """Installation media: kernels, initrds, live images and repositories, served to the nodes."""


@media.command("import")
@click.argument("iso", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="the name a profile boots ([defaults] rhvh_media / el_media)")
@click.pass_context
def import_(ctx: click.Context, iso: str, name: str) -> None:
    """Copy what the nodes fetch from an installer ISO (read with pycdlib: no mount, no root)."""
    s = svc(ctx)
    with audited(ctx, "media.import", f"media {name}", role="admin"):
        m = media_mod.import_iso(s.store, s.cfg.paths.media, Path(iso), name,
                                 progress=lambda rel, done: click.echo(f"  {rel}", err=True))
    what = f"live image {m.liveimg}" if m.liveimg else "repository tree"
    click.echo(f"imported {m.name} ({m.kind}, {what}): {len(m.files)} file(s), {m.size / 1e6:.1f} MB, "
               f"SHA256SUMS under {s.cfg.paths.media / m.name}")


@media.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Imported media, and which profile boots each."""
    s = svc(ctx)
    d = s.cfg.defaults
    users = {d.rhvh_media: "rhvh", d.el_media: "el"} if d.rhvh_media != d.el_media else {d.el_media: "rhvh, el"}
    table([{"name": m.name, "kind": m.kind, "files": len(m.files), "mb": f"{m.size / 1e6:.1f}",
            "liveimg": m.liveimg or "-", "profile": users.get(m.name, "-"),
            "imported": m.imported_at.strftime("%Y-%m-%d %H:%M"), "source": m.source}
           for m in s.store.list_media()],
          ["name", "kind", "files", "mb", "liveimg", "profile", "imported", "source"])


@media.command("remove")
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Unregister NAME and delete its files; refused while a live build's node boots it."""
    s = svc(ctx)
    with audited(ctx, "media.remove", f"media {name}", role="admin"):
        media_mod.remove(s.store, s.cfg.paths.media, name, _media_of_profile(s.cfg))
    click.echo(f"removed {name}")
