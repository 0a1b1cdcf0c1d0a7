"""The dashboard's guards: the access token, CSRF tokens, and which hosts may be served without a token.

The dashboard can pause and delete production actors, so:

- with a token, every request must carry it, as ``Authorization: Bearer TOKEN`` or as the session
  cookie the login form sets (HttpOnly, SameSite=Strict); both are compared in constant time;
- every POST carries a CSRF token bound to a per-browser cookie, so another site cannot make a
  logged-in browser act;
- without a token, only loopback Host headers are answered, so a web page that rebinds its DNS
  name to 127.0.0.1 cannot read the pages (and their CSRF tokens) from the victim's browser.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

SESSION_COOKIE = "mvactors_session"
CSRF_COOKIE = "mvactors_csrf"
CSRF_FIELD = "csrf"

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_header_name(value: str) -> str:
    """The host part of a Host header (``127.0.0.1:8000`` -> ``127.0.0.1``, ``[::1]:80`` -> ``::1``)."""
    value = value.strip()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


class Guard:
    """The token and CSRF checks of one app (its secret lives as long as the app)."""

    def __init__(self, token: str | None) -> None:
        if token is not None and not token:
            raise ValueError("the dashboard token must not be empty")
        self.token = token
        # Signs CSRF tokens and session cookies; new per app, so a restart logs everyone out.
        self._secret = secrets.token_bytes(32)

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    # ---- access ----

    def session_value(self) -> str:
        """The login cookie's value: a signature of the token, so the cookie never holds the token itself."""
        assert self.token is not None
        return self._sign("session", self.token)

    def token_matches(self, given: str) -> bool:
        """``given`` is the token (constant time, whatever the lengths)."""
        assert self.token is not None
        # Comparing digests keeps the time independent of where (and whether) the lengths differ.
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                                   hashlib.sha256(self.token.encode()).digest())

    def allows(self, authorization: str | None, session: str | None) -> bool:
        """Whether a request with these headers may be served."""
        if self.token is None:
            return True
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
                return True
        return bool(session) and _same(str(session), self.session_value())

    # ---- CSRF ----

    @staticmethod
    def new_browser_id() -> str:
        """The CSRF cookie's value: random per browser."""
        return secrets.token_urlsafe(24)

    def csrf_token(self, browser_id: str) -> str:
        """The token forms carry for the browser holding ``browser_id`` in its CSRF cookie."""
        return self._sign("csrf", browser_id)

    def csrf_ok(self, browser_id: str | None, submitted: str | None) -> bool:
        """A POST's token was made for its own CSRF cookie (constant time)."""
        if not browser_id or not submitted:
            return False
        return _same(self.csrf_token(browser_id), str(submitted))


def _same(expected: str, given: str) -> bool:
    """Constant-time equality of two strings; as bytes, since compare_digest refuses non-ASCII str
    (a request could otherwise turn a forged cookie into a server error)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "SESSION_COOKIE", "Guard", "host_header_name", "is_loopback"]
