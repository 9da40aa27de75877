"""What follows the model in `client.search(Model, ...)`, at run time."""

from __future__ import annotations

import pytest

from pymedplum.search import search_arguments


def test_query_and_on_behalf_of_pass_through() -> None:
    assert search_arguments({"family": "Smith"}, on_behalf_of="ProjectMembership/1") == (
        {"family": "Smith"},
        "ProjectMembership/1",
    )
    assert search_arguments() == (None, None)


def test_extra_query_pairs_follow_the_typed_parameters() -> None:
    query, _ = search_arguments(
        {"family": "Smith"}, extra_query=[("subject:Patient.name", "Ann"), ("_has:X", "1")]
    )
    assert query == [("family", "Smith"), ("subject:Patient.name", "Ann"), ("_has:X", "1")]
    assert search_arguments(extra_query={"a.b": "c"})[0] == [("a.b", "c")]


def test_pairs_as_the_query_are_refused_with_a_pointer_to_extra_query() -> None:
    with pytest.raises(TypeError, match="extra_query"):
        search_arguments([("family", "Smith")])  # type: ignore[arg-type]


def test_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        search_arguments({}, on_behalf="x")  # type: ignore[call-arg]
