"""The web console in real headless Chromium (Debian's chromium and chromedriver, driven by
selenium) against a running `serve` on test_e2e's stack (ipmi_sim BMCs, HTTPS fakes of the engine,
IPA and Satellite, the nodes' installers played from their own addresses): log in, filter the
fleet, open a node, plan a rebuild and confirm it by typing the names back, watch the run reach
`done` live on its page (no reload), abort another one in flight. A screenshot of each page goes
to the test's output directory; with PROVISION_SCREENSHOTS=DIR, also to DIR (docs/screenshots)."""

from __future__ import annotations

import os
import shutil

import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from provision.workflow import states as S

from .chromium import chromium
from .test_e2e import Lab, bmc_commands


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.close()


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path / "chromium")
    yield driver
    driver.quit()


def test_the_console_plans_starts_watches_and_aborts_a_rebuild(lab, browser, tmp_path):
    # a page being replaced by the one a form posts to leaves stale elements for a moment: asked again
    b, wait = browser, WebDriverWait(browser, 180, poll_frequency=0.2,
                                     ignored_exceptions=(StaleElementReferenceException, NoAlertPresentException))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    keep = os.environ.get("PROVISION_SCREENSHOTS")

    def shot(name: str) -> None:
        b.save_screenshot(str(shots / f"{name}.png"))
        if keep:
            shutil.copy(shots / f"{name}.png", os.path.join(keep, f"{name}.png"))

    def text() -> str:
        return b.find_element(By.TAG_NAME, "body").text

    # log in (the fleet redirects to the login page first)
    b.get(lab.url + "/")
    wait.until(lambda d: d.find_elements(By.ID, "token"))
    shot("login")
    b.find_element(By.ID, "token").send_keys((lab.tmp / "admin.token").read_text().strip())
    b.find_element(By.CSS_SELECTOR, "form.box button").click()
    wait.until(lambda d: d.find_elements(By.ID, "fleet"))
    assert all(n in text() for n in ("rhvnode3", "rhvnode4", "rhvnode5")) and "ocpcluster" in text()
    shot("fleet")

    # the filter hides the other rows as you type
    b.find_element(By.ID, "q").send_keys("node4")
    visible = [r.get_attribute("data-text").split()[0] for r in b.find_elements(By.CSS_SELECTOR, "#fleet tbody tr")
               if r.is_displayed()]
    assert visible == ["rhvnode4"], visible
    b.find_element(By.ID, "q").clear()
    b.execute_script("document.getElementById('q').dispatchEvent(new Event('input'))")

    # a node: facts, kept disks, the masked kickstart with pykickstart's verdict, the event log
    b.get(lab.url + "/nodes/rhvnode3")
    page = text()
    assert "INSTALL: wiped" in page and "kept, never touched" in page and "valid" in page and "Event log" in page
    assert "Snapshot history" in page and "********" in b.page_source  # secrets masked
    shot("node")

    # plan a rebuild of two nodes, confirm with the wrong names (refused), then the right ones
    b.get(lab.url + "/")
    for name in ("rhvnode3", "rhvnode4"):
        b.find_element(By.CSS_SELECTOR, f'input[name=nodes][value="{name}"]').click()
    box = b.find_element(By.NAME, "max_parallel")
    box.clear()
    box.send_keys("2")
    b.find_element(By.ID, "plan").click()
    wait.until(lambda d: d.find_elements(By.ID, "typed"))
    assert "2 node(s), 2 wave(s)" in text() and "canary, alone" in text()
    assert "To confirm, type 2 or ocpcluster" in text()
    shot("plan")
    b.find_element(By.ID, "typed").send_keys("rhvnode3")  # a name is not the count or the cluster
    b.find_element(By.ID, "start").click()
    wait.until(lambda d: "nothing was started" in text())
    assert lab.svc.store.rebuilds() == []
    b.find_element(By.ID, "typed").send_keys("2")
    b.find_element(By.ID, "start").click()
    wait.until(lambda d: d.find_elements(By.ID, "nodes"))
    b.execute_script("window.stillThisPage = true")  # a reload would drop it: the updates are live
    wait.until(lambda d: d.find_element(By.ID, "status").text == "done")
    rows = {r.get_attribute("data-node"): r.find_element(By.CSS_SELECTOR, ".st").text
            for r in b.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")}
    assert rows == {"rhvnode3": "✔ done", "rhvnode4": "✔ done"}, rows
    assert b.execute_script("return window.stillThisPage") is True
    assert "0 queued · 0 in flight · 2 done · 0 failed" in text()
    shot("run")
    (run,) = lab.svc.store.rebuilds()
    assert run.status == "done" and all(bmc_commands(lab.bmcs[n]) == ["set boot pxe", "set power 0", "set power 1"]
                                        for n in ("rhvnode3", "rhvnode4"))

    # another run, whose node's installer does not answer: abort it while the node is installing
    lab.hold.add("rhvnode5")
    b.get(lab.url + "/")
    b.find_element(By.CSS_SELECTOR, 'input[name=nodes][value="rhvnode5"]').click()
    b.find_element(By.ID, "plan").click()
    wait.until(lambda d: d.find_elements(By.ID, "typed"))
    b.find_element(By.ID, "typed").send_keys("1")
    b.find_element(By.ID, "start").click()
    wait.until(lambda d: d.find_elements(By.ID, "nodes"))
    wait.until(lambda d: "installing" in d.find_element(By.CSS_SELECTOR, 'tr[data-node="rhvnode5"] .st').text)
    b.find_element(By.ID, "abort").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text == "aborted")
    assert lab.svc.store.node_state("rhvnode5").state == S.INSTALLING  # it finished its step, nothing more
    assert b.find_element(By.ID, "abort").get_attribute("disabled") is not None
    shot("run-aborted")

    # the node the abort left installing: its page offers a Retry at that step, confirmed by name
    b.get(lab.url + "/nodes/rhvnode5")
    assert b.find_element(By.ID, "do-retry").text == "Retry at installing"
    b.find_element(By.ID, "do-retry").click()
    alert = wait.until(lambda d: d.switch_to.alert)
    assert alert.text == "Retry rhvnode5's rebuild at installing?"
    alert.accept()
    wait.until(lambda d: d.find_elements(By.ID, "nodes"))
    lab.hold.discard("rhvnode5")  # its installer goes on
    wait.until(lambda d: d.find_element(By.ID, "status").text == "done")
    assert "0 queued · 0 in flight · 1 done · 0 failed" in text()
    assert lab.svc.store.node_state("rhvnode5").state == S.DONE and bmc_commands(lab.bmcs["rhvnode5"]) == [
        "set boot pxe", "set power 0", "set power 1"]  # taken over where it was: one power cycle

    b.get(lab.url + "/runs")
    assert "aborted" in text() and "done" in text()
    shot("runs")
    assert sorted(p.name for p in shots.iterdir()) == sorted(
        f"{n}.png" for n in ("login", "fleet", "node", "plan", "run", "run-aborted", "runs"))


