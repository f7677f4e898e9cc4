"""The local WebSocket API's route selection, as API Gateway selects routes."""

from __future__ import annotations

from devstack.websocket import SocketApi, SocketRoute


def api(*keys: str) -> SocketApi:
    return SocketApi(
        logical_id="ChatApi",
        api_id="abc123",
        stage="dev",
        selection_expression="$request.body.action",
        routes={
            key: SocketRoute(key, f"Fn{index}", key == "$default") for index, key in enumerate(keys)
        },
    )


def test_a_message_goes_to_the_route_its_action_names():
    chat = api("$connect", "$default", "send")
    assert chat.route_for('{"action": "send", "text": "hi"}').key == "send"


def test_anything_else_goes_to_default():
    chat = api("$connect", "$default", "send")
    for body in ('{"action": "read"}', "not json", "[]", '{"action": 5}', '{"action": "$connect"}'):
        assert chat.route_for(body).key == "$default"


def test_without_a_default_route_an_unknown_action_has_no_route():
    assert api("$connect", "send").route_for('{"action": "read"}') is None
