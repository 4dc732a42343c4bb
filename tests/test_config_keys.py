"""examples/provision.toml lists every key the code reads with its real default, and nothing else:
a key set on an uncommented line has the model's default exactly; a commented-out key is one that
is unset by default (None) or whose default is derived at load time (state_dir and what goes under
it, the templates). Both directions are checked, section by section."""

from __future__ import annotations

import re
import tomllib

from provision import config as config_mod

from .conftest import REPO

EXAMPLE = REPO / "examples" / "provision.toml"
DERIVED = {("server", "db_url"), ("server", "admin_token_file"), ("server", "secret_key_file"),
           ("paths", "state_dir"), ("paths", "bootfiles"), ("paths", "media"), ("paths", "templates")}


def _sections():
    """{"server": ServerConfig, ..., "profiles.el": ElProfileConfig}: every leaf section's model."""
    out = {}
    for name, field in config_mod.Config.model_fields.items():
        model = field.annotation
        nested = {k: f.annotation for k, f in model.model_fields.items()
                  if isinstance(f.annotation, type) and issubclass(f.annotation, config_mod._Section)}
        if nested and len(nested) == len(model.model_fields):
            out.update({f"{name}.{k}": m for k, m in nested.items()})
        else:
            out[name] = model
    return out


def _commented() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    section = None
    for line in EXAMPLE.read_text().splitlines():
        if m := re.match(r"^\[([a-z.]+)\]", line):
            section = m.group(1)
        elif (m := re.match(r"^# ([a-z_]+) = \S", line)) and section:
            found.setdefault(section, set()).add(m.group(1))
    return found


def _active() -> dict[str, dict]:
    data = tomllib.loads(EXAMPLE.read_text())
    out = {}
    for key, value in data.items():
        if key == "profiles":
            out.update({f"profiles.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def test_every_key_the_code_reads_is_in_the_example_and_only_those():
    sections, active, commented = _sections(), _active(), _commented()
    assert set(active) | set(commented) == set(sections)
    for name, model in sections.items():
        listed = set(active.get(name, {})) | commented.get(name, set())
        fields = set(model.model_fields)
        assert fields - listed == set(), f"[{name}] not in the example: {sorted(fields - listed)}"
        assert listed - fields == set(), f"[{name}] in the example but not read by the code: {sorted(listed - fields)}"


def test_each_key_shows_its_real_default():
    sections, active, commented = _sections(), _active(), _commented()
    for name, model in sections.items():
        defaults = model().model_dump(mode="json")
        for key, value in active.get(name, {}).items():
            assert (name, key) not in DERIVED, f"[{name}] {key}: derived at load time, so commented out"
            assert value == defaults[key], f"[{name}] {key} = {value!r}, but its default is {defaults[key]!r}"
        for key in commented.get(name, set()):
            assert defaults[key] is None or (name, key) in DERIVED, \
                f"[{name}] {key} is commented out, but its default is {defaults[key]!r}: show it"


def test_the_example_loads_as_a_config(tmp_path):
    cfg = config_mod.load(EXAMPLE)
    assert cfg.server.http_bind == "127.0.0.1:8080" and cfg.engine.url is None
