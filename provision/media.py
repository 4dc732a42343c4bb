"""`provision media import|list|remove`: installer ISOs read with pycdlib (no mount, no root).

An import copies what the nodes fetch over HTTP and TFTP under `[paths] media`/NAME/:
- always the installer's kernel and initrd (`images/pxeboot/vmlinuz`, `initrd.img`);
- oVirt Node / RHVH (the ISO's own kickstart has a `liveimg --url=file:///run/install/repo/...`
  line): that live image, the installer's stage 2 (`images/install.img`, with `images/product.img`
  and `images/updates.img` where the ISO has them), `.treeinfo`,
  `.discinfo`, the ISO's kickstarts and its UEFI boot image (`images/efiboot.img`, which
  virtual-media boot ISOs reuse);
- Enterprise Linux (no `liveimg`): the whole tree, the repositories included.
Every file is hashed while it is copied; `SHA256SUMS` (`sha256sum -c` format) lists them. The
copy is made in a hidden directory and renamed into place, then registered in the store, so an
import that fails leaves nothing behind (and the leftovers of a killed import are removed by the
next one).

An ISO is the vendor's, but its names and extents are read, not trusted: a Rock Ridge or Joliet
name must be a plain name (no `/`, `.`, `..`, control characters; at most 255 bytes), every file's
extent must lie inside the image, and what the chosen files would take may not exceed twice the
image (extents shared by many names), so nothing is written outside the target directory and
nothing is copied that the image does not faithfully hold."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from .errors import InputError, ProvisionError
from .store import Media, Store

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
KERNEL, INITRD = "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"
# anaconda's stage 2 and what it fetches beside it from the same tree: images/product.img carries an
# oVirt Node / RHVH ISO's installer classes (its partitioning rules); without it anaconda goes on
# silently as a plain installer
STAGE2 = ("images/install.img", "images/product.img", "images/updates.img", ".treeinfo", ".discinfo")
EFIBOOT = "images/efiboot.img"  # the ISO's own UEFI El Torito image: virtual-media boot ISOs reuse it
REPO = "file:///run/install/repo/"
LIVEIMG_RE = re.compile(r"^\s*liveimg\s.*?--url[= ]\s*['\"]?([^\s'\"]+)", re.M)


class _Hashing:
    """A file object pycdlib writes to: the bytes go to `out` and through SHA-256."""

    def __init__(self, out) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)


SHARED_BOUND = 2  # what an import copies, at most this many times the image's size


def _plain(name: str) -> bool:
    return (name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) and len(name.encode(errors="replace")) <= 255)


class Iso:
    """An ISO's files by their Rock Ridge (or Joliet) names, relative to its root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.iso = pycdlib.PyCdlib()
        try:
            self.iso.open(str(path))
        except (OSError, PyCdlibException) as exc:
            raise InputError(f"ISO {path}: cannot be read as an ISO 9660 image: {exc}") from None
        if self.iso.has_rock_ridge():
            self.kw = "rr_path"
        elif self.iso.has_joliet():
            self.kw = "joliet_path"
        else:
            self.close()
            raise InputError(f"ISO {path}: has neither Rock Ridge nor Joliet names (not an installer ISO)")
        self.files: list[str] = []
        self.size = path.stat().st_size
        for dirname, dirs, files in self.iso.walk(**{self.kw: "/"}):
            base = dirname.strip("/")
            for f in list(dirs) + list(files):
                if not _plain(f) or (base and not all(_plain(p) for p in base.split("/"))):
                    self.close()
                    raise InputError(f"ISO {path}: the name {ascii(f)} under /{base} is not a plain file name "
                                     "(it could write outside the media directory): refused")
            self.files += [f"{base}/{f}" if base else f for f in files]
        pvd = self.iso.pvd
        self.volume = pvd.volume_identifier.decode(errors="replace").strip() if pvd else ""

    def extent(self, rel: str) -> tuple[int, int]:
        """(first byte in the image, length) of a file's data."""
        rec = self.iso.get_record(**{self.kw: "/" + rel})
        block = self.iso.pvd.logical_block_size() if self.iso.pvd else 2048
        return rec.extent_location() * block, rec.get_data_length()

    def check_extents(self, wanted: list[str]) -> None:
        """Refuse what the image cannot hold faithfully: a file whose data lies (partly) beyond the
        end of the image, or files that together would take more than SHARED_BOUND x the image."""
        pvd = self.iso.pvd
        declared = pvd.space_size * pvd.logical_block_size() if pvd else 0
        if self.size < declared:  # pycdlib silently cuts each file short at the end of what is there
            raise InputError(f"ISO {self.path}: {self.size} bytes of the {declared} its volume descriptor declares: "
                             "truncated (extents beyond the image), refused")
        total = 0
        for rel in wanted:
            start, length = self.extent(rel)
            if length < 0 or start + length > self.size:
                raise InputError(f"ISO {self.path}: {rel} claims {length} bytes at offset {start}, beyond the "
                                 f"image's {self.size}: truncated or hostile, refused")
            total += length
        if total > SHARED_BOUND * self.size:
            raise InputError(f"ISO {self.path}: its files would take {total} bytes from a {self.size}-byte image "
                             f"(names sharing extents): more than {SHARED_BOUND}x the image, refused")

    def read(self, rel: str) -> bytes:
        buf = io.BytesIO()
        self.iso.get_file_from_iso_fp(buf, **{self.kw: "/" + rel})
        return buf.getvalue()

    def copy(self, rel: str, root: Path) -> tuple[str, int]:
        """Copy `rel` to the same path under `root`, never outside it, never over a file already
        there; its length must be the extent's."""
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.parent.resolve().is_relative_to(root.resolve()):
            raise InputError(f"ISO {self.path}: {rel} would be written outside the media directory: refused")
        with open(dest, "xb") as out:  # O_EXCL: a second record of one name does not overwrite the first
            sink = _Hashing(out)
            self.iso.get_file_from_iso_fp(sink, **{self.kw: "/" + rel})  # type: ignore[arg-type]  # a writable
        if sink.size != self.extent(rel)[1]:
            raise InputError(f"ISO {self.path}: {rel}: {sink.size} bytes read of {self.extent(rel)[1]}: refused")
        return sink.sha.hexdigest(), sink.size

    def close(self) -> None:
        self.iso.close()


