"""Small installer ISOs built with pycdlib (Rock Ridge and Joliet names, as real ones have)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pycdlib


def _iso_name(name: str, taken: set[str], directory: bool) -> str:
    stem, dot, ext = name.upper().lstrip(".").rpartition(".") if not directory else (name.upper(), "", "")
    stem = re.sub(r"[^A-Z0-9_]", "_", stem or ext)[:24] or "F"
    ext = "" if directory or not dot or not stem else re.sub(r"[^A-Z0-9_]", "_", ext)[:3]
    base, n = stem, 0
    while (candidate := base + (f".{ext}" if ext else "")) in taken:
        n += 1
        base = f"{stem[:20]}_{n}"
    taken.add(candidate)
    return candidate if directory else candidate + (";1" if ext else ".;1")


def make_iso(path: Path, files: dict[str, bytes], volume: str = "TEST_INSTALLER") -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", joliet=3, vol_ident=volume)
    iso_dirs: dict[str, str] = {"": ""}
    taken: dict[str, set[str]] = {}
    for rel in sorted(files):
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in iso_dirs:
                parent = iso_dirs["/".join(parts[:i - 1])]
                iso_dirs[d] = parent + "/" + _iso_name(parts[i - 1], taken.setdefault(parent, set()), True)
                iso.add_directory(iso_path=iso_dirs[d], rr_name=parts[i - 1], joliet_path="/" + d)
        parent = iso_dirs["/".join(parts[:-1])]
        data = files[rel]
        iso.add_fp(io.BytesIO(data), len(data), iso_path=parent + "/" + _iso_name(parts[-1], taken.setdefault(parent, set()), False),
                   rr_name=parts[-1], joliet_path="/" + rel)
    iso.write(str(path))
    iso.close()
    return path
