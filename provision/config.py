"""Configuration: one TOML file (`--config FILE` or PROVISION_CONFIG), embedded defaults otherwise.

Secrets are never inline: each is a `*_file` path or an environment variable
(PROVISION_<SECTION>_PASSWORD). Relative paths in a config file are relative to that file;
embedded defaults are relative to the working directory (so `make run` keeps state in ./var/).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .domain.inventory import format_errors
from .errors import InputError

REPO = Path(__file__).resolve().parents[1]
# a source checkout (`make run`, the tests): templates and boot files from the tree, state in ./var;
# installed (a wheel, the RPM): templates from the package, state in /var/lib/provision
CHECKOUT = (REPO / "pyproject.toml").is_file() and (REPO / "kickstarts").is_dir()
PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "_templates"  # setup.py's build_py puts them there
SYSTEM_CONFIG = Path("/etc/provision/provision.toml")
SYSTEM_STATE = Path("/var/lib/provision")
_KARG = re.compile(r"^[A-Za-z0-9_.:,=/@+-]{1,200}\Z")


def _bind(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return value


def _url(value: str) -> str:
    if not re.match(r"^https?://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._~/%-]*)?\Z", value):
        raise ValueError(f"{value!r} is not an http(s) URL without query or spaces")
    return value.rstrip("/")


def _kargs(value: str) -> str:
    for word in value.split():
        if not _KARG.match(word):
            raise ValueError(f"kernel argument {word!r} has characters outside A-Z a-z 0-9 _ . : , = / @ + -")
    return " ".join(value.split())


Bind = Annotated[str, AfterValidator(_bind)]
Url = Annotated[str, AfterValidator(_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    http_bind: Bind = "127.0.0.1:8080"
    tftp_bind: Bind = "127.0.0.1:6969"
    public_url: Url = "http://127.0.0.1:8080"
    db_url: str = "sqlite:///var/provision.db"
    admin_token_file: Path = Path("var/admin.token")
    secret_key_file: Path = Path("var/secret.key")
    threads: int = Field(default=8, ge=1, le=256)
    # slow or idle HTTP clients: a connection idle this long is closed, and at most this many are
    # open at once (waitress' own defaults, 120 s and 100, let ~100 idle sockets starve /healthz)
    http_channel_timeout: int = Field(default=20, ge=1, le=3600)
    http_connection_limit: int = Field(default=400, ge=10, le=10000)
    # the HTTP gate (web/gate.py): a connection must send its first request head within
    # http_head_timeout seconds, and one source address holds at most http_per_source_limit
    # connections at once (trusted_proxies excepted), so slow or many connections from one place
    # cannot lock the other nodes out
    http_head_timeout: float = Field(default=10.0, gt=0, le=300)
    http_per_source_limit: int = Field(default=64, ge=1, le=10000)
    # reverse proxies in front of serve (e.g. nginx for TLS): for a request from one of these
    # networks the client's address is the last hop of X-Forwarded-For (and the scheme
    # X-Forwarded-Proto's); from anywhere else those headers are ignored
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(default_factory=list, max_length=64)
    # one INFO line per HTTP request (method, path without its query, peer, status, bytes); off by
    # default: a boot storm is tens of thousands of requests a second
    access_log: bool = False
    tftp_max_sessions: int = Field(default=256, ge=1, le=4096)  # concurrent transfers; more get ERROR "busy"
    tftp_timeout: float = Field(default=3.0, gt=0, le=60)  # seconds before a DATA block is sent again
    tftp_retries: int = Field(default=5, ge=1, le=20)
    # transfers one address may have at once (a PXE client fetches one file at a time; more get
    # ERROR "busy"), and the largest `timeout` option a client may ask for (RFC 2349; above it the
    # option is not acknowledged and tftp_timeout applies)
    tftp_per_source_sessions: int = Field(default=16, ge=1, le=4096)
    tftp_max_client_timeout: int = Field(default=10, ge=1, le=255)
    # processes that send big files (loaders, kernels): the kernel's UDP send is most of a transfer's cost
    tftp_pumps: int = Field(default=2, ge=0, le=64)
    # big files go to pump processes whose children send them in C ("native", built when provision
    # is installed; where it was not, serve logs it), or are sent by the main loop ("python")
    tftp_send_loop: Literal["native", "python"] = "native"
    # the conductor: rebuilds submitted to the API (POST /api/v1/rebuilds) run in this process;
    # its hold on a run is a lease in the database, renewed every third of run_lease seconds and
    # taken over by another (or a restarted) serve once it expired
    conductor: bool = True
    run_lease: float = Field(default=30.0, ge=1, le=3600)
    # networks a collector upload may come from besides the node's own addresses (e.g. a NAT gateway)
    collect_sources: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(default_factory=list, max_length=64)
    # networks an installer may fetch its node's kickstart from besides the node's own addresses
    # (an install network on DHCP); the fetch from anywhere else is refused
    install_sources: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(default_factory=list, max_length=64)


class PathsConfig(_Section):
    # the database, the generated admin token and signing key, imported media and (installed) the
    # loaders live under state_dir unless set on their own: see `derive`
    state_dir: Path = Path("var") if CHECKOUT else SYSTEM_STATE
    bootfiles: Path = REPO / "bootfiles" if CHECKOUT else SYSTEM_STATE / "bootfiles"
    media: Path = Path("var/media")
    # a directory with kickstarts/ and bootfiles/ templates, replacing the ones provision ships
    templates: Path = REPO if CHECKOUT else PACKAGED_TEMPLATES
    # where serve writes every node's per-MAC GRUB and pxelinux configs as files, for nginx to send
    # (docs/nginx.md); unset: not written
    boot_export: Path | None = None


class EngineConfig(_Section):
    url: Url | None = None  # https://engine.example.com/ovirt-engine
    username: str = "admin@internal"
    password_file: Path | None = None
    ca_file: Path | None = None
    poll_interval: float = Field(default=5.0, gt=0)  # seconds between host status polls


class IpaConfig(_Section):
    server: str | None = None
    username: str = "admin"
    password_file: Path | None = None
    domain: str | None = None
    realm: str | None = None
    ca_file: Path | None = None
    updatedns: bool = True


_SAFE = r"^[A-Za-z0-9 _.@-]{1,100}$"  # goes onto a shell line on the node (quoted as well)


class SatelliteConfig(_Section):
    url: Url | None = None
    username: str = "admin"
    password_file: Path | None = None
    organization: str | None = Field(default=None, pattern=_SAFE)
    location: str | None = Field(default=None, pattern=_SAFE)
    activation_keys: list[Annotated[str, Field(pattern=_SAFE)]] = Field(default_factory=list)
    ca_file: Path | None = None
    # "global": POST /api/registration_commands (Satellite 6.9+); "rhsm": katello-ca-consumer
    # RPM + subscription-manager register --org --activationkey
    registration: str = Field(default="global", pattern=r"^(global|rhsm)$")
    # a freshly installed node does not trust the Katello CA yet: ca_file (also used for the API) is
    # copied into the node's trust store before registering; insecure = true skips the check instead
    insecure: bool = False


class DnsConfig(_Section):
    nameservers: list[str] = Field(default_factory=list)  # empty: the system's resolv.conf
    port: int = Field(default=53, ge=1, le=65535)
    timeout: float = Field(default=5.0, gt=0)


_GROUP = Annotated[str, Field(pattern=r"^[^\x00-\x1f()*\\]{1,255}$")]


class AuthConfig(_Section):
    """Console and API accounts from a directory (FreeIPA's 389 Directory Server, or any LDAPv3
    server). Unset ldap_url: only the break-glass admin token logs in. A user's role is the highest
    of the groups they are a member of (a group's cn, or its DN); in none of them, no login."""

    ldap_url: str | None = Field(default=None, pattern=r"^ldaps?://[A-Za-z0-9.\[\]:-]{1,255}/?$")
    starttls: bool = False  # upgrade ldap:// with STARTTLS (ldaps:// is TLS already)
    ca_file: Path | None = None  # verifies the directory's certificate; unset: the system's trust store
    bind_dn: str | None = None  # the search account (FreeIPA: a uid=...,cn=sysaccounts,cn=etc entry); unset: anonymous
    bind_password_file: Path | None = None  # or PROVISION_AUTH_BIND_PASSWORD
    user_base: str | None = None  # e.g. cn=users,cn=accounts,dc=lab,dc=example,dc=com
    user_attribute: str = Field(default="uid", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
    group_base: str | None = None  # e.g. cn=groups,cn=accounts,dc=lab,dc=example,dc=com
    viewer_groups: list[_GROUP] = Field(default_factory=list, max_length=64)
    operator_groups: list[_GROUP] = Field(default_factory=list, max_length=64)
    admin_groups: list[_GROUP] = Field(default_factory=list, max_length=64)
    timeout: float = Field(default=5.0, gt=0, le=60)  # seconds for each directory operation
    # failed logins: after this many for one user name or from one address within lockout seconds,
    # further logins there are refused until the window has passed (the break-glass token too)
    login_attempts: int = Field(default=5, ge=1, le=100)
    lockout: float = Field(default=300.0, ge=1, le=86400)
    token_days: int = Field(default=90, ge=1, le=3650)  # the longest a personal API token may live

    @model_validator(mode="after")
    def _complete(self) -> AuthConfig:
        if self.ldap_url and not self.user_base:
            raise ValueError("auth.user_base: needed with ldap_url (where users are searched)")
        if self.ldap_url and not self.group_base:
            raise ValueError("auth.group_base: needed with ldap_url (where role groups are searched)")
        if self.ldap_url and not (self.viewer_groups or self.operator_groups or self.admin_groups):
            raise ValueError("auth: with ldap_url, name at least one of viewer_groups, operator_groups, admin_groups")
        return self


class DefaultsConfig(_Section):
    timezone: str = Field(default="Etc/UTC", pattern=r"^[A-Za-z0-9_+/-]{1,64}$")
    lang: str = Field(default="en_US.UTF-8", pattern=r"^[A-Za-z0-9_.@-]{1,32}$")
    keyboard: str = Field(default="us", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    root_password_hash_file: Path | None = None
    ssh_key_file: Path | None = None
    rhvh_media: str = Field(default="rhvh", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    rhvh_liveimg: str = Field(default="ovirt-node-ng-image.squashfs.img", pattern=r"^[A-Za-z0-9_./-]{1,200}$")
    el_media: str = Field(default="el", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # how GRUB loads the kernel and initrd: "tftp" from its own TFTP server (any GRUB), or "http"
    # from public_url as (http,HOST:PORT)/... (GRUB's http module; a port other than 80 needs a GRUB
    # with the port patch, as in GRUB 2.12, Debian 12's 2.06 and RHEL's): much faster for a large initrd
    grub_fetch: Literal["tftp", "http"] = "tftp"
    kernel_args: Annotated[str, AfterValidator(_kargs)] = "inst.text"
    build_token_ttl: int = Field(default=6 * 3600, ge=60)
    installer_log_max: int = Field(default=1024 * 1024, ge=1024)
    # seconds each step may take before the node is failed (installing: until the `installed` callback)
    step_timeouts: dict[str, float] = Field(default_factory=lambda: {
        "drain": 1800.0, "installing": 5400.0, "enroll": 1800.0, "register": 3600.0})
    poll_interval: float = Field(default=2.0, gt=0, le=60)
    ipmi_timeout: float = Field(default=30.0, gt=0)
    ipmi_attempts: int = Field(default=3, ge=1, le=10)
    # a Redfish BMC that refuses a boot change while the host is in POST (HPE iLO's
    # UnableToModifyDuringSystemPOST) is asked again: this many times in all, the first wait this many
    # seconds, doubling up to 6 times it (as Ironic's [redfish] post_boot_retry_attempts/_delay)
    redfish_post_attempts: int = Field(default=6, ge=1, le=20)
    redfish_post_delay: float = Field(default=5.0, gt=0, le=60)
    # hosted-engine hosts that must stay Up while one of them is rebuilt (they run the engine VM)
    hosted_engine_min_up: int = Field(default=2, ge=0, le=16)
    # the order a batch starts its nodes in after the canaries: "longest_first" (those whose last
    # rebuild took longest, never-rebuilt ones before them) or "as_listed"
    batch_order: Literal["longest_first", "as_listed"] = "longest_first"


class RepoConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    baseurl: Url


class ElProfileConfig(_Section):
    """Enterprise Linux KVM hosts: the repositories the engine's host deploy needs (oVirt host
    packages), kept on the installed system (`repo --install`), and/or a release package
    (e.g. ovirt-release44) installed in %post."""

    repos: list[RepoConfig] = Field(default_factory=list, max_length=32)
    release_package: Url | None = None
    packages: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.+@^-]{1,100}$")]] = Field(default_factory=list)


class ProfilesConfig(_Section):
    el: ElProfileConfig = Field(default_factory=ElProfileConfig)


class IntegrationsConfig(_Section):
    """For demos and tests only: with fake_dir set, the engine, IPA and Satellite are file-backed
    fakes under that directory (shared by every provision process), and DNS checks pass."""

    fake_dir: Path | None = None
    fake_latency: float = Field(default=0.0, ge=0, le=10)  # seconds added to every fake call


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _source: str = PrivateAttr(default="embedded defaults")  # where it was read from, for messages
    server: ServerConfig = Field(default_factory=ServerConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    ipa: IpaConfig = Field(default_factory=IpaConfig)
    satellite: SatelliteConfig = Field(default_factory=SatelliteConfig)
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    integrations: IntegrationsConfig = Field(default_factory=IntegrationsConfig)
    dns: DnsConfig = Field(default_factory=DnsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)

    @model_validator(mode="after")
    def _grub_http(self) -> Config:
        if self.defaults.grub_fetch == "http" and not self.server.public_url.startswith("http://"):
            raise ValueError("defaults.grub_fetch = \"http\" needs a server.public_url starting with http:// "
                             "(GRUB's http module speaks no TLS)")
        return self

    @property
    def source(self) -> str:
        return self._source

    @property
    def media_url(self) -> str:
        return f"{self.server.public_url}/media"

    @property
    def grub_media_root(self) -> str:
        """Where GRUB's `linux`/`initrd` paths start: "" (its own TFTP server) or (http,HOST[:PORT])."""
        if self.defaults.grub_fetch == "tftp":
            return ""
        url = urlsplit(self.server.public_url)
        host = f"[{url.hostname}]" if ":" in (url.hostname or "") else url.hostname
        return f"(http,{host}{f':{url.port}' if url.port and url.port != 80 else ''}){url.path.rstrip('/')}"


def load(path: str | os.PathLike | None = None, state_dir: str | os.PathLike | None = None) -> Config:
    """Load the config file named by `path`, PROVISION_CONFIG or, when it exists,
    /etc/provision/provision.toml; embedded defaults when none is. `state_dir` (the CLI's
    --state-dir) replaces [paths] state_dir."""
    path = path or os.environ.get("PROVISION_CONFIG") or (SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None)
    if not path:
        cfg = Config()
        return derive(cfg, _explicit(cfg), state_dir)
    file = Path(path)
    if file.exists() and not file.is_file():
        raise InputError(f"config {file}: not a regular file")
    try:
        data = tomllib.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InputError(f"config {file}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"config {file}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config {file}: not valid TOML: {exc}") from None
    except RecursionError:
        raise InputError(f"config {file}: not valid TOML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise InputError(f"config {file}: not valid TOML: {str(exc).split(':')[0]}") from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise InputError("\n".join(format_errors(exc, f"config {file}: "))) from None
    cfg._source = str(file)
    explicit = _explicit(cfg)
    return derive(_relative_to(cfg, file.resolve().parent), explicit, state_dir)


def _explicit(cfg: Config) -> dict[str, set[str]]:
    return {"server": set(cfg.server.model_fields_set), "paths": set(cfg.paths.model_fields_set)}


def derive(cfg: Config, explicit: dict[str, set[str]], state_dir: str | os.PathLike | None = None) -> Config:
    """Every state path the config does not set itself goes under [paths] state_dir: the SQLite
    database (provision.db), admin.token, secret.key, media/ (and, installed, bootfiles/)."""
    p, s = cfg.paths, cfg.server
    if state_dir is not None:
        p.state_dir = Path(state_dir).absolute()
    d = p.state_dir
    if "db_url" not in explicit["server"]:
        s.db_url = f"sqlite:///{d / 'provision.db'}"
    if "admin_token_file" not in explicit["server"]:
        s.admin_token_file = d / "admin.token"
    if "secret_key_file" not in explicit["server"]:
        s.secret_key_file = d / "secret.key"
    if "media" not in explicit["paths"]:
        p.media = d / "media"
    if "bootfiles" not in explicit["paths"] and not CHECKOUT:
        p.bootfiles = d / "bootfiles"
    return cfg


def _relative_to(cfg: Config, base: Path) -> Config:
    for section in (cfg.server, cfg.paths, cfg.engine, cfg.ipa, cfg.satellite, cfg.defaults, cfg.integrations,
                    cfg.auth):
        for name, value in section:
            if isinstance(value, Path) and not value.is_absolute():
                setattr(section, name, base / value)
    if cfg.server.db_url.startswith("sqlite:///") and not cfg.server.db_url.startswith("sqlite:////"):
        rel = cfg.server.db_url.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            cfg.server.db_url = f"sqlite:///{base / rel}"
    return cfg