def test_in_the_browser_a_viewer_is_refused_a_rebuild_and_an_operator_plans_one(tmp_path, browser):
    """Directory users in Chromium: bob (a viewer) sees the fleet and is refused the plan, naming
    the role it needs; alice (an operator) gets the plan; the break-glass token still logs in."""
    from .slapd import GROUPS, SEARCH_DN, SEARCH_PASSWORD, USERS, Slapd

    directory = Slapd({"alice": ("alice-pw", ["provision-operators"], False),
                       "bob": ("bob-pw", ["provision-viewers"], False)}, ["provision-viewers", "provision-operators"])
    (tmp_path / "search.pw").write_text(SEARCH_PASSWORD + "\n")
    lab = Lab(tmp_path, auth=f"""[auth]
ldap_url = "{directory.url}"
bind_dn = "{SEARCH_DN}"
bind_password_file = "{tmp_path}/search.pw"
user_base = "{USERS}"
group_base = "{GROUPS}"
viewer_groups = ["provision-viewers"]
operator_groups = ["provision-operators"]
""")
    b, wait = browser, WebDriverWait(browser, 120, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))

    def text() -> str:
        return b.find_element(By.TAG_NAME, "body").text

    def log_in(user: str, password: str) -> None:
        b.delete_all_cookies()
        b.get(lab.url + "/login")
        wait.until(lambda d: d.find_elements(By.ID, "username"))
        b.find_element(By.ID, "username").send_keys(user)
        b.find_element(By.ID, "password").send_keys(password)
        b.find_element(By.CSS_SELECTOR, "form.box button").click()
        wait.until(lambda d: d.find_elements(By.ID, "fleet"))

    def plan() -> None:
        b.get(lab.url + "/")
        wait.until(lambda d: d.find_elements(By.ID, "fleet"))
        b.find_element(By.CSS_SELECTOR, 'input[name=nodes][value="rhvnode3"]').click()
        b.find_element(By.ID, "plan").click()
    try:
        log_in("bob", "bob-pw")
        assert "rhvnode3" in text()
        plan()
        wait.until(lambda d: "Not allowed" in text())
        assert "bob is a viewer: this needs the operator role" in text()
        log_in("alice", "alice-pw")
        plan()
        wait.until(lambda d: d.find_elements(By.ID, "typed"))
        assert "1 node(s)" in text()
        b.delete_all_cookies()
        b.get(lab.url + "/login")
        wait.until(lambda d: d.find_elements(By.ID, "token"))
        b.find_element(By.ID, "token").send_keys((lab.tmp / "admin.token").read_text().strip())
        b.find_element(By.CSS_SELECTOR, "form.box button").click()
        wait.until(lambda d: d.find_elements(By.ID, "fleet"))
        actors = [a.actor for a in lab.svc.store.audit() if a.action == "login"]
        assert actors == ["admin (break-glass token)", "alice", "bob"]
    finally:
        lab.close()
        directory.close()
