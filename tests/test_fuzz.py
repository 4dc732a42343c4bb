"""Property-based tests (hypothesis): whatever arrives (TFTP datagrams, inventory documents, fact
uploads, callback bodies), no exception escapes the code that takes it in, and a rejection leaves
the store unchanged. Example counts are fixed and the database is derandomized, so a run costs the
same every time."""

from __future__ import annotations

import json
import socket
import struct

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision import config as config_mod
from provision import services
from provision.capture import service as capture
from provision.capture.node import facts_from_node
from provision.domain import load_yaml, parse_nodes
from provision.errors import InputError
from provision.workflow import callbacks

from .conftest import EXAMPLE, start_server, write_config

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    s = services.build(config_mod.load(write_config(tmp)), bootcheck=False)
    s.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
    yield s
    s.close()


def _fingerprint(s) -> tuple:
    return tuple((r.node.name, r.snapshot_id, r.state) for r in s.store.list_nodes()) + (s.store.generation(),)


# -- TFTP ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tftp_srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzztftp")
    (tmp / "bootfiles").mkdir()
    (tmp / "bootfiles" / "loader.efi").write_bytes(b"L" * 5000)
    gen = start_server(tmp)
    yield next(gen)
    gen.close()


_opcodes = st.sampled_from([b"\0\1", b"\0\2", b"\0\3", b"\0\4", b"\0\5", b"\0\6", b"\0\7", b"\xff\xff", b""])


@FUZZ
@given(st.lists(st.tuples(_opcodes, st.binary(max_size=600)), min_size=1, max_size=8))
def test_tftp_survives_any_datagrams(tftp_srv, packets):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for opcode, payload in packets:
            s.sendto(opcode + payload, ("127.0.0.1", tftp_srv.tftp_port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:  # and a real request is still served, whole
        c.settimeout(10)
        c.sendto(b"\0\1loader.efi\0octet\0", ("127.0.0.1", tftp_srv.tftp_port))
        got, block = b"", 1
        while True:
            data, addr = c.recvfrom(1024)
            if struct.unpack("!HH", data[:4]) != (3, block):
                continue  # a stray datagram from an earlier session on a reused port
            got += data[4:]
            c.sendto(struct.pack("!HH", 4, block), addr)
            if len(data) - 4 < 512:
                break
            block += 1
        assert got == b"L" * 5000


# -- inventory documents -----------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30), st.floats(allow_nan=False))
_docs = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                     max_leaves=30)


def _mutated_example(draw_value, path_index: int) -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    node = data["nodes"][path_index % 3]
    keys = ["name", "fqdn", "cluster", "profile", "bmc", "facts"]
    node[keys[path_index % len(keys)]] = draw_value
    return data


@FUZZ
@given(st.one_of(_docs.map(lambda d: yaml.safe_dump({"nodes": [d]})), st.text(max_size=400),
                 st.tuples(_docs, st.integers(0, 100)).map(lambda t: yaml.safe_dump(_mutated_example(*t)))))
def test_inventory_documents_are_accepted_or_refused_cleanly(svc, text):
    before = _fingerprint(svc)
    try:
        nodes = parse_nodes(load_yaml(text, "fuzz"), "fuzz")
    except InputError:
        assert _fingerprint(svc) == before
        return
    try:
        svc.store.import_nodes(nodes)
    except InputError:
        assert _fingerprint(svc) == before


# -- fact uploads ------------------------------------------------------------------------------------
_sections = st.sampled_from(["ip-link", "ip-addr", "route4", "route6", "ip-link-oneline", "ip-addr-oneline",
                             "route4-text", "lsblk", "lsblk-pairs", "by-id", "pvs", "firmware", "resolv",
                             "sysfs-net", "vlan-config", "bond bond0", "warnings"])
_bodies = st.one_of(st.text(max_size=200), _docs.map(json.dumps))


@FUZZ
@given(st.lists(st.tuples(_sections, _bodies), max_size=8), st.booleans())
def test_fact_uploads_never_raise_anything_but_input_errors(svc, sections, end):
    text = "".join(f"### {name}\n{body}\n" for name, body in sections) + ("### end\n" if end else "")
    prev = svc.store.snapshot("rhvnode4").facts
    try:
        facts_from_node(text, prev)
    except InputError:
        pass
    before = _fingerprint(svc)
    token = svc.store.create_collection("rhvnode4", 600)
    status, body = capture.accept_upload(svc, token, text, "192.0.2.14")
    assert status in (200, 422), body
    if status == 422:
        assert _fingerprint(svc) == before


# -- callbacks ---------------------------------------------------------------------------------------
@FUZZ
@given(st.text(max_size=40), st.sampled_from(["installed", "enrolled", "failed", "x", ""]),
       st.sampled_from(["192.0.2.13", "127.0.0.1", "::1", "not-an-ip", ""]), st.binary(max_size=2000))
def test_callbacks_answer_every_request_and_a_bad_token_changes_nothing(svc, token, phase, addr, body):
    before = _fingerprint(svc)
    reply = callbacks.handle(svc, token, phase, addr, body)
    assert reply.status in (403, 404)
    assert _fingerprint(svc) == before
