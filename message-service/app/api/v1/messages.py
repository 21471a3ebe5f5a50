"""One message: its siblings, regenerate, continue, select, edit as a branch, delete, stream, stop."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request, Response, status
from sse_starlette.sse import EventSourceResponse

from app.api.v1.conversations import wants_stream
from app.api.v1.streaming import REPLY_EVENTS, STREAMED_REPLY, sse
from app.core.deps import RuntimeDep
from app.schemas.message import (
    Branch,
    Exchange,
    GenerationOptions,
    MessageEdit,
    MessagePage,
    MessagePublic,
    public,
)
from app.services import history, sending
from app.services.exchanges import finished_exchange
from chat_common.auth import CurrentUser
from chat_common.errors import ConflictError
from chat_common.locations import set_location

router = APIRouter(prefix="/messages/{message_id}", tags=["messages"])


async def _options(
    options: Annotated[
        GenerationOptions | None, Body(description="Every field optional; no body: the defaults")
    ] = None,
) -> GenerationOptions:
    return options if options is not None else GenerationOptions()


# Regenerate and continue need nothing but the message id: their body is optional.
OptionsDep = Annotated[GenerationOptions, Depends(_options)]


@router.get("", response_model=MessagePublic)
async def read_message(message_id: str, user: CurrentUser, rt: RuntimeDep) -> MessagePublic:
    """One message of yours, with its place among its siblings."""
    message, conversation = await history.owned_message(rt, message_id, user.user_id)
    tree = await history.load_tree(rt, conversation)
    return public(history.in_tree(tree, str(message.id)), tree)


@router.get("/siblings", response_model=list[MessagePublic])
async def siblings(message_id: str, user: CurrentUser, rt: RuntimeDep) -> list[MessagePublic]:
    """The message and its alternatives (swipes), oldest first."""
    message, conversation = await history.owned_message(rt, message_id, user.user_id)
    tree = await history.load_tree(rt, conversation)
    return [public(m, tree) for m in tree.siblings(history.in_tree(tree, str(message.id)))]


async def _reply_started(rt: Any, reply: Any, options: GenerationOptions, accept: str | None) -> Any:
    """The reply streamed (a stream answers 200, without `Location`), or once it is finished."""
    if wants_stream(options, accept):
        return sse(rt, str(reply.id))
    return await finished_exchange(rt, reply)


@router.post(
    "/regenerate",
    status_code=status.HTTP_201_CREATED,
    response_model=Exchange,
    responses={200: STREAMED_REPLY},
)
async def regenerate(
    message_id: str,
    options: OptionsDep,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    response: Response,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """A new reply beside this one (a swipe), from the same history; paid like a send. `Location`: the
    new reply."""
    message, conversation = await history.owned_message(rt, message_id, user.user_id)
    tree = await history.load_tree(rt, conversation)
    if message.role != "assistant" or message.parent_id is None:
        raise ConflictError("Only a reply to a message can be regenerated", code="not_a_reply")
    await sending.check_message_limit(rt, user.user_id)
    _, reply = await sending.start_reply(
        rt,
        conversation=conversation,
        tree=tree,
        parent=history.in_tree(tree, message.parent_id),
        user_content=None,
        options=options,
    )
    set_location(request, response, "read_message", message_id=reply.id)
    return await _reply_started(rt, reply, options, accept)


@router.post(
    "/continue",
    response_model=Exchange,
    responses={
        200: {
            "description": "The continued reply once finished; streamed (SSE) when asked to",
            "content": {"text/event-stream": REPLY_EVENTS},
        }
    },
)
async def continue_reply(
    message_id: str,
    options: OptionsDep,
    user: CurrentUser,
    rt: RuntimeDep,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """Extend the last reply of the active path; only the continuation is paid."""
    message, conversation = await history.owned_message(rt, message_id, user.user_id)
    tree, path = await history.active_path(rt, conversation)
    if message.role != "assistant" or message.parent_id is None or not path or path[-1].id != message.id:
        raise ConflictError(
            "Only the last reply of the active path can be continued", code="not_the_last_reply"
        )
    if message.status == "generating":
        raise ConflictError("This reply is being generated already", code="generation_in_progress")
    if message.status == "failed":
        raise ConflictError("A failed reply can not be continued: regenerate it", code="not_continuable")
    await sending.check_message_limit(rt, user.user_id)
    _, reply = await sending.start_reply(
        rt,
        conversation=conversation,
        tree=tree,
        parent=history.in_tree(tree, message.parent_id),
        user_content=None,
        options=options,
        continue_of=message,
    )
    return await _reply_started(rt, reply, options, accept)


@router.post("/select", response_model=MessagePage)
async def select(message_id: str, user: CurrentUser, rt: RuntimeDep) -> MessagePage:
    """Make this message's branch the active path; returns the new path."""
    tree, path = await history.select(rt, message_id, user.user_id)
    return MessagePage(items=[public(m, tree) for m in path], has_more_before=False, has_more_after=False)


