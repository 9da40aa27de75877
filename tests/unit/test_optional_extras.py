"""Without an optional extra, each tool says which one to install (and nothing is sent)."""

from __future__ import annotations

import sys

import httpx
import pytest

from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum.cli import main


def refuse_import(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make `import name` fail as if the package were not installed."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("cls", [MedplumClient, AsyncMedplumClient])
def test_subscribe_without_websockets_names_the_extra_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, cls: type[MedplumClient] | type[AsyncMedplumClient]
) -> None:
    refuse_import(monkeypatch, "websockets")
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(500))
    http = (httpx.Client if cls is MedplumClient else httpx.AsyncClient)(transport=transport)
    client = cls("https://example.org/", access_token="t", http_client=http)  # type: ignore[arg-type]
    with pytest.raises(ImportError, match=r"pymedplum\[subscriptions\]"):
        client.subscribe("Patient")
    assert sent == []


def test_subscribe_checks_its_arguments_when_called() -> None:
    client = MedplumClient("https://example.org/", access_token="t")
    with pytest.raises(ValueError, match="resource type"):
        client.subscribe("?name=x")
    with pytest.raises(ValueError, match="ping_interval"):
        client.subscribe("Patient", ping_interval=0)
    with pytest.raises(ValueError, match="since"):
        client.subscribe("Patient", since="yesterday")
    stream = client.subscribe("Patient?name=x")
    assert stream.criteria == "Patient?name=x" and stream.subscription_id is None
    assert "Patient" in repr(stream) and "name=x" not in repr(stream)


def test_the_command_line_without_click_and_rich_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "pymedplum.cli._app", raising=False)
    refuse_import(monkeypatch, "click")
    assert main(["--help"]) == 2
    assert "pip install 'pymedplum[cli]'" in capsys.readouterr().err


def test_pymedplum_mcp_without_the_mcp_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "pymedplum.mcp_server", raising=False)
    refuse_import(monkeypatch, "mcp")
    assert main(["mcp"]) == 2
    assert "pip install 'pymedplum[mcp]'" in capsys.readouterr().err


@pytest.mark.parametrize("cls", [MedplumClient, AsyncMedplumClient])
def test_a_private_key_without_pyjwt_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, cls: type[MedplumClient] | type[AsyncMedplumClient]
) -> None:
    refuse_import(monkeypatch, "jwt")
    with pytest.raises(ImportError, match=r"pip install 'pymedplum\[jwt\]'"):
        cls("https://example.org/", client_id="c", private_key="-----BEGIN PRIVATE KEY-----")


def test_tracing_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "pymedplum.otel", raising=False)
    refuse_import(monkeypatch, "opentelemetry")
    with pytest.raises(ImportError, match=r"pip install 'pymedplum\[otel\]'"):
        import pymedplum.otel  # noqa: F401
