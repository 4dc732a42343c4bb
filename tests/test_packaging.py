"""The packaging in packaging/: the systemd unit checked by systemd-analyze (verify, and its
sandboxing by `security --offline`), the sysusers entry applied by systemd-sysusers to a scratch
root, the RPM spec parsed by rpmspec and linted by rpmlint, and the Containerfile parsed and held
to the rules below (no container engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from dockerfile_parse import DockerfileParser

from .conftest import REPO

PKG = REPO / "packaging"


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    assert path, f"{name} not found: make test installs it"
    return path


def _unit(tmp_path: Path) -> Path:
    """The unit as shipped, with ExecStart pointing at this venv's provision (verify checks that the
    command exists; on a host the RPM puts it at /usr/bin/provision)."""
    unit = tmp_path / "provision.service"
    unit.write_text((PKG / "provision.service").read_text().replace("/usr/bin/provision",
                                                                   str(Path(sys.executable).parent / "provision")))
    return unit


def test_the_systemd_unit_verifies_and_is_sandboxed(tmp_path):
    unit = _unit(tmp_path)
    verify = subprocess.run([_tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = subprocess.run([_tool("systemd-analyze"), "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True, timeout=60)
    level = float(re.search(r"Overall exposure level for provision.service: ([\d.]+)", security.stdout).group(1))
    assert level <= 2.5, security.stdout[-2000:]  # systemd's scale: 0 (sealed) to 10; "OK" is below 3
    text = (PKG / "provision.service").read_text()
    for directive in ("ProtectSystem=strict", "StateDirectory=provision", "NoNewPrivileges=yes",
                      "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                      "User=provision", "ExecStart=/usr/bin/provision serve", "Restart=on-failure"):
        assert re.search(rf"^{re.escape(directive)}$", text, re.M), directive


def test_the_sysusers_entry_makes_the_service_user(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    out = subprocess.run([_tool("systemd-sysusers"), f"--root={root}", str(PKG / "provision.sysusers")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    passwd = (root / "etc/passwd").read_text()
    assert re.search(r"^provision:x:\d+:\d+:provision server:/var/lib/provision:", passwd, re.M), passwd


def test_the_rpm_spec_parses_and_lints_clean():
    spec = PKG / "provision.spec"
    parsed = subprocess.run([_tool("rpmspec"), "-P", str(spec)], capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0, parsed.stderr
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert re.search(rf"^Version:\s+{re.escape(version)}$", parsed.stdout, re.M)
    for path in ("packaging/provision.service", "packaging/provision.sysusers", "examples/provision.toml"):
        assert path in parsed.stdout and (REPO / path).is_file(), path
    lint = subprocess.run([_tool("rpmlint"), str(spec)], capture_output=True, text=True, timeout=120)
    assert re.search(r" 0 errors, \d+ warnings", lint.stdout) and ": E: " not in lint.stdout, lint.stdout


def test_the_containerfile_builds_a_wheel_and_runs_unprivileged_with_a_healthcheck():
    with open(PKG / "Containerfile") as fh:  # path= would look for a file named Dockerfile
        structure = DockerfileParser(fileobj=fh).structure
    stages = [i for i in structure if i["instruction"] == "FROM"]
    assert len(stages) == 2
    for stage in stages:  # a pinned base: a rebuild next year gets the same one
        image = stage["value"].split()[0]
        assert re.search(r":\d+(\.\d+)*$", image), image
    final = structure[structure.index(stages[-1]):]
    kinds = [i["instruction"] for i in final]
    assert "ADD" not in [i["instruction"] for i in structure]
    user = next(i["value"] for i in final if i["instruction"] == "USER")
    assert not user.startswith(("root", "0")), user
    health = next(i["value"] for i in final if i["instruction"] == "HEALTHCHECK")
    assert "/healthz" in health
    assert "69/udp" in next(i["value"] for i in final if i["instruction"] == "EXPOSE")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")  # nothing runs as root after
    copies = [i["value"] for i in final if i["instruction"] == "COPY"]
    assert copies == ["--from=build /wheels /tmp/wheels"]
    assert '"provision"' in next(i["value"] for i in final if i["instruction"] == "ENTRYPOINT")
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)
