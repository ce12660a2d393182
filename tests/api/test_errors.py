"""One handler maps touchflow's error root to HTTP: what a route lets through reaches the client as its
`http_status` with its message, never as a 500."""

from __future__ import annotations

from fastapi.testclient import TestClient

from touchflow.errors import InvalidInput, NotFound, TouchflowError


def test_every_touchflow_error_is_answered_with_its_status_and_message(api: TestClient) -> None:
    app = api.app

    @app.get("/raise/{kind}")  # type: ignore[attr-defined, untyped-decorator]
    async def raising(kind: str) -> None:
        raise {"invalid": InvalidInput("cursor: not ours"), "missing": NotFound("no such thing")}[kind]

    assert (api.get("/raise/invalid").status_code, api.get("/raise/invalid").json()["message"]) == (
        422,
        "cursor: not ours",
    )
    assert api.get("/raise/missing").status_code == 404
    assert issubclass(InvalidInput, TouchflowError) and issubclass(InvalidInput, ValueError)


def test_a_bad_inbox_cursor_is_a_422_through_the_handler(api: TestClient) -> None:
    from tests.conftest import SECRET
    from touchflow.signing import Signer

    token = Signer(SECRET).customer_token("c1")
    headers = {"X-Touchflow-Customer": "c1", "X-Touchflow-Token": token}
    answer = api.get("/v1/inbox/messages?cursor=nonsense", headers=headers)
    assert answer.status_code == 422
    assert answer.json()["message"].startswith("cursor: not a cursor this API returned")
