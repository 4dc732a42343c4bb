"""Users and roles from a real directory server (tests/slapd.py: OpenLDAP laid out as FreeIPA's
389 Directory Server): each role's allowed and refused actions over the API and in the console, a
wrong password, a user in no mapped group, a disabled account, the directory down (a clear error;
the break-glass token still logs in), login throttling, personal API tokens revoked at once, and
the audit rows of a whole rebuild, with the person who did each step."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from provision.config import AuthConfig
from provision.integrations.directory import DirectoryDown, LdapDirectory
from provision.web import create_app
from provision.workflow import callbacks
from provision.workflow.conductor import Conductor

from .conftest import run_cli, write_config
from .slapd import GROUPS, SEARCH_DN, SEARCH_PASSWORD, USERS, Slapd
from .workflow_helpers import NAMES, FakeInstaller, build_wf, cycled

ADMIN_TOKEN = "t" * 32
PEOPLE = {
    "alice": ("alice-pw", ["provision-operators"], False),
    "bob": ("bob-pw", ["provision-viewers"], False),
    "carol": ("carol-pw", ["provision-admins", "provision-viewers"], False),
    "dave": ("dave-pw", ["wheel"], False),  # in a group provision does not map: no role
    "erin": ("erin-pw", ["provision-operators"], True),  # disabled (nsAccountLock: TRUE)
}


@pytest.fixture(scope="module")
def directory():
    d = Slapd(PEOPLE, ["provision-viewers", "provision-operators", "provision-admins", "wheel"])
    yield d
    d.close()


def _auth(directory, **kw) -> AuthConfig:
    return AuthConfig(ldap_url=directory.url, bind_dn=SEARCH_DN, user_base=USERS, group_base=GROUPS,
                      viewer_groups=["provision-viewers"], operator_groups=["provision-operators"],
                      admin_groups=["provision-admins"], **kw)


@pytest.fixture
def wf(tmp_path, directory):
    svc = build_wf(tmp_path)
    auth = _auth(directory, login_attempts=3, lockout=600)
    svc = dataclasses.replace(svc, cfg=svc.cfg.model_copy(update={"auth": auth}),
                              directory=LdapDirectory(auth, SEARCH_PASSWORD))
    yield svc
    svc.close()


@pytest.fixture
def app(wf):
    """One app, as one `serve` has: its login throttle counts every attempt."""
    return create_app(wf, admin_token=ADMIN_TOKEN, secret_key="k" * 32)


class Console:
    """A browser: its own cookies, from `addr`."""

    def __init__(self, app, addr: str = "192.0.2.10") -> None:
        self.client = app.test_client()
        self.env = {"REMOTE_ADDR": addr}

    def csrf(self, path: str = "/login") -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', self.client.get(path, environ_base=self.env).text).group(1)

    def login(self, user: str = "", password: str = "", token: str = ""):
        return self.client.post("/login", data={"username": user, "password": password, "token": token,
                                                "csrf_token": self.csrf()}, environ_base=self.env)

    def post(self, path: str, **data):
        return self.client.post(path, data={**data, "csrf_token": self.csrf("/")}, environ_base=self.env)

    def make_token(self) -> str:
        page = self.post("/tokens", label="script", days="7")
        assert page.status_code == 201, page.text
        return re.search(r'<code id="new-token">([^<]+)</code>', page.text).group(1)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_each_role_does_what_it_may_over_the_api_and_in_the_console(wf, app):
    tokens = {}
    for user in ("alice", "bob", "carol"):
        c = Console(app)
        assert c.login(user, PEOPLE[user][0]).status_code == 302
        tokens[user] = c.make_token()
        if user == "bob":
            refused = c.post("/rebuild/plan", nodes="rhvnode3", max_parallel="1")  # the console refuses too
            assert refused.status_code == 403 and "bob is a viewer: this needs the operator role" in refused.text
        if user == "alice":
            assert c.post("/rebuild/plan", nodes="rhvnode3", max_parallel="1").status_code == 200
    api = app.test_client()
    for user in ("alice", "bob", "carol"):  # every role sees the fleet and a node (secrets masked)
        assert api.get("/api/v1/nodes", headers=_bearer(tokens[user])).status_code == 200
    seen = api.get("/api/v1/nodes/rhvnode3/render/kickstart", headers=_bearer(tokens["bob"]))
    assert seen.status_code == 200 and "%post" in seen.text  # a viewer sees what a node will get
    r = api.post("/api/v1/rebuilds", json={"nodes": ["rhvnode3"]}, headers=_bearer(tokens["bob"]))
    assert r.status_code == 403 and r.json["error"] == "bob is a viewer: this needs the operator role"
    r = api.post("/api/v1/rebuilds", json={"nodes": ["rhvnode3"]}, headers=_bearer(tokens["alice"]))
    assert r.status_code == 202
    assert api.post(f"/api/v1/rebuilds/{r.json['id']}/abort", headers=_bearer(tokens["bob"])).status_code == 403
    assert api.post(f"/api/v1/rebuilds/{r.json['id']}/abort", headers=_bearer(tokens["alice"])).status_code == 202
    inventory = "nodes: []\n"
    r = api.post("/api/v1/nodes", data=inventory, headers=_bearer(tokens["alice"]))
    assert r.status_code == 403 and r.json["error"] == "alice is an operator: this needs the admin role"
    assert api.post("/api/v1/nodes", data=inventory, headers=_bearer(tokens["carol"])).status_code == 200
    assert api.post("/api/v1/nodes", data=inventory, headers=_bearer(ADMIN_TOKEN)).status_code == 200  # break-glass
    actors = {(a.actor, a.action, a.outcome) for a in wf.store.audit()}
    assert {("alice", "rebuild.submit", "ok"), ("alice", "rebuild.abort", "ok"), ("carol", "node.import", "ok"),
            ("admin (break-glass token)", "node.import", "ok")} <= actors


def test_refused_logins_say_little_and_the_audit_says_why(wf, app):
    c = Console(app)
    cases = [("alice", "wrong", "wrong user name or password", "wrong password"),
             ("nobody", "x", "wrong user name or password", "no such user"),
             ("dave", "dave-pw", "this account has no role in provision", "in none of the role groups (member of: wheel)"),
             ("erin", "erin-pw", "this account is disabled", "account disabled (nsAccountLock)"),
             ("alice", "", "wrong user name or password", "empty password"),
             ("alice)(uid=*", "x", "wrong user name or password", "is not a directory name")]
    for user, password, told, why in cases:
        r = Console(app, addr=f"198.51.100.{len(user)}").login(user, password)
        assert r.status_code == 401 and told in r.text, (user, r.text)
        row = wf.store.audit(limit=1)[0]
        assert (row.action, row.outcome) == ("login", "refused") and why in row.detail, (user, row)
        assert row.actor == f"{user} (not logged in)"
        assert password == "" or password not in row.detail.replace(why, "")  # never the password
    assert c.login("alice", "alice-pw").status_code == 302
    assert wf.store.audit(limit=1)[0].actor == "alice"


def test_with_the_directory_down_logins_fail_clearly_and_the_break_glass_token_still_works(wf, app, directory):
    directory.stop()
    try:
        r = Console(app).login("alice", "alice-pw")
        assert r.status_code == 503 and "the directory cannot be reached" in r.text
        assert "Connection refused" in wf.store.audit(limit=1)[0].detail
        assert Console(app).login(token=ADMIN_TOKEN).status_code == 302
        assert wf.store.audit(limit=1)[0].actor == "admin (break-glass token)"
    finally:
        directory.start()
    assert Console(app).login("alice", "alice-pw").status_code == 302


def test_failed_logins_for_a_name_are_throttled_even_with_the_right_password_then(wf, app):
    for i in range(3):  # from three addresses: the name's count, not one address's, reaches the limit
        assert Console(app, addr=f"203.0.113.{i + 1}").login("alice", "guess").status_code == 401
    r = Console(app, addr="203.0.113.9").login("alice", "alice-pw")
    assert r.status_code == 429 and "too many failed logins" in r.text
    assert wf.store.audit(limit=1)[0].detail == "throttled"
    assert Console(app, addr="203.0.113.9").login("bob", "bob-pw").status_code == 302  # another name: not held
    for i in range(3):  # from one address, several names: the address is held
        Console(app, addr="203.0.113.50").login(f"user{i}", "guess")
    assert Console(app, addr="203.0.113.50").login(token=ADMIN_TOKEN).status_code == 429


def test_a_revoked_token_is_refused_at_once_and_only_its_owner_or_an_admin_revokes_it(wf, app):
    c = Console(app)
    c.login("alice", "alice-pw")
    token = c.make_token()
    api = app.test_client()
    mine = api.get("/api/v1/tokens", headers=_bearer(token)).json["tokens"]
    assert [(t["user"], t["role"], t["label"], t["revoked"]) for t in mine] == [("alice", "operator", "script", False)]
    assert token not in str(mine) and wf.store.api_tokens()[0].last_used_at is not None
    bob = Console(app)
    bob.login("bob", "bob-pw")
    bob_token = bob.make_token()
    assert api.delete(f"/api/v1/tokens/{mine[0]['id']}", headers=_bearer(bob_token)).status_code == 404
    assert api.get("/api/v1/nodes", headers=_bearer(token)).status_code == 200
    assert api.delete(f"/api/v1/tokens/{mine[0]['id']}", headers=_bearer(token)).json["revoked"] is True
    assert api.get("/api/v1/nodes", headers=_bearer(token)).status_code == 401  # the next request
    made = api.post("/api/v1/tokens", json={"label": "x", "days": 9999}, headers=_bearer(bob_token))
    assert made.status_code == 400 and "days" in made.json["error"]
    made = api.post("/api/v1/tokens", json={"label": "ci"}, headers=_bearer(bob_token))
    assert made.status_code == 201 and made.json["token"].startswith("pvt_") and made.json["role"] == "viewer"
    assert api.delete(f"/api/v1/tokens/{made.json['id']}", headers=_bearer(ADMIN_TOKEN)).status_code == 200
    assert api.get("/api/v1/nodes", headers=_bearer(made.json["token"])).status_code == 401
    for row in wf.store.audit():
        assert "pvt_" not in row.detail and "pvt_" not in row.target


def test_the_audit_rows_of_a_whole_rebuild_name_who_did_each_step(wf, app):
    alice = Console(app)
    alice.login("alice", "alice-pw")
    api = app.test_client()
    token = alice.make_token()
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle)
    installer.start()
    conductor = Conductor(wf, lease=5.0, poll=0.05).start()
    try:
        run_id = api.post("/api/v1/rebuilds", json={"nodes": NAMES, "max_parallel": 1, "canary": 0},
                          headers=_bearer(token)).json["id"]
        api.post(f"/api/v1/rebuilds/{run_id}/pause", headers=_bearer(token))
        carol = Console(app)
        carol.login("carol", "carol-pw")
        carol.post(f"/runs/{run_id}/continue")
        deadline = time.monotonic() + 120
        while not wf.store.rebuild(run_id).finished:
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.05)
        assert wf.store.rebuild(run_id).status == "done"
    finally:
        conductor.stop()
        installer.stop.set()
    rows = [(a.actor, a.action, a.outcome) for a in reversed(wf.store.audit(target=f"rebuild {run_id}"))]
    assert rows == [("alice", "rebuild.submit", "ok"), ("alice", "rebuild.pause", "ok"),
                    ("carol", "rebuild.continue", "ok")]
    page = carol.client.get(f"/runs/{run_id}", environ_base=carol.env).text
    assert "alice" in page and "carol" in page and "rebuild.continue" in page


def test_the_cli_makes_a_token_for_a_directory_user_that_the_api_takes(wf, app, tmp_path, directory):
    (tmp_path / "search.pw").write_text(SEARCH_PASSWORD + "\n")
    (tmp_path / "alice.pw").write_text("alice-pw\n")
    cfg = write_config(tmp_path, extra=f"""
