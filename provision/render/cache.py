"""What each node is served (per-MAC GRUB, pxelinux and iPXE configs, and the kickstart of a live
build), cached per node and shared by HTTP and TFTP.

An entry is good while the node's generation (store/generations.py) is the one it was rendered
at, the template and key files are unchanged (`Renderer.inputs_stamp`) and the build behind it has
not expired. Changes are found three ways:
- a write in this process drops the node at once (Store.subscribe), so the next request asks the
  store (one indexed query) and renders;
- a write from another process (a CLI runner) is found by the refresher thread's
  `changed_since` scan, every `interval` seconds, one indexed query whatever the fleet size;
- either way the refresher re-renders the changed nodes in the background, so a request is a
  dictionary hit; the whole fleet is rendered once at start-up, changed nodes first.
A request never renders more than the one config it asks for, and never for another node."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import NotFound
from ..store import Build, Store, utcnow
from .renderer import Renderer

log = logging.getLogger("provision.bootcache")
BOOT_KINDS = ("grub", "pxelinux", "ipxe")


@dataclass(frozen=True)
class _Entry:
    generation: int
    stamp: int
    data: bytes
    expires_at: datetime | None
    build_id: int | None = None


EXPORTED = {"grub": "boot/grub/grub.cfg-01-{}", "pxelinux": "boot/pxelinux.cfg/01-{}"}


class Export:
    """The per-MAC GRUB and pxelinux configs as files under [paths] boot_export, at the paths HTTP
    serves them (`boot/grub/grub.cfg-01-<mac>`), for a front to send (docs/nginx.md). Only the
    refresher thread writes them, from what it rendered after a sync; a node changed in this process
    loses its files at once (the front then asks serve) until they are written again; an expired
    build's files are rewritten when it expires; serve removes them all when it stops, and clears
    what a crash left when it starts."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._written: dict[str, list[Path]] = {}  # node -> its files

    def clear(self) -> None:
        for sub in ("boot/grub", "boot/pxelinux.cfg"):
            d = self.root / sub
            d.mkdir(parents=True, exist_ok=True)
            for f in d.iterdir():
                if f.is_file():
                    f.unlink(missing_ok=True)
        self._written.clear()

    def drop(self, name: str) -> None:
        for f in self._written.pop(name, ()):
            f.unlink(missing_ok=True)

    def write(self, name: str, kind: str, macs: list[str], data: bytes) -> None:
        files = self._written.setdefault(name, [])
        for mac in macs:
            path = self.root / EXPORTED[kind].format(mac.replace(":", "-"))
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # whole or not at all
            if path not in files:
                files.append(path)


