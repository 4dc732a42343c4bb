"""The console node page's actions (check, capture, retry, power on/off/cycle, boot installer once),
each behind its role and a confirmation naming the node, each in the audit trail; and the step
timeline of the node's last rebuild."""

from __future__ import annotations

import dataclasses
import re

import pytest

from provision.capture import service as capture_service
from provision.config import AuthConfig
from provision.integrations.directory import FakeDirectory
from provision.web import create_app
from provision.workflow import states as S
from provision.workflow.machine import advance

from .workflow_helpers import build_wf

TOKEN = "t" * 32


@pytest.fixture
def wf(tmp_path):
    svc = build_wf(tmp_path)
    auth = AuthConfig(ldap_url="ldap://127.0.0.1/", user_base="cn=users,dc=lab", group_base="cn=groups,dc=lab",
                      viewer_groups=["viewers"], operator_groups=["operators"])
    users = {"vera": ("vera-pw", ["viewers"], False), "otto": ("otto-pw", ["operators"], False)}
    svc = dataclasses.replace(svc, cfg=svc.cfg.model_copy(update={"auth": auth}),
                              directory=FakeDirectory(auth, users))
    yield svc
    svc.close()


class Console:
    def __init__(self, wf, user: str) -> None:
        self.client = create_app(wf, admin_token=TOKEN, secret_key="k" * 32).test_client()
        login = self.client.post("/login", data={"username": user, "password": f"{user}-pw", "csrf_token": self.csrf("/login")})
        assert login.status_code == 302, login.text

    def csrf(self, path: str = "/") -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', self.client.get(path).text).group(1)

    def do(self, node: str, action: str, confirm: str | None = None):
        data = {"csrf_token": self.csrf(f"/nodes/{node}"), "confirm": node if confirm is None else confirm}
        return self.client.post(f"/nodes/{node}/do/{action}", data=data)


def test_power_actions_need_the_operator_role_and_the_nodes_name_back(wf):
    bmc = wf.power.bmcs  # the fake BMCs, by node
    otto = Console(wf, "otto")
    page = otto.client.get("/nodes/rhvnode3").text
    assert 'data-confirm="Power OFF rhvnode3 through its BMC (127.0.0.1:' in page and "power unknown" in page
    refused = otto.do("rhvnode3", "power-off", confirm="rhvnode4")
    assert refused.status_code == 400 and "confirm: the node&#39;s name (rhvnode3) must come back" in refused.text
    assert "rhvnode3" not in bmc or bmc["rhvnode3"].power == "on"
    done = otto.do("rhvnode3", "power-off")
    assert done.status_code == 302 and done.headers["Location"].endswith("/nodes/rhvnode3")
    assert bmc["rhvnode3"].power == "off" and wf.store.fleet(name="rhvnode3")[0].power_state == "off"
    page = otto.client.get("/nodes/rhvnode3").text
    assert "rhvnode3: powered off" in page and "power off, seen " in page
    assert otto.do("rhvnode3", "power-on").status_code == 302 and bmc["rhvnode3"].power == "on"
    assert otto.do("rhvnode3", "power-cycle").status_code == 302 and bmc["rhvnode3"].cycles() == 1
    assert [c for _, c in bmc["rhvnode3"].calls] == ["off", "on", "cycle"]
    assert otto.do("rhvnode3", "boot-installer").status_code == 302
    assert bmc["rhvnode3"].boot == "network" and bmc["rhvnode3"].uefi is True
    assert otto.do("rhvnode3", "reboot-into-bios").status_code == 404
    rows = [(a.actor, a.action, a.target, a.outcome) for a in reversed(wf.store.audit(target="rhvnode3"))]
    assert rows == [("otto", "node.power.off", "rhvnode3", "refused"), ("otto", "node.power.off", "rhvnode3", "ok"),
                    ("otto", "node.power.on", "rhvnode3", "ok"), ("otto", "node.power.cycle", "rhvnode3", "ok"),
                    ("otto", "node.boot.installer", "rhvnode3", "ok")]
    # a node a run drives is not powered by hand
    run = wf.store.create_rebuild(["rhvnode4"], {"max_parallel": 1}, runner="service")
    busy = otto.do("rhvnode4", "power-off")
    assert busy.status_code == 409 and f"is in rebuild {run.id}" in busy.text
    assert "rhvnode4" not in bmc or bmc["rhvnode4"].power == "on"


