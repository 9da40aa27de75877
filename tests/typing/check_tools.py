"""Typing of the test kit, tracing and key-based login (checked by mypy --strict)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum.otel import instrument, uninstrument
from pymedplum.testing import LocalMedplumServer, medplum_vcr
from pymedplum.testing.identity import LoopbackIdentityProvider
from pymedplum.testing.pytest_plugin import MedplumConnection


def keys(pem: str, der_pem: bytes) -> None:
    MedplumClient("https://m.example/", client_id="c", private_key=pem, key_id="k1")
    MedplumClient("https://m.example/", client_id="c", private_key=der_pem, algorithm="RS512")
    AsyncMedplumClient(
        "https://m.example/", client_id="c", private_key=ec.generate_private_key(ec.SECP256R1())
    )
    MedplumClient(
        "https://m.example/",
        client_id="c",
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    AsyncMedplumClient("https://m.example/", client_id="c", subject_token="idp-token")
    MedplumClient("https://m.example/", client_id="c", private_key=42)  # type: ignore[arg-type]


def tracing(client: MedplumClient, aclient: AsyncMedplumClient) -> None:
    instrument(client)
    instrument(aclient, propagate=False)
    instrument()
    uninstrument(client)
    uninstrument()


def testing(server: LocalMedplumServer, connection: MedplumConnection) -> None:
    with LoopbackIdentityProvider() as idp:
        app = server.create_client_application("x", jwks_uri=idp.jwks_uri)
        client_id: str = app.client_id
        token: str = idp.issue_token(email="a@example.com")
    MedplumClient(**connection.client_kwargs())
    medplum_vcr(cassette_library_dir="cassettes")
    del client_id, token
