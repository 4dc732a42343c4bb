"""Accounts from a directory: FreeIPA's 389 Directory Server, or any LDAPv3 server, through ldap3.

A login searches the user (`[auth] user_attribute`=name under user_base, as the search account or
anonymously), refuses a disabled account (FreeIPA's `nsAccountLock: TRUE`), binds as the user with
the password given, and reads the groups under group_base that list the user as a `member` (or
`uniqueMember`). The role is the highest of the groups named in `[auth]`: admin, operator, viewer;
a user in none of them does not log in."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field

from ..config import AuthConfig
from ..errors import ProvisionError

ROLES = ("viewer", "operator", "admin")  # each can do what the one before it can, and more
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def at_least(role: str, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    groups: tuple[str, ...] = ()


class LoginRefused(ProvisionError):
    """Wrong name or password, a disabled account, or no role. `reason` is for the audit trail;
    the person logging in is told less (str(exc))."""

    def __init__(self, reason: str, told: str = "wrong user name or password") -> None:
        super().__init__(told)
        self.reason = reason


class DirectoryDown(ProvisionError):
    """The directory cannot be reached or refused the search account: nobody can log in by it (the
    break-glass admin token still can)."""


def role_for(cfg: AuthConfig, groups: list[tuple[str, str]]) -> str | None:
    """The highest role whose configured groups include one of `groups` ((cn, dn) pairs)."""
    names = {n.lower() for pair in groups for n in pair}
    for role, wanted in (("admin", cfg.admin_groups), ("operator", cfg.operator_groups), ("viewer", cfg.viewer_groups)):
        if any(w.lower() in names for w in wanted):
            return role
    return None


class NoDirectory:
    def authenticate(self, username: str, password: str) -> Account:
        raise LoginRefused("no directory is configured ([auth] ldap_url)",
                           told="no directory is configured: log in with the admin token")


class LdapDirectory:
    def __init__(self, cfg: AuthConfig, bind_password: str | None) -> None:
        assert cfg.ldap_url and cfg.user_base and cfg.group_base
        self.cfg, self.bind_password = cfg, bind_password

    def _server(self):
        from ldap3 import Server, Tls

        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.cfg.ca_file) if self.cfg.ca_file else None)
        url = self.cfg.ldap_url or ""
        return Server(url, use_ssl=url.startswith("ldaps://"), tls=tls, connect_timeout=self.cfg.timeout,
                      get_info="NO_INFO")

    def _bind(self, server, user: str | None, password: str | None):
        """A bound connection, or None when the credentials were refused; DirectoryDown when the
        server cannot be reached or its TLS is not trusted."""
        from ldap3 import Connection
        from ldap3.core.exceptions import LDAPException

        conn = Connection(server, user=user, password=password, receive_timeout=max(1, int(self.cfg.timeout)),
                          raise_exceptions=False, read_only=True)
        try:
            conn.open()
            if self.cfg.starttls and not (self.cfg.ldap_url or "").startswith("ldaps://") and not conn.start_tls():
                raise DirectoryDown(f"directory {self.cfg.ldap_url}: STARTTLS refused ({conn.result.get('description')})")
            if not conn.bind():
                conn.unbind()
                return None
        except LDAPException as exc:
            raise DirectoryDown(f"directory {self.cfg.ldap_url}: {type(exc).__name__}: {exc}") from None
        return conn

    def authenticate(self, username: str, password: str) -> Account:
        from ldap3.utils.conv import escape_filter_chars

        if not _NAME.match(username or ""):
            raise LoginRefused(f"user name {username[:64]!r} is not a directory name")
        if not password:  # an empty password is an unauthenticated bind, which LDAP lets succeed
            raise LoginRefused("empty password")
        server = self._server()
        search = self._bind(server, self.cfg.bind_dn, self.bind_password)
        if search is None:
            raise DirectoryDown(f"directory {self.cfg.ldap_url}: the search account was refused "
                                f"({self.cfg.bind_dn or 'anonymous'})")
        try:
            search.search(self.cfg.user_base, f"({self.cfg.user_attribute}={escape_filter_chars(username)})",
                          attributes=["nsAccountLock"], size_limit=2)
            entries = list(search.entries)
            if len(entries) != 1:
                raise LoginRefused(f"no such user ({len(entries)} entries)")
            dn = entries[0].entry_dn
            locked = entries[0]["nsAccountLock"].value if "nsAccountLock" in entries[0] else None
            if str(locked).upper() == "TRUE":
                raise LoginRefused("account disabled (nsAccountLock)", told="this account is disabled")
            user = self._bind(server, dn, password)
            if user is None:
                raise LoginRefused("wrong password")
            user.unbind()
            dn_e = escape_filter_chars(dn)
            search.search(self.cfg.group_base, f"(|(member={dn_e})(uniqueMember={dn_e}))", attributes=["cn"])
            groups = [(str(e["cn"].value), e.entry_dn) for e in search.entries]
        finally:
            search.unbind()
        role = role_for(self.cfg, groups)
        if role is None:
            raise LoginRefused(f"in none of the role groups (member of: {', '.join(g for g, _ in groups) or 'none'})",
                               told="this account has no role in provision")
        return Account(username, role, tuple(g for g, _ in groups))


@dataclass
class FakeDirectory:
    """For tests: users by name -> (password, groups, disabled); `down` makes every login fail as
    an unreachable directory does."""

    cfg: AuthConfig
    users: dict[str, tuple[str, list[str], bool]] = field(default_factory=dict)
    down: bool = False

    def authenticate(self, username: str, password: str) -> Account:
        if self.down:
            raise DirectoryDown("directory fake: connection refused")
        if username not in self.users or not password:
            raise LoginRefused("no such user")
        secret, groups, disabled = self.users[username]
        if disabled:
            raise LoginRefused("account disabled", told="this account is disabled")
        if password != secret:
            raise LoginRefused("wrong password")
        role = role_for(self.cfg, [(g, g) for g in groups])
        if role is None:
            raise LoginRefused("in none of the role groups", told="this account has no role in provision")
        return Account(username, role, tuple(groups))


def directory(cfg: AuthConfig, read_secret) -> LdapDirectory | NoDirectory:
    if not cfg.ldap_url:
        return NoDirectory()
    password = read_secret(cfg.bind_password_file, "PROVISION_AUTH_BIND_PASSWORD", "auth.bind_password") \
        if cfg.bind_dn else None
    return LdapDirectory(cfg, password)
