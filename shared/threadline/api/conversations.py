"""Conversations: a customer's conversations, one conversation, closing one."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import ValidationError

from threadline.api.dependencies import NoteIdempotencyKey, customer_store
from threadline.api.errors import answers
from threadline.errors import MalformedRequest, NotFound
from threadline.notes import NoteRequest, add_note
from threadline.outcomes import CloseRequest
from threadline.schema import Conversation, ConversationPage, Message
from threadline.store import MAX_PAGE_SIZE

router = Router()  # type: ignore[no-untyped-call]


@router.get(
    "/v1/customers/<customer_id>/conversations",
    summary="A customer's conversations, newest first",
    tags=["conversations"],
    operation_id="listConversations",
    responses=answers({200: "A page of conversations"}, 404),
)
def list_conversations(
    customer_id: Annotated[str, Path()],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> ConversationPage:
    store = customer_store()
    if store.get_customer(customer_id) is None:
        raise NotFound("no such customer")
    return store.conversations(customer_id, limit=limit, cursor=cursor)


@router.get(
    "/v1/conversations/<conversation_id>",
    summary="Get a conversation with its metrics",
    tags=["conversations"],
    operation_id="getConversation",
    responses=answers({200: "The conversation"}, 404),
)
def get_conversation(conversation_id: Annotated[str, Path()]) -> Conversation:
    conversation = customer_store().get_conversation(conversation_id)
    if conversation is None:
        raise NotFound("no such conversation")
    return conversation


@router.post(
    "/v1/conversations/<conversation_id>/close",
    summary="Close a conversation (idempotent: a closed one is answered as it is)",
    tags=["conversations"],
    operation_id="closeConversation",
    responses=answers({200: "The conversation, closed"}, 404),
)
def close_conversation(conversation_id: Annotated[str, Path()]) -> Conversation:
    # The body is optional ({"resolution": ..., "agent_id": ...}): closing without
    # one records "resolved" (docs/analytics.md).
    raw = router.current_event.body
    try:
        request = CloseRequest.model_validate_json(raw) if raw else CloseRequest()
    except ValidationError as exc:
        raise MalformedRequest(f"close request is not valid: {exc}", code="invalid_close") from exc
    conversation = customer_store().close_conversation(conversation_id, outcome=request.outcome())
    if conversation is None:
        raise NotFound("no such conversation")
    return conversation


@router.post(
    "/v1/conversations/<conversation_id>/notes",
    summary="Add an internal agent note to a conversation (never sent to the customer)",
    tags=["conversations"],
    status_code=201,
    operation_id="addConversationNote",
    responses=answers(
        {201: "The note as stored on the timeline"},
        404,
        explained={422: "An Idempotency-Key reused for another note"},
    ),
)
def add_conversation_note(
    conversation_id: Annotated[str, Path()],
    request: Annotated[NoteRequest, Body()],
    idempotency_key: NoteIdempotencyKey = None,
) -> Response[Message]:
    store = customer_store()
    conversation = store.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound("no such conversation")
    note, _ = add_note(
        store,
        conversation.customer_id,
        request,
        conversation_id=conversation.id,
        conversation_channel=conversation.last_channel,
        idempotency_key=idempotency_key,
    )
    return Response(201, "application/json", note)
