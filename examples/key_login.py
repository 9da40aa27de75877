"""Log in to Medplum with a private key, and by token exchange (docs/key_login.md).

Starts the local Medplum server (pymedplum.testing) and a loopback identity provider that
stands in for two things you would host yourself: the JWK Set your ClientApplication's
`jwksUri` points at, and your identity provider's userinfo endpoint. Then:

1. makes an EC key pair and publishes the public key;
2. registers a ClientApplication with that JWK Set URL and identity provider;
3. logs in with the private key (a signed JWT assertion, no secret) and creates a Patient;
4. exchanges a user's identity-provider token for a Medplum token acting as that user.

Needs `pip install 'pymedplum[jwt]'`, Node >= 20.10 and npm. Prints no key, assertion or
token.
"""

from __future__ import annotations

import sys

from cryptography.hazmat.primitives.asymmetric import ec

from pymedplum import AuthenticationError, MedplumClient
from pymedplum.testing import LocalMedplumServer
from pymedplum.testing.identity import LoopbackIdentityProvider


def main() -> int:
    with LocalMedplumServer() as server, LoopbackIdentityProvider() as idp:
        private_key = ec.generate_private_key(ec.SECP256R1())
        idp.add_key(private_key, key_id="example-key-1")
        app = server.create_client_application(
            "key-login example", jwks_uri=idp.jwks_uri, user_info_url=idp.userinfo_url
        )
        print(f"ClientApplication {app.client_id}: jwksUri {idp.jwks_uri}")

        with MedplumClient(
            server.base_url + "/",
            client_id=app.client_id,
            private_key=private_key,
            key_id="example-key-1",
        ) as client:
            created = client.create_resource({"resourceType": "Patient"})
            print(f"signed in with the private key; created Patient/{created['id']}")

        stranger = ec.generate_private_key(ec.SECP256R1())  # not in the JWK Set
        with MedplumClient(
            server.base_url + "/", client_id=app.client_id, private_key=stranger
        ) as client:
            try:
                client.search_resources("Patient")
            except AuthenticationError as exc:
                reason = (exc.response_data or {}).get("error_description")
                print(f"an unpublished key is refused: {exc} ({reason})")

        alice = server.practitioners["alice"]
        user_token = idp.issue_token(email="alice@example.com")  # signed in at the provider
        with MedplumClient(
            server.base_url + "/", client_id=app.client_id, subject_token=user_token
        ) as client:
            client.search_resources("Patient", {"_count": 1})
        acting = server.fhir_requests()[-1]["acting_membership"]
        print(f"token exchange: acting as {alice.name} ({acting == alice.membership})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
