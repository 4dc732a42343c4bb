"""A real directory server for the tests: OpenLDAP's slapd (Debian's `slapd`, which `make test`
installs), on a free loopback port, laid out as FreeIPA lays out its 389 Directory Server:
users under cn=users,cn=accounts, groups (groupOfNames, `member`) under cn=groups,cn=accounts, the
search account under cn=sysaccounts,cn=etc, and FreeIPA's account lock attribute `nsAccountLock`
(its OID and syntax, from 389-ds' schema) on disabled users."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .conftest import free_port

SUFFIX = "dc=lab,dc=example,dc=com"
USERS = f"cn=users,cn=accounts,{SUFFIX}"
GROUPS = f"cn=groups,cn=accounts,{SUFFIX}"
SEARCH_DN = f"uid=provision,cn=sysaccounts,cn=etc,{SUFFIX}"
SEARCH_PASSWORD = "search-secret"
MANAGER = f"cn=Directory Manager,{SUFFIX}"

# 389-ds: 2.16.840.1.113730.3.1.610 nsAccountLock, Directory String; FreeIPA sets it to TRUE on
# a disabled user (ipa user-disable). The auxiliary class only lets slapd store it.
SCHEMA = """attributetype ( 2.16.840.1.113730.3.1.610 NAME 'nsAccountLock'
  DESC 'Operational attribute for Account Inactivation' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.1 NAME 'provisionTestLock' AUXILIARY MAY ( nsAccountLock ) )
"""


def _sbin(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    if not Path(path).exists():
        raise RuntimeError(f"{name} not found: `make test` installs Debian's slapd")
    return path


class Slapd:
    """`users`: name -> (password, [group cn, ...], disabled)."""

    def __init__(self, users: dict[str, tuple[str, list[str], bool]], groups: list[str], tls=None) -> None:
        """`tls` (tests/fakes/tls.py): also listen on ldaps:// (`ldaps_url`), and offer STARTTLS."""
        self.root = Path(tempfile.mkdtemp(prefix="provision-slapd-"))
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_port = free_port() if tls else None
        self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}" if tls else None
        (self.root / "db").mkdir()
        (self.root / "provision-test.schema").write_text(SCHEMA)
        tls_conf = (f"TLSCACertificateFile {tls.ca}\nTLSCertificateFile {tls.cert}\nTLSCertificateKeyFile {tls.key}\n"
                    if tls else "")
        (self.root / "slapd.conf").write_text(tls_conf + f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include {self.root}/provision-test.schema
pidfile {self.root}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{MANAGER}"
rootpw manager-secret
directory {self.root}/db
access to attrs=userPassword by self read by anonymous auth by * none
access to * by dn.exact="{SEARCH_DN}" read by users read by anonymous none
""")
        self.users, self.groups = users, groups
        self._load()
        self.proc: subprocess.Popen | None = None
        self.start()

    def _ldif(self) -> str:
        out = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: lab\no: lab\n"]
        for ou in (f"cn=accounts,{SUFFIX}", USERS, GROUPS, f"cn=etc,{SUFFIX}", f"cn=sysaccounts,cn=etc,{SUFFIX}"):
            out.append(f"dn: {ou}\nobjectClass: top\nobjectClass: nsContainer\ncn: {ou.split(',')[0][3:]}\n"
                       if False else f"dn: {ou}\nobjectClass: top\nobjectClass: organizationalRole\ncn: {ou.split(',')[0][3:]}\n")
        out.append(f"dn: {SEARCH_DN}\nobjectClass: account\nobjectClass: simpleSecurityObject\nuid: provision\n"
                   f"userPassword: {SEARCH_PASSWORD}\n")
        for name, (password, _groups, disabled) in self.users.items():
            lock = "objectClass: provisionTestLock\nnsAccountLock: TRUE\n" if disabled else ""
            out.append(f"dn: uid={name},{USERS}\nobjectClass: inetOrgPerson\n{lock}uid: {name}\ncn: {name}\nsn: {name}\n"
                       f"userPassword: {password}\n")
        for group in self.groups:
            members = [f"member: uid={n},{USERS}" for n, (_p, gs, _d) in self.users.items() if group in gs]
            members = members or [f"member: {SEARCH_DN}"]  # groupOfNames needs one
            out.append(f"dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n" + "\n".join(members) + "\n")
        return "\n".join(out)

    def _load(self) -> None:
        (self.root / "data.ldif").write_text(self._ldif())
        res = subprocess.run([_sbin("slapadd"), "-f", str(self.root / "slapd.conf"), "-l", str(self.root / "data.ldif")],
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"slapadd: {res.stderr}")

    def start(self) -> None:
        urls = self.url + "/" + (f" {self.ldaps_url}/" if self.ldaps_url else "")
        self.proc = subprocess.Popen([_sbin("slapd"), "-f", str(self.root / "slapd.conf"), "-h", urls,
                                      "-d", "0"], stdout=subprocess.DEVNULL, stderr=open(self.root / "slapd.log", "w"))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("slapd did not start: " + (self.root / "slapd.log").read_text()[-2000:]) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
