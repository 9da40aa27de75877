"""Key-based login against the local Medplum server, which checks what Medplum's token
endpoint checks (oauth/token.ts): a client assertion verified with the ClientApplication's
JWK Set (served here by a loopback identity provider), and token exchange through the
provider's userinfo endpoint. Both clients."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

jwt = pytest.importorskip("jwt")

from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

from pymedplum import AuthenticationError  # noqa: E402
from pymedplum.testing.identity import LoopbackIdentityProvider  # noqa: E402
from pymedplum.testing.local_server import ClientCredentials, LocalMedplumServer  # noqa: E402
from tests.integration.conftest_clients import Driver  # noqa: E402

pytestmark = pytest.mark.usefixtures("medplum")

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def idp() -> Iterator[LoopbackIdentityProvider]:
    with LoopbackIdentityProvider() as provider:
        yield provider


@pytest.fixture
def key_client(medplum: LocalMedplumServer, idp: LoopbackIdentityProvider) -> ClientCredentials:
    """A ClientApplication with the identity provider's JWK Set URL and userinfo URL (the
    admin's requests that made it are cleared from the server's log)."""
    client = medplum.create_client_application(
        "keyed", jwks_uri=idp.jwks_uri, user_info_url=idp.userinfo_url
    )
    medplum.clear_requests()
    return client


@pytest.fixture
def logins(medplum: LocalMedplumServer, key_client: ClientCredentials) -> Callable[[], int]:
    """How many token requests the server has had since the keyed client was made."""
    before = medplum.token_requests
    return lambda: medplum.token_requests - before


@pytest.fixture
def login(
    make_client: Callable[..., Driver], key_client: ClientCredentials
) -> Callable[..., Driver]:
    """A driver of this test's flavour logging in as the keyed client (no secret)."""

    def factory(**kw: Any) -> Driver:
        return make_client(client_id=key_client.client_id, client_secret=None, **kw)

    return factory


def _acting(medplum: LocalMedplumServer) -> list[tuple[str | None, str | None]]:
    """(client id, acting membership) of each FHIR request the server logged."""
    return [(r["client_id"], r["acting_membership"]) for r in medplum.fhir_requests()]


@pytest.mark.parametrize(("key", "algorithm"), [(RSA_KEY, "RS256"), (EC_KEY, "ES256")])
def test_a_signed_assertion_logs_in_as_the_client(
    login: Callable[..., Driver],
    idp: LoopbackIdentityProvider,
    medplum: LocalMedplumServer,
    key_client: ClientCredentials,
    logins: Callable[[], int],
    key: Any,
    algorithm: str,
) -> None:
    idp.add_key(key, key_id="k1", algorithm=algorithm)
    client = login(private_key=key, key_id="k1")
    created = client.create_resource({"resourceType": "Patient"})
    assert client.read_resource("Patient", created["id"])["id"] == created["id"]
    assert logins() == 1
    assert "/jwks.json" in idp.requests  # Medplum fetched the keys to verify the signature
    assert set(_acting(medplum)) == {(key_client.client_id, key_client.membership)}


def test_the_key_id_picks_the_key_and_without_one_every_match_is_tried(
    login: Callable[..., Driver], idp: LoopbackIdentityProvider
) -> None:
    idp.add_key(OTHER_RSA_KEY, key_id="old")
    idp.add_key(RSA_KEY, key_id="new")
    login(private_key=RSA_KEY, key_id="new").search_resources("Patient", {"_count": 1})
    login(private_key=RSA_KEY).search_resources("Patient", {"_count": 1})


def test_a_key_not_in_the_jwk_set_is_refused(
    login: Callable[..., Driver], idp: LoopbackIdentityProvider
) -> None:
    idp.add_key(OTHER_RSA_KEY)
    with pytest.raises(AuthenticationError, match=r"HTTP 400 \(invalid_request\)") as caught:
        login(private_key=RSA_KEY).search_resources("Patient")
    assert caught.value.response_data == {
        "error": "invalid_request",
        "error_description": "Invalid client assertion signature",
    }


