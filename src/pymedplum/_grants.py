"""How a client logs in: the OAuth token request of each kind of credential (no I/O).

- `ClientSecret`: the client-credentials grant with ``client_id`` and ``client_secret``.
- `PrivateKeyJWT`: the client-credentials grant authenticated by a JWT the client signs with
  its private key (RFC 7523, ``private_key_jwt``). Medplum (oauth/token.ts) checks that
  ``aud`` is its token URL, that ``iss`` equals ``sub`` and names the ClientApplication, and
  verifies the signature (RS256/384/512 or ES256/384/512) and ``exp`` with the keys at the
  ClientApplication's ``jwksUri``. A fresh assertion is signed for every token request:
  ``exp`` five minutes ahead, a random ``jti``.
- `TokenExchange`: RFC 8693 token exchange: an access token of the ClientApplication's
  external identity provider (``subject_token``) for a Medplum token acting as the user it
  names (Medplum checks it at the provider's userinfo URL). No client secret.

Each has a `digest`, the last part of its token-cache key: a SHA-256 of the secret, of the
public key, or of the subject token, so that no credential is ever a key, and clients with
the same credential share one token. Nothing here shows a credential in a repr: the secret,
the PEM text, the subject token and each signed assertion are `RedactedStr`s, and a
cryptography key object's repr holds no key material.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any, Protocol

from pymedplum._security import RedactedBytes, RedactedStr

__all__ = [
    "ASSERTION_ALGORITHMS",
    "ClientSecret",
    "Grant",
    "PrivateKeyJWT",
    "TokenExchange",
    "build_grant",
]

CLIENT_CREDENTIALS = "client_credentials"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
#: The signing algorithms Medplum accepts in a client assertion.
ASSERTION_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
#: How long a signed assertion is valid (SMART Backend Services: at most five minutes).
ASSERTION_LIFETIME_SECONDS = 300
_CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_MIN_RSA_BITS = 2048  # jose, which Medplum verifies with, refuses shorter RSA keys


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Grant(Protocol):
    """One kind of credential: what its token request sends."""

    @property
    def digest(self) -> str:
        """Identifies the credential in token-cache keys (never the credential itself)."""

    def form(self, token_url: str, client_id: str) -> dict[str, str]:
        """The form fields of a token request (built anew for each request)."""


class ClientSecret:
    """``client_id`` + ``client_secret`` (client_secret_post)."""

    __slots__ = ("secret",)

    def __init__(self, secret: str) -> None:
        self.secret = RedactedStr(secret)

    @property
    def digest(self) -> str:
        # The SHA-256 hex digest alone, as token_key() has always keyed a secret.
        return _sha256(self.secret.encode("utf-8"))

    def form(self, token_url: str, client_id: str) -> dict[str, str]:
        return {
            "grant_type": CLIENT_CREDENTIALS,
            "client_id": client_id,
            "client_secret": RedactedStr(self.secret),
        }

    def __repr__(self) -> str:
        return "<ClientSecret>"


def _jwt() -> Any:
    try:
        import jwt
        from cryptography.hazmat.primitives import serialization  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "private_key= needs PyJWT with cryptography: pip install 'pymedplum[jwt]'"
        ) from None
    return jwt


def _load_key(private_key: Any) -> Any:
    """A cryptography private key from PEM text or bytes, or the key object given."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return private_key
    if isinstance(private_key, str):
        data: bytes = RedactedBytes(private_key.encode("utf-8"))
    elif isinstance(private_key, bytes):
        data = RedactedBytes(private_key)
    else:
        raise TypeError(
            "private_key must be PEM text (str or bytes) or a cryptography RSA or EC private "
            f"key, got {type(private_key).__name__}"
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # Never the key's text: only why it was refused.
        reason = (
            "it is encrypted: load it yourself and pass the key object"
            if "password" in str(exc).lower() or "encrypted" in str(exc).lower()
            else "it is not an unencrypted PEM private key"
        )
        raise ValueError(f"private_key: {reason}") from None


def _algorithm_for(key: Any, algorithm: str | None) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm is not None and algorithm not in ASSERTION_ALGORITHMS:
        raise ValueError(
            f"algorithm: {algorithm!r} is not one Medplum accepts "
            f"({', '.join(ASSERTION_ALGORITHMS)})"
        )
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"private_key: an RSA key needs at least {_MIN_RSA_BITS} bits")
        if algorithm is None:
            return "RS256"
        if not algorithm.startswith("RS"):
            raise ValueError(f"algorithm: {algorithm} does not sign with an RSA key")
        return algorithm
    if isinstance(key, ec.EllipticCurvePrivateKey):
        expected = _CURVE_ALGORITHMS.get(key.curve.name)
        if expected is None:
            raise ValueError(
                f"private_key: the curve {key.curve.name} is not P-256, P-384 or P-521"
            )
        if algorithm is not None and algorithm != expected:
            raise ValueError(f"algorithm: a {key.curve.name} key signs with {expected}")
        return expected
    raise TypeError("private_key must be an RSA or an EC private key")