@router.patch("", status_code=status.HTTP_201_CREATED, response_model=Branch, responses={200: STREAMED_REPLY})
async def edit(
    message_id: str,
    data: MessageEdit,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    response: Response,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """Edit a message of yours as a branch: a new sibling with the new text (the old one stays), and
    with `regenerate: true` a new reply to it. `Location`: the new message."""
    sending.check_length(rt, data.content)
    message, conversation = await history.owned_message(rt, message_id, user.user_id)
    if message.role != "user":
        raise ConflictError("Only your own messages can be edited", code="not_a_user_message")
    tree = await history.load_tree(rt, conversation)
    parent = tree.by_id.get(message.parent_id) if message.parent_id else None  # None: a root
    if data.regenerate:
        await sending.check_message_limit(rt, user.user_id)
        sent, reply = await sending.start_reply(
            rt, conversation=conversation, tree=tree, parent=parent, user_content=data.content, options=data
        )
        set_location(request, response, "read_message", message_id=(sent or reply).id)
        return await _reply_started(rt, reply, data, accept)
    tree, branch = await history.add_branch(rt, conversation, message, data.content)
    set_location(request, response, "read_message", message_id=branch.id)
    return Branch(user_message=public(branch, tree), reply=None)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def delete(message_id: str, user: CurrentUser, rt: RuntimeDep) -> Response:
    """Delete the message and everything that follows from it."""
    await history.delete(rt, message_id, user.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"description": "The reply's events (SSE)", "content": {"text/event-stream": REPLY_EVENTS}}
    },
)
async def stream(
    message_id: str,
    user: CurrentUser,
    rt: RuntimeDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Any:
    """(Re)attach to a reply from any replica: with Last-Event-ID, the events after it; a finished
    reply replays and completes."""
    message, _ = await history.owned_message(rt, message_id, user.user_id)
    if message.role != "assistant":
        raise ConflictError("Only a reply has events to stream", code="not_a_reply")
    after = last_event_id if last_event_id and _valid_event_id(last_event_id) else "0"
    return sse(rt, str(message.id), after)


@router.post("/stop", status_code=status.HTTP_202_ACCEPTED, response_model=MessagePublic)
async def stop(message_id: str, user: CurrentUser, rt: RuntimeDep) -> MessagePublic:
    """Stop a reply being generated (from any replica): its partial text is stored as `stopped` and
    only what was generated is paid."""
    message, _ = await history.owned_message(rt, message_id, user.user_id)
    if message.status != "generating":
        raise ConflictError("This reply is not being generated", code="not_generating")
    await rt.live.request_stop(str(message.id), int(rt.settings.job_lease_seconds * 4))
    return public(message)


def _valid_event_id(value: str) -> bool:
    millis, dash, seq = value.partition("-")
    return millis.isdigit() and len(millis) <= 16 and (not dash or (seq.isdigit() and len(seq) <= 10))
