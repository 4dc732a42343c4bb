"""The console's fleet page through the Flask test client: counts per state, failed first, sorting,
grouping by cluster, filters kept in every link, pages; and at 5,000 nodes it answers in under a
second."""

from __future__ import annotations

import re
import time

import pytest

from bench.gen import nodes as generated
from provision.domain import parse_nodes
from provision.web import create_app
from provision.workflow.machine import advance

from .workflow_helpers import NAMES, build_wf

TOKEN = "t" * 32


@pytest.fixture
def wf(tmp_path):
    svc = build_wf(tmp_path)
    yield svc
    svc.close()


def console(wf):
    client = create_app(wf, admin_token=TOKEN, secret_key="k" * 32).test_client()
    page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"token": TOKEN, "csrf_token": csrf}).status_code == 302
    return client


def names_shown(html: str) -> list[str]:
    return re.findall(r'<tr data-text="[^"]*" data-node="([^"]+)"', html)


def test_counts_failed_first_sorting_grouping_and_filters_in_the_url(wf):
    advance(wf.store, "rhvnode5", "start")
    advance(wf.store, "rhvnode5", "fail", reason="engine refused the maintenance")
    advance(wf.store, "rhvnode4", "start")
    wf.store.record_power("rhvnode3", "off")
    client = console(wf)
    page = client.get("/").text
    assert names_shown(page) == ["rhvnode5", "rhvnode4", "rhvnode3"]  # failed, in flight, ready
    counts = dict(re.findall(r'class="count state-(\w+)[^"]*" data-state="\w+">\w+ <b>(\d+)</b>', page))
    assert counts == {"failed": "1", "preflight": "1", "ready": "1"}
    assert "in preflight: engine refused the maintenance" in page
    row3 = page[page.index('data-node="rhvnode3"'):].split("</tr>")[0]
    assert "127.0.10.11" in row3 and "ipmi 127.0.0.1:" in row3 and 'power-off">off<' in row3 and " s ago" in row3
    assert 'power-unknown">unknown<' in page  # never seen through its BMC
    # sorting by name, then descending; the header link toggles the direction and keeps the filter
    assert names_shown(client.get("/?sort=name").text) == NAMES
    page = client.get("/?sort=name&dir=desc&cluster=ocpcluster").text
    assert names_shown(page) == list(reversed(NAMES))
    assert 'href="/?cluster=ocpcluster&amp;sort=name"' in page  # Node: back to ascending, the cluster kept
    # a count is a filter, and keeps the others
    page = client.get("/?state=failed&q=node").text
    assert names_shown(page) == ["rhvnode5"] and "1 of 3 node(s)" in page
    assert 'href="/?q=node&amp;state=preflight"' in page
    # grouping by cluster: a group row with its select-all box
    page = client.get("/?group=cluster").text
    assert 'class="all-cluster" data-cluster="ocpcluster"' in page and page.count('<tr class="group">') == 1
    # unknown values fall back to the defaults rather than fail
    assert names_shown(client.get("/?sort=bogus&per=7&page=x&state=nope").text) == ["rhvnode5", "rhvnode4", "rhvnode3"]


def test_five_thousand_nodes_page_by_page_in_under_a_second(wf):
    wf.store.import_nodes(parse_nodes(generated(5000)))
    for name in ("hv4998", "hv0007"):
        advance(wf.store, name, "start")
        advance(wf.store, name, "fail", reason="BMC refused the login")
    client = console(wf)
    took = []
    for path in ("/", "/?page=2", "/?sort=name&dir=desc&group=cluster&per=500", "/?q=hv12&state=ready"):
        t0 = time.perf_counter()
        resp = client.get(path)
        took.append(time.perf_counter() - t0)
        assert resp.status_code == 200
        if path == "/":
            page = resp.text
    print("fleet page seconds at 5,003 nodes:", [round(t, 3) for t in took])
    assert max(took) < 1.0, took
    shown = names_shown(page)
    assert len(shown) == 100 and shown[:2] == ["hv0007", "hv4998"]  # failed first, of 5,003
    assert "5003 of 5003 node(s), page 1 of 51." in page and 'rel="next"' in page
    assert 'href="/?page=51"' in page
    second = names_shown(client.get("/?page=2").text)
    assert len(second) == 100 and not set(second) & set(shown)
    per500 = client.get("/?sort=name&dir=desc&group=cluster&per=500").text
    assert len(names_shown(per500)) == 500 and per500.count('<tr class="group">') == 25  # 20 nodes per cluster
