"""Headless Chromium walks every console page of a 40-host upgrade in mid-flight (tests/fleetlab.py):
the fleet with its counts, sorted and grouped by cluster with a cluster ticked at once; the plan
confirmed by the cluster's name; a failed node's page with its step timeline and a power action
confirmed in the browser's dialog; the run's live timeline with its makespan and estimate; the
runs and audit pages. Each page's screenshot goes to the test's directory and, with
PROVISION_SCREENSHOTS=DIR, to DIR (docs/screenshots)."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from provision.web import create_app

from .chromium import chromium
from .fleetlab import populate
from .workflow_helpers import build_wf

TOKEN = "t" * 32


@pytest.fixture
def site(tmp_path):
    wf = build_wf(tmp_path)
    run_id = populate(wf.store)
    server = make_server("127.0.0.1", 0, create_app(wf, admin_token=TOKEN, secret_key="k" * 32), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield wf, f"http://127.0.0.1:{server.server_port}", run_id
    server.shutdown()
    wf.close()


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path / "chromium", "1440,1000")
    yield driver
    driver.quit()


def test_chromium_walks_every_page_of_a_40_host_upgrade(site, browser, tmp_path):
    wf, url, run_id = site
    b, wait = browser, WebDriverWait(browser, 60, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException, NoAlertPresentException))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    keep = os.environ.get("PROVISION_SCREENSHOTS")

    def shot(name: str, height: int | None = None) -> None:
        width = b.get_window_size()["width"]
        b.set_window_size(width, height or min(4000, b.execute_script("return document.body.scrollHeight") + 120))
        b.save_screenshot(str(shots / f"{name}.png"))
        b.set_window_size(width, 1000)
        if keep:
            shutil.copy(shots / f"{name}.png", os.path.join(keep, f"{name}.png"))

    def text() -> str:
        return b.find_element(By.TAG_NAME, "body").text

    def rows() -> list[str]:
        return [r.get_attribute("data-node") for r in b.find_elements(By.CSS_SELECTOR, "#fleet tr[data-node]")]

    b.get(url + "/login")
    wait.until(lambda d: d.find_elements(By.ID, "token"))
    b.find_element(By.ID, "token").send_keys(TOKEN)
    b.find_element(By.CSS_SELECTOR, "form.box button").click()
    wait.until(lambda d: d.find_elements(By.ID, "fleet"))

    # the fleet: counts per state, the failed node first, then the ones in flight
    counts = {a.get_attribute("data-state"): a.text for a in b.find_elements(By.CSS_SELECTOR, "#counts a[data-state]")}
    assert counts == {"failed": "failed 1", "netboot": "netboot 1", "installing": "installing 2", "ready": "ready 14",
                      "done": "done 25"}, counts
    assert rows()[0] == "hv0006" and set(rows()[1:4]) == {"hv0007", "hv0008", "hv0005"} and len(rows()) == 43
    assert "43 of 43 node(s)." in text()  # the 40 and test_e2e's three
    shot("fleet-40")

    # grouped by cluster, sorted by name: one click on a cluster's box ticks its 20 nodes
    b.get(url + "/?group=cluster&sort=name")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#fleet .all-cluster"))
    groups = [g.get_attribute("data-cluster") for g in b.find_elements(By.CSS_SELECTOR, "#fleet .all-cluster")]
    assert groups == ["c000", "c001", "ocpcluster"]
    b.find_element(By.CSS_SELECTOR, '#fleet .all-cluster[data-cluster="c001"]').click()
    ticked = [x.get_attribute("value") for x in b.find_elements(By.CSS_SELECTOR, '#fleet input[name=nodes]:checked')]
    assert ticked == [f"hv{i:04d}" for i in range(20, 40)] and b.find_element(By.ID, "ticked").text == "20 ticked."
    shot("fleet-grouped")
    box = b.find_element(By.NAME, "max_parallel")
    box.clear()
    box.send_keys("5")
    b.find_element(By.ID, "plan").click()
    wait.until(lambda d: d.find_elements(By.ID, "typed"))
    assert "20 node(s) will be wiped and reinstalled" in text() and "To confirm, type 20 or c001" in text()
    shot("plan-cluster", height=1000)
    b.find_element(By.ID, "typed").send_keys("c001")
    b.find_element(By.ID, "start").click()
    wait.until(lambda d: d.find_elements(By.ID, "gantt"))
    new_run = max(r.id for r in wf.store.rebuilds())
    assert wf.store.rebuild(new_run).nodes[0] == "hv0020" and len(wf.store.rebuild(new_run).nodes) == 20
    wf.store.control_rebuild(new_run, "abort")  # no conductor here: it never starts

    # the failed node: why, its steps with their times, and its actions
    b.get(url + "/nodes/hv0006")
    wait.until(lambda d: d.find_elements(By.ID, "steps"))
    steps = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in
             b.find_elements(By.CSS_SELECTOR, "#steps tr")[1:]]
    assert [(s[0], s[4]) for s in steps] == [("preflight", "ok"), ("capture", "ok"), ("drain", "failed")]
    assert steps[2][3].endswith("s") and "min" in steps[2][3]  # drain ran its minutes before it failed
    assert "in drain: the engine did not put the host in maintenance" in text()
    assert not b.find_elements(By.ID, "do-retry")  # its run is live: a retry waits for the run to end
    shot("node-failed")
    b.find_element(By.ID, "do-power-off").click()
    alert = wait.until(lambda d: d.switch_to.alert)
    assert alert.text.startswith("Power OFF hv0006 through its BMC (127.0.0.1:20006)?")
    alert.accept()
    wait.until(lambda d: "Not done" in text())
    assert f"node hv0006 is in rebuild {run_id}, which drives its power" in text()
    assert "hv0006" not in wf.power.bmcs or wf.power.bmcs["hv0006"].power == "on"
    b.get(url + "/nodes/rhvnode3")  # a node no run has: powered off, after the dialog
    wait.until(lambda d: d.find_elements(By.ID, "do-power-off"))
    b.find_element(By.ID, "do-power-off").click()
    wait.until(lambda d: d.switch_to.alert).accept()
    wait.until(lambda d: "rhvnode3: powered off" in text())
    assert wf.power.bmcs["rhvnode3"].power == "off" and "power off, seen 0 s ago" in text()

    # the run in flight: its timeline, makespan and estimate
    b.get(url + f"/runs/{run_id}")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gantt svg rect"))
    bars = b.find_elements(By.CSS_SELECTOR, "#gantt svg rect")
    assert len(bars) == sum(len(s) for s in _spans(wf, run_id).values()) > 40
    assert len(b.find_elements(By.CSS_SELECTOR, '#gantt svg rect[data-outcome="failed"]')) == 1
    assert len(b.find_elements(By.CSS_SELECTOR, '#gantt svg rect[data-outcome="running"]')) == 3
    assert b.find_element(By.ID, "makespan").text == "1 h 15 min"
    wait.until(lambda d: d.find_element(By.ID, "remaining").text.endswith("min"))
    shot("run-timeline")
    b.get(url + "/runs")
    wait.until(lambda d: "Rebuild runs" in text())
    shot("runs-40", height=700)
    b.get(url + "/audit")
    wait.until(lambda d: "node.power.off" in text())
    assert "rebuild.submit" in text()
    shot("audit", height=700)
    assert sorted(p.name for p in shots.iterdir()) == sorted(f"{n}.png" for n in (
        "fleet-40", "fleet-grouped", "plan-cluster", "node-failed", "run-timeline", "runs-40", "audit"))


def _spans(wf, run_id):
    from provision.workflow.timeline import run_spans

    return run_spans(wf.store, wf.store.rebuild(run_id))
