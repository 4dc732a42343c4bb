"""Hardening, round 3: what a red team found against a running serve, each reproduced here."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from provision.domain.types import DiskId, Fqdn, Hostname, IfName, Name


class _Probe(BaseModel):
    hostname: Hostname | None = None
    fqdn: Fqdn | None = None
    ifname: IfName | None = None
    name: Name | None = None
    disk: DiskId | None = None


@pytest.mark.parametrize("field, good", [("hostname", "rhvnode3"), ("fqdn", "rhvnode3.lab.example.com"),
                                         ("ifname", "eno1"), ("name", "ocpcluster"), ("disk", "wwn-0x5002538e4030a1b2")])
def test_a_trailing_newline_is_not_part_of_a_valid_value(field, good):
    """`$` matches before a final newline: "eno1\\n" split a pxelinux APPEND line."""
    assert getattr(_Probe(**{field: good}), field) == good
    for bad in (good + "\n", good + "\r\n", "\n" + good):
        with pytest.raises(ValidationError):
            _Probe(**{field: bad})


def test_a_public_url_with_a_trailing_newline_is_refused(tmp_path):
    from provision import config as config_mod
    from provision.errors import InputError

    cfg = tmp_path / "p.toml"
    cfg.write_text('[server]\npublic_url = "http://127.0.0.1:8080\\n"\n')
    with pytest.raises(InputError, match="public_url"):
        config_mod.load(cfg)
