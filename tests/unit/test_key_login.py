"""Key-based login: a signed JWT client assertion (private_key_jwt) and token exchange, on a
scripted Medplum: what the token request carries, how the keys and algorithms are checked,
and that both go through the one token lifecycle (single flight, shared cache keyed without
secrets, 401 replay, cooldown, 429 waits). Nothing secret in a repr or a traceback's locals.

What Medplum itself accepts is tested against the local server, which verifies the
assertions with the ClientApplication's JWK Set (tests/integration/test_key_login.py).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

jwt = pytest.importorskip("jwt")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

import pymedplum  # noqa: E402
from pymedplum import (  # noqa: E402
    AsyncMedplumClient,
    AuthenticationError,
    MedplumClient,
    TokenRefreshCooldownError,
)
from pymedplum._token_cache import shared_token_cache  # noqa: E402

from .conftest import BASE, Driver, FakeMedplum  # noqa: E402

TOKEN_URL = BASE + "oauth2/token"
PACKAGE_DIR = Path(pymedplum.__file__).resolve().parent
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
SUBJECT = "idp-access-TOKEN-9d8c7b"


def pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


RSA_PEM = pem(RSA_KEY)
PEM_BODY_LINE = RSA_PEM.splitlines()[5]  # a line of key material


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def keyed(make: Callable[..., Driver], **kw: Any) -> Driver:
    """A driver logging in with a private key (no client secret)."""
    kw.setdefault("client_id", "key-client")
    kw.setdefault("private_key", RSA_KEY)
    return make(client_secret=None, **kw)


def decode(assertion: str, key: Any = RSA_KEY, algorithm: str = "RS256") -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        assertion, key.public_key(), algorithms=[algorithm], audience=TOKEN_URL
    )
    return claims


# ------------------------------------------------------------ private_key_jwt


def test_the_token_request_carries_a_signed_assertion_and_no_secret(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    keyed(make, key_id="k1").read_resource("Patient", "1")
    sent = form(fake.token_requests[0])
    assert set(sent) == {"grant_type", "client_id", "client_assertion_type", "client_assertion"}
    assert sent["grant_type"] == "client_credentials"
    assert sent["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    claims = decode(sent["client_assertion"])
    assert claims["iss"] == claims["sub"] == sent["client_id"] == "key-client"
    assert claims["aud"] == TOKEN_URL
    assert claims["exp"] - claims["iat"] == 300
    assert len(claims["jti"]) == 32
    assert jwt.get_unverified_header(sent["client_assertion"]) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": "k1",
    }


def test_every_token_request_signs_a_fresh_assertion(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", httpx.Response(401))
    keyed(make).read_resource("Patient", "1")  # login, 401, forced refresh, replay
    assertions = [form(r)["client_assertion"] for r in fake.token_requests]
    assert len(assertions) == 2
    jtis = {decode(a)["jti"] for a in assertions}
    assert len(jtis) == 2


@pytest.mark.parametrize(
    ("key", "algorithm", "expected"),
    [
        (RSA_KEY, None, "RS256"),
        (RSA_KEY, "RS512", "RS512"),
        (EC_KEY, None, "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), None, "ES384"),
        (ec.generate_private_key(ec.SECP521R1()), "ES512", "ES512"),
    ],
)
def test_the_algorithm_follows_the_key(
    make: Callable[..., Driver], fake: FakeMedplum, key: Any, algorithm: str | None, expected: str
) -> None:
    keyed(make, private_key=key, algorithm=algorithm).read_resource("Patient", "1")
    assertion = form(fake.token_requests[0])["client_assertion"]
    assert jwt.get_unverified_header(assertion)["alg"] == expected
    assert decode(assertion, key, expected)["sub"] == "key-client"


def test_a_pem_text_or_bytes_key_is_loaded(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    keyed(make, private_key=RSA_PEM).read_resource("Patient", "1")
    keyed(make, private_key=RSA_PEM.encode()).read_resource("Patient", "1")
    # The same key: one identity, one login between them.
    assert len(fake.token_requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"private_key": EC_KEY, "algorithm": "ES384"}, "a secp256r1 key signs with ES256"),
        ({"private_key": EC_KEY, "algorithm": "RS256"}, "a secp256r1 key signs with ES256"),
        ({"private_key": RSA_KEY, "algorithm": "ES256"}, "ES256 does not sign with an RSA key"),
        ({"private_key": RSA_KEY, "algorithm": "HS256"}, "'HS256' is not one Medplum accepts"),
        ({"private_key": RSA_KEY, "algorithm": "PS256"}, "'PS256' is not one Medplum accepts"),
        (
            {"private_key": rsa.generate_private_key(public_exponent=65537, key_size=1024)},
            "at least 2048 bits",
        ),
        ({"private_key": ec.generate_private_key(ec.SECP256K1())}, "not P-256, P-384 or P-521"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n"}, "not an unencrypted PEM"),
        ({"private_key": RSA_KEY, "key_id": ""}, "key_id must be a non-empty str"),
    ],
)
@pytest.mark.parametrize("cls", [MedplumClient, AsyncMedplumClient])
def test_a_key_or_algorithm_medplum_would_refuse_is_refused_up_front(
    cls: type[Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        cls(BASE, client_id="key-client", **kwargs)
    assert "not a key" not in str(caught.value)


def test_an_encrypted_pem_says_so() -> None:
    encrypted = RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    with pytest.raises(ValueError, match="encrypted: load it yourself"):
        MedplumClient(BASE, client_id="key-client", private_key=encrypted)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"private_key": RSA_KEY}, "private_key needs client_id"),
        ({"subject_token": SUBJECT}, "subject_token needs client_id"),
        ({"client_id": "c", "client_secret": "s", "private_key": RSA_KEY}, "give one of"),
        ({"client_id": "c", "subject_token": SUBJECT, "private_key": RSA_KEY}, "give one of"),
        ({"client_id": "c", "client_secret": "s", "key_id": "k"}, "go with private_key"),
        ({"client_id": "c", "client_secret": "s", "algorithm": "RS256"}, "go with private_key"),
        ({"client_id": "c"}, "client_id needs a credential"),
        ({"client_secret": "s"}, "client_secret needs client_id"),
    ],
)
def test_credentials_must_fit_together(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MedplumClient(BASE, **kwargs)


# ------------------------------------------------------------ one token lifecycle


def test_clients_with_the_same_key_share_one_token_keyed_without_the_key(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    keyed(make).read_resource("Patient", "1")
    keyed(make, private_key=RSA_PEM).read_resource("Patient", "1")
    keyed(make, private_key=EC_KEY).read_resource("Patient", "1")  # another identity
    assert len(fake.token_requests) == 2
    keys = sorted(key[2] for key in shared_token_cache()._tokens)
    assert all(k.startswith("private_key_jwt:") and len(k) == 16 + 64 for k in keys)
    assert PEM_BODY_LINE not in repr(keys)


def test_concurrent_async_calls_sign_in_once(fake: FakeMedplum) -> None:
    client = fake.async_client(client_secret=None, client_id="key-client", private_key=EC_KEY)

    async def many() -> None:
        await asyncio.gather(*(client.read_resource("Patient", "1") for _ in range(25)))
        await client.aclose()

    asyncio.run(many())
    assert len(fake.token_requests) == 1
    assert len(fake.api_requests) == 25


def test_a_refused_assertion_starts_the_cooldown(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.token_replies.append(
        httpx.Response(
            400,
            json={"error": "invalid_request", "error_description": "Invalid client assertion"},
        )
    )
    driver = keyed(make)
    with pytest.raises(AuthenticationError, match=r"HTTP 400 \(invalid_request\)"):
        driver.read_resource("Patient", "1")
    with pytest.raises(TokenRefreshCooldownError):
        driver.read_resource("Patient", "1")
    assert len(fake.token_requests) == 1


def test_a_429_from_the_token_endpoint_is_waited_out_then_signed_again(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    limited = httpx.Response(429, headers={"RateLimit": '"requests";r=0;t=55'}, json={})
    fake.token_replies.append(limited)
    keyed(make).read_resource("Patient", "1")
    assert sleeps == [55.0]
    assert len(fake.token_requests) == 2
    assert all(decode(form(r)["client_assertion"]) for r in fake.token_requests)


# ------------------------------------------------------------ token exchange


def test_token_exchange_sends_the_subject_token_and_no_secret(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make(client_id="idp-client", client_secret=None, subject_token=SUBJECT).read_resource(
        "Patient", "1"
    )
    assert form(fake.token_requests[0]) == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "client_id": "idp-client",
        "subject_token": SUBJECT,
    }
    assert fake.api_requests[0].headers["authorization"] == "Bearer tok-1"


def test_clients_with_the_same_subject_token_share_one_exchange(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    for token in (SUBJECT, SUBJECT, SUBJECT + "-other"):
        make(client_id="idp-client", client_secret=None, subject_token=token).read_resource(
            "Patient", "1"
        )
    assert len(fake.token_requests) == 2
    keys = [key[2] for key in shared_token_cache()._tokens]
    assert all(k.startswith("token_exchange:") for k in keys)
    assert SUBJECT not in repr(keys)


def test_the_refresh_token_of_an_exchange_is_not_kept(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    refresh = "REFRESH-secret-1a2b"
    fake.token_replies.append(
        httpx.Response(200, json={"access_token": "tok-x", "refresh_token": refresh})
    )
    driver = make(client_id="idp-client", client_secret=None, subject_token=SUBJECT)
    driver.read_resource("Patient", "1")
    assert refresh not in repr(vars(driver.client)) and refresh not in repr(
        shared_token_cache()._tokens
    )


# ------------------------------------------------------------ never shown


def _frames_locals(error: BaseException) -> str:
    shown: list[str] = []
    for frame in traceback.TracebackException.from_exception(error, capture_locals=True).stack:
        # The SDK's own files only: the checkout's folder may be named pymedplum too.
        if Path(frame.filename).resolve().is_relative_to(PACKAGE_DIR):
            shown.append(str(frame.locals))
    assert shown
    return "\n".join(shown)


def test_no_key_assertion_or_subject_token_in_reprs_or_traceback_locals(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.token_replies.append(httpx.Response(401, json={"error": "invalid_client"}))
    driver = keyed(make, private_key=RSA_PEM)
    with pytest.raises(AuthenticationError) as caught:
        driver.read_resource("Patient", "1")
    assertion = form(fake.token_requests[0])["client_assertion"]
    shown = _frames_locals(caught.value) + repr(driver.client) + repr(driver.client._token)
    shown += repr(driver.client._token._grant) + str(caught.value)
    assert PEM_BODY_LINE not in shown and "PRIVATE KEY" not in shown
    assert assertion not in shown and assertion.split(".")[2] not in shown

    fake.token_replies.append(httpx.Response(400, json={"error": "invalid_request"}))
    exchange = make(client_id="idp-client", client_secret=None, subject_token=SUBJECT)
    with pytest.raises(AuthenticationError) as failed:
        exchange.read_resource("Patient", "1")
    shown = _frames_locals(failed.value) + repr(exchange.client._token._grant)
    assert SUBJECT not in shown


def test_no_token_of_a_successful_reply_in_the_locals_when_storing_it_fails(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    class FailingCache:
        def get(self, key: Any) -> None:
            return None

        def put(self, key: Any, token: Any) -> None:
            raise RuntimeError("cache down")

        def discard(self, key: Any, access_token: str) -> None:
            pass

    access, refresh = "ACCESS-tok-77aa", "REFRESH-tok-88bb"
    fake.token_replies.append(
        httpx.Response(200, json={"access_token": access, "refresh_token": refresh})
    )
    driver = make(
        client_id="idp-client",
        client_secret=None,
        subject_token=SUBJECT,
        token_cache=FailingCache(),
    )
    with pytest.raises(RuntimeError) as caught:
        driver.read_resource("Patient", "1")
    shown = _frames_locals(caught.value)
    assert access not in shown and refresh not in shown and SUBJECT not in shown


@pytest.mark.parametrize("cls", [MedplumClient, AsyncMedplumClient])
def test_no_key_in_the_locals_of_a_construction_error(cls: type[Any]) -> None:
    with pytest.raises(ValueError) as caught:
        cls(BASE, client_id="c", private_key=RSA_PEM, algorithm="ES256")
    assert PEM_BODY_LINE not in _frames_locals(caught.value)
    with pytest.raises(ValueError) as other:
        cls(BASE, client_id="c", subject_token=SUBJECT, client_secret="s")
    assert SUBJECT not in _frames_locals(other.value)