[auth]
ldap_url = "{directory.url}"
bind_dn = "{SEARCH_DN}"
bind_password_file = "{tmp_path}/search.pw"
user_base = "{USERS}"
group_base = "{GROUPS}"
operator_groups = ["provision-operators"]
""")
    out = run_cli("token", "create", "--user", "alice", "--label", "ci", "--password-file", str(tmp_path / "alice.pw"),
                  config=cfg)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("pvt_") and "for alice (operator)" in out.stderr
    api = app.test_client()
    assert api.get("/api/v1/tokens", headers=_bearer(token)).json["tokens"][0]["label"] == "ci"
    (tmp_path / "bad.pw").write_text("nope\n")
    bad = run_cli("token", "create", "--user", "alice", "--label", "x", "--password-file", str(tmp_path / "bad.pw"),
                  config=cfg)
    assert bad.returncode == 2 and "wrong user name or password" in bad.stderr and "pvt_" not in bad.stdout
    listed = run_cli("token", "list", config=cfg)
    assert "alice" in listed.stdout and "operator" in listed.stdout and token not in listed.stdout
    assert run_cli("token", "revoke", "1", config=cfg).returncode == 0
    assert api.get("/api/v1/tokens", headers=_bearer(token)).status_code == 401


def test_the_cli_acts_as_a_tokens_user_with_its_role(tmp_path):
    """With --token-file (or PROVISION_TOKEN) a CLI command is the token's user: its role is
    checked and the audit trail names them; a dead token is refused."""
    from provision import config as config_mod
    from provision import services

    from .conftest import EXAMPLE
    cfg = write_config(tmp_path)
    assert run_cli("node", "import", str(EXAMPLE), config=cfg).returncode == 0
    svc = services.build(config_mod.load(cfg), bootcheck=False)
    try:
        _, viewer = svc.store.create_api_token("bob", "viewer", "cli", 1)
        _, admin = svc.store.create_api_token("carol", "admin", "cli", 1)
        dead, revoked = svc.store.create_api_token("carol", "admin", "old", 1)
        svc.store.revoke_api_token(dead.id)
    finally:
        svc.close()
    (tmp_path / "bob.token").write_text(viewer + "\n")
    refused = run_cli("--token-file", str(tmp_path / "bob.token"), "node", "remove", "rhvnode5", "--yes", config=cfg)
    assert refused.returncode == 2 and "bob is a viewer: this needs the admin role" in refused.stderr
    refused = run_cli("--token-file", str(tmp_path / "bob.token"), "rebuild", "rhvnode5", "--yes", config=cfg)
    assert refused.returncode == 2 and "this needs the operator role" in refused.stderr
    assert run_cli("--token-file", str(tmp_path / "bob.token"), "node", "list", config=cfg).returncode == 0
    (tmp_path / "carol.token").write_text(admin)
    ok = run_cli("--token-file", str(tmp_path / "carol.token"), "node", "remove", "rhvnode5", "--yes", config=cfg)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "dead.token").write_text(revoked)
    gone = run_cli("--token-file", str(tmp_path / "dead.token"), "node", "remove", "rhvnode4", "--yes", config=cfg)
    assert gone.returncode == 2 and "not live" in gone.stderr
    rows = [(r["actor"], r["action"], r["target"], r["outcome"]) for r in
            reversed(__import__("json").loads(run_cli("audit", "--json", config=cfg).stdout))]
    assert ("bob", "node.remove", "rhvnode5", "refused") in rows and ("carol", "node.remove", "rhvnode5", "ok") in rows


def test_ldaps_and_starttls_check_the_directorys_certificate_against_the_ca_file(tmp_path):
    from .fakes.tls import make_tls

    tls, other = make_tls(tmp_path / "tls"), make_tls(tmp_path / "other")
    directory = Slapd({"alice": ("alice-pw", ["provision-operators"], False)}, ["provision-operators"], tls=tls)
    try:
        for url, starttls in ((directory.ldaps_url, False), (directory.url, True)):
            ok = LdapDirectory(_auth(directory, ca_file=tls.ca, starttls=starttls).model_copy(update={"ldap_url": url}),
                               SEARCH_PASSWORD)
            assert ok.authenticate("alice", "alice-pw").role == "operator", url
            wrong = LdapDirectory(_auth(directory, ca_file=other.ca, starttls=starttls)
                                  .model_copy(update={"ldap_url": url}), SEARCH_PASSWORD)
            with pytest.raises(DirectoryDown, match="CERTIFICATE_VERIFY_FAILED"):
                wrong.authenticate("alice", "alice-pw")
    finally:
        directory.close()


def test_a_directory_that_hangs_or_refuses_the_search_account_is_down_within_the_timeout(directory):
    """A server that accepts and never answers, and a search account the directory refuses: each
    is DirectoryDown naming the directory, within [auth] timeout, never a hang or a traceback."""
    import socket
    import threading

    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True).start()
    try:
        cfg = _auth(directory, timeout=1.0).model_copy(update={"ldap_url": f"ldap://127.0.0.1:{silent.getsockname()[1]}"})
        started = time.monotonic()
        with pytest.raises(DirectoryDown, match="directory ldap://127.0.0.1"):
            LdapDirectory(cfg, SEARCH_PASSWORD).authenticate("alice", "alice-pw")
        assert time.monotonic() - started < 30  # bounded by the timeout, not by the server
    finally:
        for s in held:
            s.close()
        silent.close()
    with pytest.raises(DirectoryDown, match="the search account was refused"):
        LdapDirectory(_auth(directory), "not-the-password").authenticate("alice", "alice-pw")