def test_a_client_without_a_jwk_set_url_cannot_use_a_key(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    plain = medplum.create_client_application("no keys")
    client = make_client(client_id=plain.client_id, client_secret=None, private_key=RSA_KEY)
    with pytest.raises(AuthenticationError) as caught:
        client.search_resources("Patient")
    assert caught.value.response_data["error_description"] == "Client must have a JWK Set URL"


def test_an_expired_token_is_replaced_by_a_fresh_assertion(
    login: Callable[..., Driver],
    idp: LoopbackIdentityProvider,
    medplum: LocalMedplumServer,
    logins: Callable[[], int],
) -> None:
    idp.add_key(EC_KEY)
    client = login(private_key=EC_KEY)
    client.search_resources("Patient", {"_count": 1})
    medplum.expire_tokens()
    client.search_resources("Patient", {"_count": 1})  # 401, a new login, the replay
    assert logins() == 2
    assert [r["status"] for r in medplum.fhir_requests()] == [200, 401, 200]


# ------------------------------------------------------------ what the server checks


def _assertion(key_client: ClientCredentials, medplum: LocalMedplumServer, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": key_client.client_id,
        "sub": key_client.client_id,
        "aud": medplum.token_url,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    algorithm = changes.pop("algorithm", "RS256")
    key = changes.pop("key", RSA_KEY)
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return str(jwt.encode(claims, key, algorithm=algorithm))


@pytest.mark.parametrize(
    ("changes", "description"),
    [
        ({}, None),
        ({"aud": "https://elsewhere.example/oauth2/token"}, "Invalid client assertion audience"),
        ({"sub": "someone-else"}, "Invalid client assertion issuer"),
        ({"exp": int(time.time()) - 60}, "Invalid client assertion signature"),
        (
            {"key": b"a-shared-secret-of-32-bytes-long!", "algorithm": "HS256"},
            "Invalid client assertion signature",
        ),
        ({"key": RSA_KEY, "algorithm": "PS256"}, "Invalid client assertion signature"),
    ],
)
def test_the_servers_checks_of_a_client_assertion(
    medplum: LocalMedplumServer,
    idp: LoopbackIdentityProvider,
    key_client: ClientCredentials,
    changes: dict[str, Any],
    description: str | None,
) -> None:
    idp.add_key(RSA_KEY)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _assertion(key_client, medplum, **changes),
    }
    answer = httpx.post(medplum.token_url, data=form, timeout=30)
    if description is None:
        assert answer.status_code == 200 and answer.json()["access_token"]
    else:
        assert answer.status_code == 400
        assert answer.json() == {"error": "invalid_request", "error_description": description}


def test_the_server_refuses_an_unknown_assertion_type(medplum: LocalMedplumServer) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "saml",
        "client_assertion": "x",
    }
    answer = httpx.post(medplum.token_url, data=form, timeout=30)
    assert answer.json()["error_description"] == "Unsupported client assertion type"


# ------------------------------------------------------------ token exchange


def test_an_exchanged_token_acts_as_the_user_the_provider_names(
    login: Callable[..., Driver], idp: LoopbackIdentityProvider, medplum: LocalMedplumServer
) -> None:
    alice = medplum.practitioners["alice"]
    client = login(subject_token=idp.issue_token(email="alice@example.com"))
    client.create_resource({"resourceType": "Patient"})
    assert [acting for _, acting in _acting(medplum)] == [alice.membership]
    assert idp.requests == ["/userinfo"]


def test_clients_with_the_same_subject_token_exchange_it_once(
    login: Callable[..., Driver], idp: LoopbackIdentityProvider, logins: Callable[[], int]
) -> None:
    token = idp.issue_token(email="bob@example.com")
    for _ in range(5):  # a client per request, as a web app would build them
        login(subject_token=token).search_resources("Patient", {"_count": 1})
    assert logins() == 1


@pytest.mark.parametrize(
    ("claims", "description"),
    [
        (None, "Failed to verify code - check your identity provider configuration"),
        ({"email": "nobody@example.com"}, "User not found"),
    ],
)
def test_a_subject_token_medplum_cannot_place_is_refused(
    login: Callable[..., Driver],
    idp: LoopbackIdentityProvider,
    claims: dict[str, Any] | None,
    description: str,
) -> None:
    token = idp.issue_token(**claims) if claims else "not-issued-by-the-provider"
    with pytest.raises(AuthenticationError) as caught:
        login(subject_token=token).search_resources("Patient")
    assert caught.value.response_data["error_description"] == description
    assert token not in str(caught.value)