def test_a_viewer_may_check_and_nothing_else(wf):
    vera = Console(wf, "vera")
    page = vera.client.get("/nodes/rhvnode3").text
    assert re.search(r'id="do-power-off" disabled title="needs the operator role"', page)
    assert re.search(r'id="do-check">Check<', page)
    assert vera.do("rhvnode3", "power-off").status_code == 403
    assert "rhvnode3" not in wf.power.bmcs or wf.power.bmcs["rhvnode3"].power == "on"
    checked = vera.do("rhvnode3", "check")
    assert checked.status_code == 200 and '<table id="checks"' in checked.text
    rows = re.findall(r"<tr><td>([a-z ]+)</td><td class=\"(ok|err)\">", checked.text)
    assert ("facts", "ok") in rows and ("engine", "ok") in rows and len(rows) >= 6
    assert [(a.actor, a.action, a.outcome) for a in wf.store.audit(target="rhvnode3")][:2] == [
        ("vera", "node.check", "ok"), ("vera", "node.power.off", "refused")]


def test_capture_and_retry_from_the_node_page_and_its_step_timeline(wf, monkeypatch):
    otto = Console(wf, "otto")
    assert "Never rebuilt by provision." in otto.client.get("/nodes/rhvnode5").text
    failed = otto.do("rhvnode5", "capture")  # this engine fake cannot report NICs: the page says so
    assert failed.status_code == 502 and "this engine cannot report host NICs" in failed.text
    facts = wf.store.get("rhvnode5").node.facts
    monkeypatch.setattr(capture_service, "from_engine", lambda _ctx, _name: facts)  # an engine that reports them
    captured = otto.do("rhvnode5", "capture")
    assert captured.status_code == 302
    assert re.search(r"rhvnode5: facts snapshot #\d+ \(engine\): no changes", otto.client.get("/nodes/rhvnode5").text)
    assert [(a.action, a.outcome) for a in wf.store.audit(target="rhvnode5")] == [("node.capture", "ok"),
                                                                                 ("node.capture", "failed")]
    for event in ("start", "ok", "ok"):
        advance(wf.store, "rhvnode5", event)
    advance(wf.store, "rhvnode5", "fail", reason="the engine refused the maintenance")
    page = otto.client.get("/nodes/rhvnode5").text
    steps = re.findall(r'<tr class="row-(\w+)"><td>(\w+)</td><td>[0-9T:-]+</td><td>([0-9T:-]+|now)</td>'
                       r'<td class="num">(\d+ s)</td><td>(\w+)</td></tr>', page)
    assert [(s[1], s[4]) for s in steps] == [("preflight", "ok"), ("capture", "ok"), ("drain", "failed")]
    assert 'id="do-retry">Retry at drain<' in page
    retried = otto.do("rhvnode5", "retry")
    assert retried.status_code == 302 and "/runs/" in retried.headers["Location"]
    (run,) = wf.store.rebuilds()
    assert run.nodes == ["rhvnode5"] and run.options["retry"] is True
    assert wf.store.node_state("rhvnode5").state == S.FAILED  # the service's run resumes it


def test_a_bmc_that_fails_the_action_is_a_page_saying_so_and_a_failed_audit_row(wf):
    from provision.power.fake import FakeBmc

    otto = Console(wf, "otto")
    wf.power.bmcs["rhvnode3"] = FakeBmc(fail="unreachable")
    failed = otto.do("rhvnode3", "power-cycle")
    assert failed.status_code == 502 and "node rhvnode3: BMC" in failed.text and "password" not in failed.text
    wf.power.bmcs["rhvnode3"] = FakeBmc(fail="auth")
    assert otto.do("rhvnode3", "boot-installer").status_code == 502
    assert wf.store.fleet(name="rhvnode3")[0].power_state is None  # nothing was seen
    assert [(a.action, a.outcome) for a in wf.store.audit(target="rhvnode3")] == [
        ("node.boot.installer", "failed"), ("node.power.cycle", "failed")]
    wf.power.bmcs["rhvnode3"] = FakeBmc()  # the BMC answers again: the same action goes through
    assert otto.do("rhvnode3", "power-cycle").status_code == 302 and wf.power.bmcs["rhvnode3"].cycles() == 1
