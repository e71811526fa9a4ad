"""A Python client of AuthGate's own token API, on httpx.

```python
from authgate.client import Client

with Client("https://auth.example.com", token_file="~/.config/myapp/tokens.json") as ag:
    ag.login("miguel", password)
    ag.me()                                   # {"id": 1, "username": "miguel", ...}
    ag.get("https://orders.example.com/api/orders").json()   # sent with the access token
```

The client keeps an access token and its refresh token, refreshes the pair shortly before
the access token expires and once more when a request is refused with ``401``, and allows
one refresh at a time: refresh tokens rotate, so two refreshes of one token would look
like a stolen token to the server. This module imports httpx and the standard library
only, never the server stack (Flask, SQLAlchemy).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "APIError",
    "BadRequest",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "InsecureTokenFile",
    "NotFound",
    "NotLoggedIn",
    "ServerError",
    "SessionExpired",
    "Throttled",
    "TokenFile",
    "Tokens",
    "Unauthorized",
]

#: Refresh this many seconds before the access token expires (clock skew, slow networks).
DEFAULT_REFRESH_MARGIN = 30.0
_FILE_FORMAT = 1


class ClientError(Exception):
    """Base of every error this module raises."""


class ConnectionFailed(ClientError):
    """The server could not be reached or did not answer in time."""


class NotLoggedIn(ClientError):
    """An authorized call was made while the client holds no tokens."""


class InsecureTokenFile(ClientError):
    """The token file is readable or writable by other users, or owned by someone else."""


class APIError(ClientError):
    """The server answered an error; ``problem`` is its JSON problem body (RFC 9457)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.problem = _problem_of(response)
        self.type: str | None = self.problem.get("type")
        self.title: str | None = self.problem.get("title")
        self.detail: str | None = self.problem.get("detail")
        super().__init__(f"{self.status} {self.title or response.reason_phrase}: {self.detail}")


class BadRequest(APIError):
    """``400`` (or another 4xx without a class of its own): the request was invalid."""


class Unauthorized(APIError):
    """``401``: wrong credentials, or a token the server refuses."""


class SessionExpired(Unauthorized):
    """The refresh token was refused (expired, revoked, reused): log in again.

    The client has forgotten its tokens (and emptied its token file) when this is raised.
    """


class NotFound(APIError):
    """``404``."""


class Conflict(APIError):
    """``409``, e.g. a username already taken."""


