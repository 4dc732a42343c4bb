"""The store's console sessions and personal API tokens: a digest of each (the token itself only
ever goes to its holder), who it is, the role it acts with, and when it stops."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from .. import tokens
from ..errors import NotFound
from .clock import utcnow
from .db import Database
from .tables import TOKENS, U

TOKEN_PREFIX = "pvt_"  # a personal token: told apart from the admin token at a glance (and by a scanner)


@dataclass(frozen=True)
class Who:
    user: str
    role: str


@dataclass(frozen=True)
class ApiToken:
    id: int
    user: str
    role: str
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class Accounts:
    """Sessions and API tokens (a part of Store: it uses self.db and nothing of another part)."""

    db: Database

    # -- console sessions -------------------------------------------------------------------------
    def create_ui_session(self, ttl_seconds: int, user: str = "admin (break-glass token)", role: str = "admin") -> str:
        token = secrets.token_urlsafe(24)
        now = utcnow()
        with self.db.write() as tx:
            tx.execute(delete(U).where(U.c.expires_at < now))  # old ones go as new ones come
            tx.execute(insert(U).values(digest=tokens.digest(token), created_at=now, user=user, role=role,
                                        expires_at=now + timedelta(seconds=ttl_seconds)))
        return token

    def ui_session(self, token: str | None) -> Who | None:
        """Who a live console session is; None when it ended, expired or never was."""
        if not token:
            return None
        with self.db.read() as conn:
            r = conn.execute(select(U.c.expires_at, U.c.ended_at, U.c.user, U.c.role)
                             .where(U.c.digest == tokens.digest(token))).first()
        if r is None or r.ended_at is not None or utcnow() >= r.expires_at:
            return None
        return Who(r.user, r.role)

    def ui_session_live(self, token: str | None) -> bool:
        return self.ui_session(token) is not None

    def end_ui_session(self, token: str | None) -> None:
        if token:
            with self.db.write() as tx:
                tx.execute(update(U).where(U.c.digest == tokens.digest(token), U.c.ended_at.is_(None))
                           .values(ended_at=utcnow()))

    # -- personal API tokens ----------------------------------------------------------------------
    def create_api_token(self, user: str, role: str, label: str, days: int) -> tuple[ApiToken, str]:
        """A new token for `user`, acting as `role` until `days` from now: (its record, the token)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.write() as tx:
            new_id = tx.execute(insert(TOKENS).values(digest=tokens.digest(token), user=user, role=role,
                                                      label=label[:64], created_at=now,
                                                      expires_at=now + timedelta(days=days))
                                .returning(TOKENS.c.id)).scalar_one()
        return self.api_tokens(user, token_id=new_id)[0], token

    def api_token(self, token: str | None) -> tuple[int, Who] | None:
        """The live token's id and who it acts as (its use is noted); None for any other."""
        if not token or not token.startswith(TOKEN_PREFIX):
            return None
        now = utcnow()
        with self.db.write() as tx:
            r = tx.execute(select(TOKENS.c.id, TOKENS.c.user, TOKENS.c.role, TOKENS.c.expires_at, TOKENS.c.revoked_at)
                           .where(TOKENS.c.digest == tokens.digest(token))).first()
            if r is None or r.revoked_at is not None or now >= r.expires_at:
                return None
            tx.execute(update(TOKENS).where(TOKENS.c.id == r.id).values(last_used_at=now))
        return r.id, Who(r.user, r.role)

    def api_tokens(self, user: str | None = None, token_id: int | None = None) -> list[ApiToken]:
        q = select(TOKENS).order_by(TOKENS.c.id)
        if user is not None:
            q = q.where(TOKENS.c.user == user)
        if token_id is not None:
            q = q.where(TOKENS.c.id == token_id)
        with self.db.read() as conn:
            return [ApiToken(r.id, r.user, r.role, r.label, r.created_at, r.expires_at, r.revoked_at, r.last_used_at)
                    for r in conn.execute(q)]

    def revoke_api_token(self, token_id: int, user: str | None = None) -> ApiToken:
        """Revoke token `token_id` (only `user`'s, when given): it is refused from this moment."""
        with self.db.write() as tx:
            q = update(TOKENS).where(TOKENS.c.id == token_id, TOKENS.c.revoked_at.is_(None))
            if user is not None:
                q = q.where(TOKENS.c.user == user)
            done = tx.execute(q.values(revoked_at=utcnow())).rowcount
        found = [t for t in self.api_tokens(token_id=token_id) if user is None or t.user == user]
        if not found:
            raise NotFound(f"token {token_id}: no such token" + (f" of {user}" if user else ""))
        if not done and found[0].revoked_at is None:
            raise NotFound(f"token {token_id}: not revoked")
        return found[0]
