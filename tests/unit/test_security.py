"""Transport security: https by default, loopback, no redirects, same-origin follow-ups."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pymedplum import (
    AsyncMedplumClient,
    AuthenticationError,
    InsecureTransportError,
    MedplumClient,
    OperationOutcomeError,
    UnsafeRedirectError,
    _backend,
)

from .conftest import BASE, Driver, FakeMedplum


@pytest.mark.parametrize("cls", [MedplumClient, AsyncMedplumClient])
def test_plain_http_to_a_remote_host_is_refused(cls: type[MedplumClient]) -> None:
    with pytest.raises(InsecureTransportError):
        cls("http://api.example.com/")


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8103/", "http://127.0.0.1/", "http://[::1]:8103/", "http://127.0.0.2/"],
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert MedplumClient(url).base_url == url


def test_allow_insecure_http_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pymedplum"):
        MedplumClient("http://api.example.com", allow_insecure_http=True)
    assert any(
        r.levelno == logging.WARNING and "insecure" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("url", ["ftp://api.example.com/", "api.example.com", ""])
def test_non_http_base_urls_are_refused(url: str) -> None:
    with pytest.raises(InsecureTransportError):
        MedplumClient(url)


def test_credentials_in_base_url_are_refused() -> None:
    with pytest.raises(ValueError):
        MedplumClient("https://user:pw@api.example.com/")


def test_own_http_client_never_follows_redirects() -> None:
    assert MedplumClient()._http.follow_redirects is False
    assert AsyncMedplumClient()._http.follow_redirects is False


def test_caller_client_that_follows_redirects_is_rejected() -> None:
    with pytest.raises(ValueError, match="follow_redirects"):
        MedplumClient(http_client=httpx.Client(follow_redirects=True))
    with pytest.raises(ValueError, match="follow_redirects"):
        AsyncMedplumClient(http_client=httpx.AsyncClient(follow_redirects=True))


@pytest.mark.parametrize("spelling", ["X-Medplum-On-Behalf-Of", "x-medplum-on-behalf-of"])
def test_caller_client_with_a_default_on_behalf_of_header_is_rejected(spelling: str) -> None:
    # It would reach every request, whatever on_behalf_of says (even the per-call clear).
    headers = {spelling: "ProjectMembership/m-1"}
    with pytest.raises(ValueError, match="X-Medplum-On-Behalf-Of.*on_behalf_of="):
        MedplumClient(http_client=httpx.Client(headers=headers))
    with pytest.raises(ValueError, match="X-Medplum-On-Behalf-Of.*on_behalf_of="):
        AsyncMedplumClient(http_client=httpx.AsyncClient(headers=headers))


@pytest.fixture(params=["sync", "async"])
def own_http(
    request: pytest.FixtureRequest, fake: FakeMedplum, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Driver]]:
    """Drivers over clients that build their own httpx client (the SDK's options), whose
    transport is the fake."""
    transport = httpx.MockTransport(fake.handle)
    new_sync, new_async = _backend.new_sync_http_client, _backend.new_async_http_client
    monkeypatch.setattr(
        _backend, "new_sync_http_client", lambda o: new_sync({**o, "transport": transport})
    )
    monkeypatch.setattr(
        _backend, "new_async_http_client", lambda o: new_async({**o, "transport": transport})
    )
    made: list[Driver] = []

    def factory(**kw: Any) -> Driver:
        cls = MedplumClient if request.param == "sync" else AsyncMedplumClient
        driver = Driver(cls(BASE, client_id="cid", client_secret="secret", **kw))
        made.append(driver)
        return driver

    yield factory
    for driver in made:
        driver.close()


def moved_to_evil(status: int, path: str) -> httpx.Response:
    return httpx.Response(status, headers={"Location": f"https://evil.test{path}"})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_own_http_client_does_not_follow_a_redirected_login(
    own_http: Callable[..., Driver], fake: FakeMedplum, status: int
) -> None:
    fake.token_replies.append(moved_to_evil(status, "/oauth2/token"))
    with pytest.raises(AuthenticationError, match="redirect"):
        own_http().read_resource("Patient", "1")
    assert [(r.url.host, r.url.path) for r in fake.requests] == [("medplum.test", "/oauth2/token")]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirected_login_is_refused_even_by_a_client_set_to_follow(
    make: Callable[..., Driver], fake: FakeMedplum, status: int
) -> None:
    # httpx lets a client's follow_redirects change after the constructor checked it.
    api = make()
    api.client._http.follow_redirects = True
    fake.token_replies.append(moved_to_evil(status, "/oauth2/token"))
    with pytest.raises(AuthenticationError, match="redirect") as caught:
        api.read_resource("Patient", "1")
    # A followed 307/308 would re-post the form, client secret included, to evil.test.
    assert [r.url.host for r in fake.requests] == ["medplum.test"]
    assert "evil.test" not in str(caught.value)


def test_a_redirected_login_is_refused_by_the_sdks_own_client_set_to_follow(
    own_http: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = own_http()
    api.client._http.follow_redirects = True
    fake.token_replies.append(moved_to_evil(307, "/oauth2/token"))
    with pytest.raises(AuthenticationError, match="redirect"):
        api.read_resource("Patient", "1")
    assert [r.url.host for r in fake.requests] == ["medplum.test"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_an_api_redirect_is_not_followed_even_by_a_client_set_to_follow(
    make: Callable[..., Driver], fake: FakeMedplum, status: int
) -> None:
    api = make()
    api.client._http.follow_redirects = True
    fake.script("GET", "/fhir/R4/Patient/1", moved_to_evil(status, "/steal"))
    with pytest.raises(OperationOutcomeError, match="redirect"):
        api.read_resource("Patient", "1")
    assert all(r.url.host == "medplum.test" for r in fake.requests)


def test_caller_client_of_the_wrong_kind_is_rejected() -> None:
    with pytest.raises(TypeError):
        MedplumClient(http_client=httpx.AsyncClient())  # type: ignore[arg-type]


def test_unknown_constructor_kwargs_raise_type_error() -> None:
    with pytest.raises(TypeError):
        MedplumClient(base_url="https://x.test/", max_retries=3)  # type: ignore[call-arg]


def test_a_redirect_is_not_followed(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    moved = httpx.Response(302, headers={"Location": "https://evil.test/steal"})
    fake.script("GET", "/fhir/R4/Patient/1", moved)
    with pytest.raises(OperationOutcomeError, match="redirect"):
        make().read_resource("Patient", "1")
    assert all(r.url.host == "medplum.test" for r in fake.requests)


def test_cross_origin_next_link_raises_before_any_request(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    page = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Patient", "id": "1"}}],
        "link": [{"relation": "next", "url": "https://evil.test/fhir/R4/Patient?page=2"}],
    }
    fake.script("GET", "/fhir/R4/Patient", httpx.Response(200, json=page))
    with pytest.raises(UnsafeRedirectError) as caught:
        make().search_resource_pages("Patient")
    assert "page=2" not in str(caught.value)  # the foreign URL's query is not echoed
    assert all(r.url.host == "medplum.test" for r in fake.requests)


@pytest.mark.parametrize(
    "link", ["http://medplum.test/fhir/R4/Patient", "https://medplum.test:8443/x"]
)
def test_scheme_or_port_change_is_cross_origin(
    make: Callable[..., Driver], fake: FakeMedplum, link: str
) -> None:
    page = {"resourceType": "Bundle", "link": [{"relation": "next", "url": link}]}
    fake.script("GET", "/fhir/R4/Patient", httpx.Response(200, json=page))
    with pytest.raises(UnsafeRedirectError):
        make().search_resource_pages("Patient")


def test_if_none_exist_cross_origin_url_is_refused(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(UnsafeRedirectError):
        make().create_resource_if_none_exist(
            {"resourceType": "Patient"}, "https://evil.test/fhir/R4/Patient?identifier=a|1"
        )
    assert fake.requests == []


def test_if_none_exist_same_origin_url_sends_its_query(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().create_resource_if_none_exist(
        {"resourceType": "Patient"}, "https://medplum.test/fhir/R4/Patient?identifier=a|1"
    )
    assert fake.api_requests[0].headers["if-none-exist"] == "identifier=a|1"


def test_if_none_exist_leading_question_mark_is_dropped(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().create_resource_if_none_exist({"resourceType": "Patient"}, "?identifier=a|1")
    assert fake.api_requests[0].headers["if-none-exist"] == "identifier=a|1"


def test_low_level_absolute_url_must_be_same_origin(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(UnsafeRedirectError):
        make().get("https://evil.test/fhir/R4/Patient")
    assert fake.requests == []


def test_ids_cannot_escape_the_resource_path(make: Callable[..., Driver]) -> None:
    api = make()
    for bad in ("..", "a/b", "", "x?y=1"):
        with pytest.raises(ValueError):
            api.read_resource("Patient", bad)
    with pytest.raises(ValueError):
        api.read_resource("../admin", "1")


def test_client_repr_holds_no_secret(fake: FakeMedplum) -> None:
    client = fake.sync_client(client_secret="s3cr3t", access_token="tok-abc")
    assert "s3cr3t" not in repr(client) and "tok-abc" not in repr(client)


def test_clients_share_one_tls_context_instead_of_loading_the_ca_bundle_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Loading the CA bundle costs about 0.2 s: a fresh client per task must not pay it.
    import ssl

    from pymedplum import AsyncMedplumClient, MedplumClient, _security

    loaded: list[object] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        loaded.append(kwargs)
        return real(*args, **kwargs)

    _security.default_ssl_context.cache_clear()
    monkeypatch.setattr(ssl, "create_default_context", counting)
    for _ in range(5):
        MedplumClient("https://medplum.test/", client_id="a", client_secret="b").close()
        AsyncMedplumClient("https://medplum.test/", client_id="a", client_secret="b")
    assert len(loaded) == 1