class BootCache:
    def __init__(self, store: Store, renderer: Renderer, *, interval: float = 0.05,
                 inputs_interval: float = 1.0, export: Path | None = None) -> None:
        self.store, self.renderer = store, renderer
        self.export = Export(export) if export is not None else None
        self.interval, self.inputs_interval = interval, inputs_interval
        self._macs: dict[str, str] = {}             # MAC -> node
        self._node_macs: dict[str, list[str]] = {}  # node -> its MACs
        self._gens: dict[str, int] = {}             # node -> generation known current; absent: ask the store
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._backlog: list[str] = []               # nodes not rendered since start-up
        self._rendering = 0                         # changed nodes the refresher is rendering now
        self._stamp_value: tuple | None = None
        self._stamp = 0                             # bumped when the template/key files change
        self._stamp_checked = 0.0
        self.seen = -1                              # the store generation synced up to
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sync_lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._expiring: dict[str, datetime] = {}  # exported node -> when its build's configs expire
        self.renders = 0
        store.subscribe(self._dirty)

    # -- requests (HTTP worker threads, the TFTP loop) ------------------------------------------
    def boot_config(self, kind: str, mac: str) -> bytes | None:
        """The config node-of-`mac` is served now, or None for a MAC no node has. Raises what the
        renderer raises for a node that cannot be rendered (e.g. partial facts while armed)."""
        name = self._macs.get(mac)
        gen = self._gens.get(name) if name is not None else None
        if gen is None:  # not synced yet (a new MAC, or a node changed a moment ago): ask the store
            hit = self.store.boot_lookup(mac)
            if hit is None:
                return None
            name, gen = hit
        assert name is not None
        entry = self._entries.get((name, kind))
        if entry is not None and self._fresh(entry, gen):
            return entry.data
        return self._render_one(name, kind, gen)

    def kickstart(self, build: Build) -> bytes:
        """The kickstart of a live build (with its token), as fetched by the installer."""
        gen = self._gens.get(build.node)
        entry = self._entries.get((build.node, "kickstart"))
        if gen is not None and entry is not None and entry.build_id == build.id and self._fresh(entry, gen):
            return entry.data
        gen = self.store.node_generation(build.node) if gen is None else gen
        return self._keep(build.node, "kickstart", gen, self.renderer.render_build(build, "kickstart"))

    def _fresh(self, entry: _Entry, gen: int) -> bool:
        return (entry.generation == gen and entry.stamp == self._stamp
                and (entry.expires_at is None or utcnow() < entry.expires_at))

    def _render_one(self, name: str, kind: str, gen: int) -> bytes:
        return self._keep(name, kind, gen, self.renderer.render(name, kind, show_secrets=True))

    def _keep(self, name: str, kind: str, gen: int, rendered) -> bytes:
        """Cache what was rendered at generation `gen`; returns its bytes."""
        data = rendered.text.encode()
        entry = _Entry(gen, self._stamp, data, rendered.expires_at, rendered.build_id)
        self._entries[(name, kind)] = entry
        self.renders += 1
        return data

    def _dirty(self, changed: dict[str, int]) -> None:
        """A commit in this process moved nodes to new generations: forget the older generation
        we knew (requests go to the store until the refresher has synced) and wake the refresher.
        Their exported files go at once: a front asks serve for them until they are rewritten."""
        with self._export_lock:  # with the writer's check of the generation: no stale file after this
            for name, gen in changed.items():
                if self._gens.get(name, -1) < gen:
                    self._gens.pop(name, None)
                if self.export is not None:
                    self.export.drop(name)
        self._wake.set()

    # -- the refresher --------------------------------------------------------------------------
    def sync(self) -> list[str]:
        """Apply every change since the last sync (one query); returns the changed nodes."""
        with self._sync_lock:
            self._wake.clear()
            current, changed = self.store.changed_since(self.seen)
            for name, (gen, macs) in changed.items():
                for old in self._node_macs.get(name, ()):
                    if self._macs.get(old) == name:
                        del self._macs[old]
                for mac in macs:
                    self._macs[mac] = name
                self._node_macs[name] = macs
                self._gens[name] = gen
            self._rendering = len(changed)  # before `seen` moves: /healthz never says warm too early
            self.seen = current
            return sorted(changed)

    def _check_inputs(self) -> None:
        now = time.monotonic()
        if now - self._stamp_checked < self.inputs_interval:
            return
        self._stamp_checked = now
        value = self.renderer.inputs_stamp()
        if value != self._stamp_value:
            if self._stamp_value is not None:
                self._stamp += 1
                self._backlog = sorted(self._node_macs)  # every node renders from the new files
            self._stamp_value = value

    def warm(self, names: list[str]) -> None:
        """Render what `names` are served now, one store read per node."""
        for name in names:
            gen = self._gens.get(name)
            if gen is None:
                continue  # changed again meanwhile: the next sync brings it back
            try:
                rendered = self.renderer.render_served(name, BOOT_KINDS + ("kickstart",))
            except NotFound:
                continue  # no facts yet: nothing to serve
            if self.export is not None:
                with self._export_lock:
                    self.export.drop(name)
            for kind, r in rendered.items():
                if isinstance(r, Exception):
                    log.warning("node %s: cannot render its %s config: %s", name, kind, r)
                    continue
                data = self._keep(name, kind, gen, r)
                if self.export is not None and kind in EXPORTED:
                    with self._export_lock:
                        if self._gens.get(name) == gen:  # not changed since it was rendered
                            self.export.write(name, kind, self._node_macs.get(name, []), data)
                    if r.expires_at is not None:
                        self._expiring[name] = r.expires_at

    def step(self, budget: int = 50) -> None:
        """One refresher pass: sync, render the changed nodes (and the exported ones whose build
        expired), then up to `budget` of the backlog."""
        self._check_inputs()
        changed = self.sync()
        now = utcnow()
        expired = [n for n, at in self._expiring.items() if at <= now]
        for n in expired:
            del self._expiring[n]
        changed = sorted(set(changed) | set(expired))
        try:
            if changed:
                self.warm(changed)
        finally:
            self._rendering = 0
        if self._backlog:  # taken off only once rendered: `warmed` means done, not started
            chunk = self._backlog[:budget]
            self.warm(chunk)
            self._backlog = self._backlog[len(chunk):]

    def start(self, background: bool = True) -> None:
        """Sync every node (one query) and start the refresher; rendering happens in the background
        (`background=False`: the caller runs `step` itself)."""
        if self.export is not None:
            self.export.clear()  # what a crash left: rewritten as the fleet renders
        self._check_inputs()
        self._backlog = self.sync()
        self._rendering = 0  # the backlog says what is left
        if background:
            threading.Thread(target=self._run, name="bootcache", daemon=True).start()

    @property
    def warmed(self) -> bool:
        """Every node known at start-up has been rendered once, and so has every change synced."""
        return not self._backlog and not self._rendering

    @property
    def node_macs(self) -> dict[str, list[str]]:
        return self._node_macs

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.export is not None:  # a front must not send configs nobody keeps current
            with self._export_lock:
                self.export.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("boot config cache refresh failed; requests render on their own")
            if not self._backlog:
                self._wake.wait(self.interval)