def liveimg_of(iso: Iso) -> str | None:
    """The file the ISO's own kickstart installs with `liveimg` (oVirt Node / RHVH), relative to
    the ISO's root; None for an ISO whose kickstarts name none (Enterprise Linux)."""
    for ks in sorted(f for f in iso.files if "/" not in f and f.endswith(".ks")):
        m = LIVEIMG_RE.search(iso.read(ks).decode(errors="replace"))
        if m and m.group(1).startswith(REPO):
            return m.group(1)[len(REPO):]
    return None


def import_iso(store: Store, media_root: Path, iso_path: Path, name: str,
               progress: Callable[[str, int], None] | None = None) -> Media:
    if not NAME_RE.match(name) or name in (".", ".."):
        raise InputError(f"--name: {name!r} must be 1-64 of A-Z a-z 0-9 _ . - (it is a directory name)")
    dest = Path(media_root) / name
    if store.media(name) is not None or dest.exists():
        raise InputError(f"--name: media {name!r} already exists (media remove {name} first)")
    if not Path(iso_path).is_file():
        raise InputError(f"ISO {iso_path}: no such file")
    iso = Iso(Path(iso_path))
    try:
        missing = [f for f in (KERNEL, INITRD) if f not in iso.files]
        if missing:
            raise InputError(f"ISO {iso_path}: no {' or '.join(missing)}: not an installer ISO")
        liveimg = liveimg_of(iso)
        if liveimg is not None and liveimg not in iso.files:
            raise InputError(f"ISO {iso_path}: its kickstart's liveimg {REPO}{liveimg} is not on the ISO")
        if liveimg is None:
            kind, wanted = "el", sorted(iso.files)
        else:
            kind = "ovirt-node"
            wanted = sorted({KERNEL, INITRD, liveimg} | {f for f in STAGE2 + (EFIBOOT,) if f in iso.files}
                            | {f for f in iso.files if "/" not in f and f.endswith(".ks")})
        iso.check_extents(wanted)
        Path(media_root).mkdir(parents=True, exist_ok=True)
        _remove_leftovers(Path(media_root))
        tmp = Path(media_root) / f".{name}.partial-{os.getpid()}"
        try:
            sums, size = {}, 0
            for rel in wanted:
                if progress:
                    progress(rel, size)
                sums[rel], n = iso.copy(rel, tmp)
                size += n
            (tmp / "SHA256SUMS").write_text("".join(f"{h}  {rel}\n" for rel, h in sums.items()))
            for d in sorted({p for p in tmp.rglob("*") if p.is_dir()} | {tmp}):
                os.chmod(d, 0o755)  # served to nodes: readable, as any web root
            for f in tmp.rglob("*"):
                if f.is_file():
                    os.chmod(f, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except FileExistsError as exc:
        raise InputError(f"ISO {iso_path}: two files named {exc.filename!r}: refused") from None
    except (OSError, PyCdlibException) as exc:
        raise ProvisionError(f"media {name}: copying from {iso_path} failed: {exc}") from None
    finally:
        iso.close()
    try:
        return store.add_media(name, kind, liveimg, sums, size, f"{Path(iso_path).name} ({iso.volume})")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _remove_leftovers(media_root: Path) -> None:
    """The hidden copies of imports whose process is gone (killed mid-copy)."""
    for tmp in media_root.glob(".*.partial-*"):
        pid = tmp.name.rpartition("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove(store: Store, media_root: Path, name: str, media_of_profile: Callable[[str], str]) -> None:
    users = store.remove_media(name, media_of_profile)
    if users:
        raise ProvisionError(f"media {name} is booted by the live builds of {', '.join(users)}: not removed "
                             "(wait for them to finish, or end them)")
    shutil.rmtree(Path(media_root) / name, ignore_errors=True)