class PrivateKeyJWT:
    """A signed JWT client assertion (private_key_jwt)."""

    __slots__ = ("_key", "key_id", "algorithm", "_digest")

    def __init__(self, private_key: Any, key_id: str | None, algorithm: str | None) -> None:
        _jwt()
        from cryptography.hazmat.primitives import serialization

        self._key = _load_key(private_key)
        self.algorithm = _algorithm_for(self._key, algorithm)
        if key_id is not None and (not isinstance(key_id, str) or not key_id):
            raise ValueError("key_id must be a non-empty str (the JWK's kid)")
        self.key_id = key_id
        public = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._digest = "private_key_jwt:" + _sha256(public)

    @property
    def digest(self) -> str:
        return self._digest

    def assertion(self, token_url: str, client_id: str, now: float) -> str:
        """A client assertion for `token_url`, signed now."""
        issued = int(now)
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        signed = _jwt().encode(claims, self._key, algorithm=self.algorithm, headers=headers)
        return RedactedStr(signed)

    def form(self, token_url: str, client_id: str) -> dict[str, str]:
        return {
            "grant_type": CLIENT_CREDENTIALS,
            "client_id": client_id,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": self.assertion(token_url, client_id, time.time()),
        }

    def __repr__(self) -> str:
        # Safe half-built (a traceback through __init__ shows it): getattr, not attributes.
        algorithm = getattr(self, "algorithm", None)
        return f"<PrivateKeyJWT algorithm={algorithm} key_id={getattr(self, 'key_id', None)!r}>"


class TokenExchange:
    """An external identity provider's access token, exchanged for a Medplum token."""

    __slots__ = ("_subject_token",)

    def __init__(self, subject_token: str) -> None:
        if not isinstance(subject_token, str) or not subject_token:
            raise ValueError("subject_token must be a non-empty str")
        self._subject_token = RedactedStr(subject_token)

    @property
    def digest(self) -> str:
        return "token_exchange:" + _sha256(self._subject_token.encode("utf-8"))

    def form(self, token_url: str, client_id: str) -> dict[str, str]:
        return {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "client_id": client_id,
            "subject_token": RedactedStr(self._subject_token),
        }

    def __repr__(self) -> str:
        return "<TokenExchange>"


def build_grant(
    client_id: str | None,
    client_secret: str | None,
    private_key: Any,
    key_id: str | None,
    algorithm: str | None,
    subject_token: str | None,
) -> Grant | None:
    """The client's grant from its constructor arguments, or None (no login); ValueError when
    they do not fit together."""
    given = [
        name
        for name, value in (
            ("client_secret", client_secret),
            ("private_key", private_key),
            ("subject_token", subject_token),
        )
        if value is not None and value != ""
    ]
    if len(given) > 1:
        raise ValueError(f"give one of client_secret, private_key or subject_token, not {given}")
    if (key_id is not None or algorithm is not None) and private_key is None:
        raise ValueError("key_id and algorithm go with private_key")
    if not given:
        if client_id:
            raise ValueError(
                "client_id needs a credential: client_secret, private_key or subject_token"
            )
        return None
    if not client_id:
        raise ValueError(f"{given[0]} needs client_id (the ClientApplication's id)")
    if client_secret:
        return ClientSecret(client_secret)
    if private_key is not None:
        return PrivateKeyJWT(private_key, key_id, algorithm)
    assert subject_token is not None
    return TokenExchange(subject_token)
