"""provision as an operator installs it: a wheel built by `python -m build` (sdist, then the wheel
from the sdist, as a packager does) into a fresh venv; with no checkout in reach it renders a
kickstart with the templates it ships, serves, and rebuilds three nodes end to end."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO
from .test_e2e import Lab, rebuild_all_to_done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The Python of a new venv with provision installed from its wheel. Its dependencies come from
    the test venv by a path entry (a .pth line adds the directory, not the checkout the test venv's
    editable install points at): the wheel itself is installed with --no-deps."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp / "dist"), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheel = next((tmp / "dist").glob("provision-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for want in ("provision/_templates/kickstarts/rhvh.ks.j2", "provision/_templates/kickstarts/snippets/disk.ks.j2",
                 "provision/_templates/bootfiles/grub.cfg.j2", "provision/store/migrations/versions/0001_first_release.py",
                 "provision/web/templates/fleet.html"):
        assert want in names, want
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test-venv-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(venv / "bin/python"), "-I", "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                          "--force-reinstall", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    shown = subprocess.run([str(venv / "bin/python"), "-I", "-c", "import provision; print(provision.__file__)"],
                           capture_output=True, text=True, cwd=tmp, timeout=60)
    assert shown.stdout.strip().startswith(str(site)), shown  # the installed copy, not the checkout
    return venv / "bin/python"


def test_the_installed_wheel_renders_with_the_templates_it_ships(installed, tmp_path):
    from .conftest import write_config
    cfg = write_config(tmp_path, templates=False)
    run = [str(installed), "-I", "-m", "provision", "--config", str(cfg)]
    assert subprocess.run([*run, "node", "import", str(REPO / "examples/inventory.yaml")], cwd=tmp_path,
                          capture_output=True, timeout=120).returncode == 0
    ks = subprocess.run([*run, "render", "rhvnode3", "--kind", "kickstart"], cwd=tmp_path, capture_output=True, text=True,
                        timeout=120)
    assert ks.returncode == 0, ks.stderr
    assert "liveimg --url=" in ks.stdout and "network --device=" in ks.stdout
    grub = subprocess.run([*run, "render", "rhvnode3", "--kind", "grub"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert grub.returncode == 0 and "set default=" in grub.stdout, grub.stderr


def test_installed_its_state_goes_to_var_lib_and_a_site_may_replace_its_templates(installed, tmp_path):
    shown = subprocess.run([str(installed), "-I", "-c", "from provision import config; c = config.load(); "
                            "print(c.paths.state_dir, c.server.db_url, c.paths.bootfiles, c.paths.templates)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    state, db, bootfiles, templates = shown.stdout.split()
    assert (state, db, bootfiles) == ("/var/lib/provision", "sqlite:////var/lib/provision/provision.db",
                                      "/var/lib/provision/bootfiles")
    assert templates.endswith("site-packages/provision/_templates")
    site = tmp_path / "site-templates"
    import shutil
    for sub in ("kickstarts", "bootfiles"):
        shutil.copytree(templates + "/" + sub, site / sub)
    ks = site / "kickstarts" / "rhvh.ks.j2"
    ks.write_text("# this site's own kickstart\n" + ks.read_text())
    from .conftest import write_config
    cfg = write_config(tmp_path, templates=False, extra=f'templates = "{site}"')
    run = [str(installed), "-I", "-m", "provision", "--config", str(cfg)]
    assert subprocess.run([*run, "node", "import", str(REPO / "examples/inventory.yaml")], cwd=tmp_path,
                          capture_output=True, timeout=120).returncode == 0
    out = subprocess.run([*run, "render", "rhvnode3", "--kind", "kickstart"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("# this site's own kickstart"), out.stderr


def test_the_installed_wheel_serves_and_rebuilds_three_nodes(installed, tmp_path):
    lab = Lab(tmp_path, installed=installed)
    try:
        rebuild_all_to_done(lab)
    finally:
        lab.close()
