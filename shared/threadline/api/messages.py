"""Messages: queue a reply to a customer, and fetch a message's media on demand."""

from __future__ import annotations

from functools import cache
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path

from threadline.api.dependencies import customer_store
from threadline.api.errors import answers
from threadline.media import MediaFetcher, MediaLink, media_link
from threadline.outbound import SendMessageRequest
from threadline.schema import Message

router = Router()  # type: ignore[no-untyped-call]


@router.post(
    "/v1/customers/<customer_id>/messages",
    summary="Send a reply: queued now, sent by the dispatcher",
    tags=["messages"],
    status_code=202,
    operation_id="sendMessage",
    responses=answers(
        {202: "Queued: the message as stored, status queued"},
        404,
        409,
        explained={
            422: "Cannot be sent as asked: no identity on the channel, an option the "
            "channel does not carry, or an Idempotency-Key reused for another body"
        },
    ),
)
def send_message(
    customer_id: Annotated[str, Path()],
    request: Annotated[SendMessageRequest, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="idempotency-key",
            max_length=255,
            description="retrying with the same key returns the first answer and sends once",
        ),
    ] = None,
) -> Response[Message]:
    message, _ = customer_store().queue_message(
        customer_id, request, idempotency_key=idempotency_key
    )
    return Response(202, "application/json", message)


# ---------------------------------------------------------------- media on demand
# WhatsApp Cloud API media is downloaded the first time someone asks for it (never in
# the webhook), kept in the raw bucket, and served as a short-lived presigned URL.


@cache
def media_fetchers() -> dict[str, MediaFetcher]:
    # Built from the channel registry on the first media request (the Graph client and
    # urllib3 under it): the API's other routes should not pay for it at cold start.
    from threadline.channels import registry

    return registry.media_fetchers()


@router.get(
    "/v1/customers/<customer_id>/messages/<message_id>/media/<index>",
    summary="Where to fetch a message's media part: a short-lived URL",
    tags=["messages"],
    operation_id="getMessageMedia",
    responses=answers(
        {200: "A short-lived URL of the media part"},
        404,
        explained={502: "The provider did not hand over the media"},
    ),
)
def get_media(
    customer_id: Annotated[str, Path()],
    message_id: Annotated[str, Path()],
    index: Annotated[int, Path(ge=0, le=99, description="the part's position in parts")],
) -> MediaLink:
    return media_link(customer_store(), customer_id, message_id, index, media_fetchers())
