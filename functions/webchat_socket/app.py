"""The web chat WebSocket API: $connect (token), $disconnect, $default (frames)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.channels.webchat.settings import webchat_settings
from threadline.channels.webchat.socket import WebchatSocket
from threadline.logs import logger
from threadline.secrets import get_secret
from threadline.settings import store_settings
from threadline.store import TimelineStore
from threadline.telemetry import traced

socket = WebchatSocket(
    TimelineStore(store_settings()),
    webchat_settings(),
    token_secret=lambda: get_secret("WEBCHAT_TOKEN_SECRET"),
)


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return socket.handle(event)