class Throttled(APIError):
    """``429``; ``retry_after`` is the server's ``Retry-After`` in seconds, if sent."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response)
        value = response.headers.get("Retry-After", "")
        self.retry_after: int | None = int(value) if value.isdigit() else None


class ServerError(APIError):
    """``5xx``: the server failed or is unavailable."""


_BY_STATUS: dict[int, type[APIError]] = {
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: Throttled,
}


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:200] or None}
    return body if isinstance(body, dict) else {"detail": str(body)}


def error_for(response: httpx.Response) -> APIError:
    """The typed exception for an error ``response``."""
    if response.status_code >= 500:
        return ServerError(response)
    return _BY_STATUS.get(response.status_code, BadRequest)(response)


@dataclass(frozen=True)
class Tokens:
    """A token pair as the client keeps it; times are epoch seconds (wall clock)."""

    access_token: str
    refresh_token: str
    expires_at: float
    refresh_expires_at: float
    token_type: str = "Bearer"  # noqa: S105 (a scheme name, not a secret)

    @classmethod
    def from_response(cls, body: dict[str, Any], now: float) -> Tokens:
        """Tokens from AuthGate's token response body, received at ``now``."""
        try:
            return cls(
                access_token=str(body["token"]),
                refresh_token=str(body["refresh_token"]),
                expires_at=now + float(body["expires_in"]),
                refresh_expires_at=now + float(body["refresh_expires_in"]),
                token_type=str(body.get("token_type", "Bearer")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError("the server's token response is not AuthGate's") from exc

    def __repr__(self) -> str:  # never print a token
        return f"Tokens(expires_at={self.expires_at:.0f}, token_type={self.token_type!r})"


class TokenFile:
    """Tokens (and the server they belong to) in a JSON file only its owner may read.

    Written atomically (a new ``0600`` file renamed over the old one); a file that others
    can read or write, or that another user owns, is refused on reading and replaced by a
    safe one on the next write (e.g. the next login).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> dict[str, Any] | None:
        """The stored record, or ``None`` if there is no file (or it holds no tokens)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ClientError(f"cannot read token file {self.path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as handle:
            self._check_private(os.fstat(handle.fileno()))
            raw = handle.read()
        if not raw.strip():
            return None
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise ClientError(f"token file {self.path} is not valid JSON") from exc
        return record if isinstance(record, dict) else None

    def _check_private(self, info: os.stat_result) -> None:
        if os.name != "posix":
            return
        if info.st_uid != os.geteuid():
            raise InsecureTokenFile(f"token file {self.path} belongs to another user")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise InsecureTokenFile(
                f"token file {self.path} is accessible to other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}) and is not used; its tokens may "
                "have been copied: log in again (which writes a new file with mode 0600), "
                "then log out everywhere to revoke the copies"
            )

    def save(self, record: dict[str, Any]) -> None:
        """Replace the file atomically with ``record``, readable by its owner only."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                if os.name == "posix":
                    os.fchmod(handle.fileno(), 0o600)  # mkstemp's default, made explicit
                json.dump(record, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on ``<file>.lock`` (POSIX): one refresh among processes."""
        try:
            import fcntl
        except ImportError:  # not POSIX: threads are still serialised by the client's lock
            yield
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def delete(self) -> None:
        """Remove the file if it exists."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Client:
    """An AuthGate account session: log in, call APIs with the token, refresh, log out.

    ``base_url`` is the AuthGate server. ``token_file`` keeps the tokens across processes
    (see :class:`TokenFile`); without it they live in memory only. ``refresh_margin`` is
    how many seconds before expiry the access token is renewed. ``clock`` returns epoch
    seconds (tests move it). ``load_tokens=False`` ignores what the file holds (it is
    replaced at the next login, e.g. an unsafe file). Other keyword arguments go to
    :class:`httpx.Client` (``timeout``, ``verify``, ``transport`` ...). Safe to share
    between threads.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token_file: str | os.PathLike[str] | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
        load_tokens: bool = True,
        **httpx_options: Any,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._store = TokenFile(token_file) if token_file is not None else None
        self._lock = threading.Lock()
        self._tokens: Tokens | None = None
        self.username: str | None = None
        httpx_options.setdefault("timeout", 30.0)
        self._http = httpx.Client(base_url=self.base_url, **httpx_options)
        if self._store is not None and load_tokens:
            self._load()

    @classmethod
    def from_token_file(cls, token_file: str | os.PathLike[str], **options: Any) -> Client:
        """A client for the server recorded in ``token_file`` (written by an earlier login)."""
        record = TokenFile(token_file).load()
        if not record or not record.get("base_url"):
            raise NotLoggedIn(f"not logged in (no tokens in {Path(token_file).expanduser()})")
        return cls(str(record["base_url"]), token_file=token_file, **options)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections (the tokens stay where they are kept)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def tokens(self) -> Tokens | None:
        """The current token pair, or ``None`` when logged out."""
        return self._tokens

    @property
    def logged_in(self) -> bool:
        """True while the client holds tokens (the server may still have revoked them)."""
        return self._tokens is not None

    # -- account calls ---------------------------------------------------------------------

    def register(self, username: str, password: str) -> dict[str, Any]:
        """Create an account: ``{"id", "username"}``. Does not log in."""
        response = self._send(
            "POST", "/api/users", json={"username": username, "password": password}
        )
        return dict(response.json())

    def login(self, username: str, password: str) -> Tokens:
        """Exchange a username and password for a token pair (``POST /api/token``)."""
        response = self._send("POST", "/api/token", auth=(username, password))
        tokens = Tokens.from_response(response.json(), self._clock())
        with self._lock:
            self.username = username
            self._set(tokens)
        return tokens

    def me(self) -> dict[str, Any]:
        """The logged-in account: ``{"id", "username", "created_at", "tokens_valid_after"}``."""
        return dict(self.get("/api/users/me").json())

    def access_token(self) -> str:
        """An access token valid for at least ``refresh_margin`` seconds (refreshed if not)."""
        return self._fresh_tokens().access_token

    def refresh(self) -> Tokens:
        """Renew the token pair now (normally automatic)."""
        return self._refresh(self._require_tokens())

    def logout(self) -> None:
        """End this login on the server (``DELETE /api/token``) and forget the tokens.

        A token the server already refuses counts as logged out. If the server could not
        be told (unreachable, an error), the tokens are kept, so the logout can be retried:
        forgetting them would leave the login alive on the server with no way to end it.
        """
        self._end_on_server("/api/token")

    def logout_everywhere(self) -> None:
        """Revoke every token of the account on every device, this one's included (the
        tokens are kept if the server could not be told, as with :meth:`logout`)."""
        self._end_on_server("/api/users/me/tokens")

    def _end_on_server(self, url: str) -> None:
        with contextlib.suppress(Unauthorized, NotLoggedIn):  # the server refuses it already
            self.request("DELETE", url)
        self._forget()

    # -- authorized requests ---------------------------------------------------------------

    def request(
        self, method: str, url: str, *, check: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Send a request with the access token; ``url`` is relative to ``base_url`` or absolute.

        The token is refreshed first if it expires within ``refresh_margin``; on a ``401``
        the pair is refreshed and the request sent once more. With ``check`` (the default)
        an error status raises the matching :class:`APIError`; otherwise the response is
        returned as is. ``kwargs`` go to :meth:`httpx.Client.request` (``json``, ``params``,
        ``content``, ``headers`` ...); a streamed body cannot be sent twice.
        """
        tokens = self._fresh_tokens()
        response = self._authorized(method, url, tokens, kwargs)
        if response.status_code == 401:
            tokens = self._refresh(tokens)
            response = self._authorized(method, url, tokens, kwargs)
        if check and response.is_error:
            raise error_for(response)
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """``GET`` with the access token (see :meth:`request`)."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """``POST`` with the access token (see :meth:`request`)."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        """``PUT`` with the access token (see :meth:`request`)."""
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        """``DELETE`` with the access token (see :meth:`request`)."""
        return self.request("DELETE", url, **kwargs)

    # -- internals -------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"{method} {url}: {exc}") from exc
        if response.is_error:
            raise error_for(response)
        return response

    def _authorized(
        self, method: str, url: str, tokens: Tokens, kwargs: dict[str, Any]
    ) -> httpx.Response:
        headers = httpx.Headers(kwargs.get("headers"))
        headers["Authorization"] = f"Bearer {tokens.access_token}"
        try:
            return self._http.request(method, url, **{**kwargs, "headers": headers})
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"{method} {url}: {exc}") from exc

    def _require_tokens(self) -> Tokens:
        tokens = self._tokens
        if tokens is None:
            raise NotLoggedIn("not logged in")
        return tokens

    def _fresh_tokens(self) -> Tokens:
        tokens = self._require_tokens()
        if tokens.expires_at - self.refresh_margin <= self._clock():
            tokens = self._refresh(tokens)
        return tokens

    def _refresh(self, stale: Tokens) -> Tokens:
        """Rotate ``stale`` unless another thread (or process) already did; one at a time."""
        with self._lock, self._store.lock() if self._store else contextlib.nullcontext():
            if self._store is not None:
                self._load()  # another process may have refreshed and saved meanwhile
            current = self._tokens
            if current is None:
                raise NotLoggedIn("not logged in")
            if current.refresh_token != stale.refresh_token:
                return current  # someone refreshed while this thread waited: reuse it
            try:
                response = self._send(
                    "POST", "/api/token/refresh", json={"refresh_token": current.refresh_token}
                )
            except Unauthorized as exc:
                self._set(None)
                raise SessionExpired(exc.response) from exc
            tokens = Tokens.from_response(response.json(), self._clock())
            self._set(tokens)
            return tokens

    def _forget(self) -> None:
        with self._lock:
            self._set(None)

    def _set(self, tokens: Tokens | None) -> None:
        """Keep ``tokens`` (caller holds the lock) and persist them if there is a file."""
        self._tokens = tokens
        if self._store is None:
            return
        if tokens is None:
            self._store.delete()
            return
        record = {
            "format": _FILE_FORMAT,
            "base_url": self.base_url,
            "username": self.username,
            **asdict(tokens),
        }
        self._store.save(record)

    def _load(self) -> None:
        assert self._store is not None
        record = self._store.load()
        if not record or record.get("base_url") != self.base_url:
            self._tokens = None
            return
        try:
            self._tokens = Tokens(
                access_token=str(record["access_token"]),
                refresh_token=str(record["refresh_token"]),
                expires_at=float(record["expires_at"]),
                refresh_expires_at=float(record["refresh_expires_at"]),
                token_type=str(record.get("token_type", "Bearer")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError(f"token file {self._store.path} is damaged") from exc
        self.username = record.get("username")
