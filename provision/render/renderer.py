"""Render one node's kickstart or boot config from the store, for previews and for serving."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from jinja2 import TemplateError
from pydantic import TypeAdapter, ValidationError

from .. import tokens
from ..config import Config
from ..domain.types import CryptHash, SshKey
from ..errors import InputError, ProvisionError
from ..store import Build, NodeRecord, Snapshot, Store
from .context import Secrets, build_context
from .env import make_env

KINDS = ("kickstart", "grub", "pxelinux", "ipxe", "isolinux", "grub-iso")  # the last two: the vmedia ISO's
_TEMPLATES = {"grub": "grub.cfg.j2", "pxelinux": "pxelinux.cfg.j2", "ipxe": "ipxe.j2", "isolinux": "isolinux.cfg.j2",
              "grub-iso": "grub-iso.cfg.j2"}


@dataclass(frozen=True)
class Rendered:
    kind: str
    node: str
    text: str
    armed: bool
    snapshot_id: int | None
    expires_at: datetime | None = None  # when the live build behind an install config expires
    build_id: int | None = None  # the live build an install config was rendered for
    token_digest: str | None = None  # tokens.digest of that build's token (the /ks/ URL's)


class Renderer:
    def __init__(self, cfg: Config, store: Store, key: str) -> None:
        self.cfg, self.store, self.key = cfg, store, key
        self.env = make_env(cfg.paths.templates)
        self._liveimgs: tuple[float, dict[str, str]] | None = None

    def render(self, name: str, kind: str, *, show_secrets: bool = False, install: bool | None = None,
               snapshot_id: int | None = None) -> Rendered:
        """What node `name` gets now (install config while a build is live, else local boot).
        `install=True` previews the install config of a node that is not armed."""
        rec, snap, build = self.store.render_view(name, snapshot_id)
        if build is not None and not build.boots_install:
            build = None  # installed: boot configs are back to local boot, the token lives on for callbacks
        armed = build is not None if install is None else install
        return self._render(rec, snap, kind, build if armed else None, armed=armed, show_secrets=show_secrets)

    def render_served(self, name: str, kinds: tuple[str, ...]) -> dict[str, Rendered | Exception]:
        """What node `name` is served now, for each of `kinds`, from one read of the store (the
        boot-config cache's warm-up): a kind that cannot be rendered maps to its exception. A
        "kickstart" is rendered only while a build boots the installer (with its token)."""
        rec, snap, build = self.store.render_view(name)
        if build is not None and not build.boots_install:
            build = None
        out: dict[str, Rendered | Exception] = {}
        for kind in kinds:
            if kind == "kickstart" and build is None:
                continue
            try:
                out[kind] = self._render(rec, snap, kind, build, armed=build is not None, show_secrets=True)
            except Exception as exc:  # noqa: BLE001 - reported per kind, the others still render
                out[kind] = exc
        return out

    def liveimgs(self, max_age: float = 1.0) -> dict[str, str]:
        """Imported media's live images by media name, read from the store at most every `max_age` s."""
        now = time.monotonic()
        if self._liveimgs is None or now - self._liveimgs[0] >= max_age:
            self._liveimgs = (now, {m.name: m.liveimg for m in self.store.list_media() if m.liveimg})
        return self._liveimgs[1]

    def inputs_stamp(self) -> tuple:
        """Changes whenever a file every render reads changes (templates, root hash, SSH key), and
        when media are imported or removed."""
        paths = [self.cfg.defaults.root_password_hash_file, self.cfg.defaults.ssh_key_file,
                 self.cfg.paths.state_dir / "engine.pub"]
        for sub in ("kickstarts", "bootfiles"):  # the template loader's search path (render/env.py)
            paths += sorted((self.cfg.paths.templates / sub).rglob("*.j2"))  # snippets/ too
        stamp: list[tuple] = []
        for p in paths:
            if p is None:
                continue
            try:
                st = p.stat()
                stamp.append((str(p), st.st_mtime_ns, st.st_size))
            except OSError:
                stamp.append((str(p), None))
        return tuple(stamp) + tuple(sorted(self.liveimgs(max_age=0).items()))

    def render_build(self, build: Build, kind: str) -> Rendered:
        """The real thing for a live build, with its token, as served to the node."""
        rec, snap, _ = self.store.render_view(build.node, build.snapshot_id)
        return self._render(rec, snap, kind, build, armed=True, show_secrets=True)

    def _render(self, rec: NodeRecord, snap: Snapshot, kind: str, build: Build | None, *, armed: bool,
                show_secrets: bool) -> Rendered:
        name = rec.node.name
        if kind not in KINDS:
            raise InputError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        if snap.facts.missing() and (armed or kind == "kickstart"):
            raise InputError(f"node {name}: facts snapshot #{snap.id} is partial, missing "
                             f"{' and '.join(snap.facts.missing())}; capture --from node or --from file first")
        token = tokens.derive(self.key, build.nonce) if build else None
        secrets = Secrets(token=token, root_password_hash=self._root_hash())
        ctx = build_context(rec.node, snap.facts, snap.id, self.cfg, armed=armed, secrets=secrets,
                            ssh_key=self._ssh_key(), show_secrets=show_secrets, liveimgs=self.liveimgs())
        template = f"{rec.node.profile}.ks.j2" if kind == "kickstart" else _TEMPLATES[kind]
        try:
            text = self.env.get_template(template).render(ctx)
        except TemplateError as exc:
            raise ProvisionError(f"template {template} for node {name!r}: {type(exc).__name__}: {exc}") from None
        return Rendered(kind, name, text, armed, snap.id, build.expires_at if build else None,
                        build.id if build else None, tokens.digest(token) if token else None)

    def _root_hash(self) -> str | None:
        path = self.cfg.defaults.root_password_hash_file
        return _read_checked(path, CryptHash, "defaults.root_password_hash_file") if path else None

    def _ssh_key(self) -> str | None:
        """[defaults] ssh_key_file, else the engine's key fetched at arm time (state_dir/engine.pub)."""
        path = self.cfg.defaults.ssh_key_file
        if path is None and (self.cfg.paths.state_dir / "engine.pub").is_file():
            path = self.cfg.paths.state_dir / "engine.pub"
        return _read_checked(path, SshKey, "defaults.ssh_key_file") if path else None


def _read_checked(path, kind, field: str) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise InputError(f"{field}: cannot read {path}: {exc.strerror}") from None
    try:
        return TypeAdapter(kind).validate_python(text)
    except ValidationError as exc:
        raise InputError(f"{field}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
