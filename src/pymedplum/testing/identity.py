"""A stand-in identity provider on 127.0.0.1, for testing key-based login.

A ClientApplication that logs in with a signed JWT (``private_key_jwt``) names a JWK Set URL
(``jwksUri``) where Medplum fetches its public keys; one that exchanges tokens names an
identity provider whose ``userInfoUrl`` Medplum asks who an access token belongs to. This
serves both, from memory:

    with LoopbackIdentityProvider() as idp:
        idp.add_key(private_key, key_id="k1")       # published at idp.jwks_uri
        token = idp.issue_token(email="alice@example.com")   # known at idp.userinfo_url

Needs PyJWT with cryptography (``pymedplum[jwt]``) to publish keys.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackIdentityProvider"]


def _public_jwk(key: Any, key_id: str | None, algorithm: str | None) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, rsa.RSAPublicKey):
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        raise TypeError("add_key takes an RSA or EC key (private or public)")
    jwk["use"] = "sig"
    if key_id is not None:
        jwk["kid"] = key_id
    if algorithm is not None:
        jwk["alg"] = algorithm
    return jwk


class LoopbackIdentityProvider:
    """A JWK Set and a userinfo endpoint on 127.0.0.1 (a free port), in a thread."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self._tokens: dict[str, dict[str, Any]] = {}
        #: Paths requested, in order (``/jwks.json``, ``/userinfo``): what Medplum asked.
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> LoopbackIdentityProvider:
        """Listen on a free loopback port."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                provider._serve(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet: tests read `requests` instead

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LoopbackIdentityProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("the identity provider is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def jwks_uri(self) -> str:
        """The JWK Set URL: a ClientApplication's ``jwksUri``."""
        return self.base_url + "/jwks.json"

    @property
    def userinfo_url(self) -> str:
        """The userinfo URL: a ClientApplication's ``identityProvider.userInfoUrl``."""
        return self.base_url + "/userinfo"

    # ---- contents -------------------------------------------------------------------------

    def add_key(self, key: Any, *, key_id: str | None = None, algorithm: str | None = None) -> None:
        """Publish the public half of `key` (an RSA or EC key, private or public)."""
        jwk = _public_jwk(key, key_id, algorithm)
        with self._lock:
            self.keys.append(jwk)

    def clear_keys(self) -> None:
        """Publish no key (a rotated-away key, for instance)."""
        with self._lock:
            self.keys.clear()

    def issue_token(self, **claims: Any) -> str:
        """An opaque access token whose userinfo answer is `claims` (``email=``, ``sub=``)."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = dict(claims)
        return token

    def revoke_token(self, token: str) -> None:
        """Make the userinfo endpoint refuse `token` (401)."""
        with self._lock:
            self._tokens.pop(token, None)

    # ---- serving --------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        body: Any
        with self._lock:
            self.requests.append(path)
            if path == "/jwks.json":
                status, body = 200, {"keys": list(self.keys)}
            elif path == "/userinfo":
                auth = handler.headers.get("Authorization") or ""
                claims = self._tokens.get(auth.removeprefix("Bearer ").strip())
                status, body = (200, claims) if claims is not None else (401, {"error": "invalid"})
            else:
                status, body = 404, {"error": "not found"}
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
