"""The conversation's message tree as its owner sees it: the active path, siblings, select, delete."""

from __future__ import annotations

import asyncio
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from app.core.runtime import Runtime, now
from app.models import Deletion, Message
from app.services import access, bookkeeping, deletions, followups
from app.services.prompt_text import substitute
from app.services.prompting import persona_name
from app.services.tree import GREETING_MARKER, Tree
from chat_common.errors import ConflictError, NotFoundError


def message_not_found() -> NotFoundError:
    return NotFoundError("Message not found", code="message_not_found")


def in_tree(tree: Tree, message_id: str) -> Message:
    """The message of the conversation's tree; 404 when it was deleted since it was read."""
    found = tree.get(message_id)
    if found is None:
        raise message_not_found()
    return found


def new_message(conversation: dict[str, Any], **fields: Any) -> Message:
    at = now()
    values = {
        "conversation_id": conversation["id"],
        "user_id": conversation["user_id"],
        "character_id": conversation["character_id"],
        "unique_key": "",
        "created_at": at,
        "updated_at": at,
        "day": at.strftime("%Y-%m-%d"),
        **fields,
    }
    return Message(**values)


async def load_tree(rt: Runtime, conversation: dict[str, Any]) -> Tree:
    """The conversation's messages; on its first read, its greetings (the snapshot's greeting and
    alternate greetings as sibling roots), created once however many read at once."""
    return await _tree_of(rt, conversation, await rt.messages.for_conversation(conversation["id"]))


async def _tree_of(rt: Runtime, conversation: dict[str, Any], messages: list[Message]) -> Tree:
    if not messages:
        snapshot = conversation.get("character") or {}
        texts = [snapshot.get("greeting") or "", *(snapshot.get("alternate_greetings") or [])]
        # shown as the character says them: the names filled in with the persona of the conversation
        names = {"char": str(snapshot.get("name") or ""), "user": persona_name(conversation)}
        greetings = [
            new_message(
                conversation,
                role="assistant",
                content=substitute(text, **names),
                unique_key=f"{conversation['id']}{GREETING_MARKER}{n}",
            )
            for n, text in enumerate(texts)
            if text
        ]
        if greetings:
            await rt.messages.insert_greetings(greetings)
            messages = await rt.messages.for_conversation(conversation["id"])
            first = Tree(messages).roots[0]
            await rt.messages.ensure_active_leaf(
                conversation["id"], conversation["user_id"], str(first.id), now()
            )
    return Tree(messages)


async def active_path(rt: Runtime, conversation: dict[str, Any]) -> tuple[Tree, list[Message]]:
    # read at once: a state read before a first read's greetings falls back to the same leaf
    tree, state = await asyncio.gather(load_tree(rt, conversation), rt.messages.state(conversation["id"]))
    leaf = tree.active_leaf(state.active_leaf_id if state else None)
    return tree, tree.path_to(str(leaf.id)) if leaf else []


async def owned_active_path(
    rt: Runtime, conversation_id: str, user_id: str
) -> tuple[dict[str, Any], Tree, list[Message]]:
    """The user's live conversation (else 404) and its active path. Its messages are read while the
    conversation is checked at conversation-service, and used only once it passed."""
    conversation, messages, state = await asyncio.gather(
        access.conversation(rt, conversation_id, user_id),
        rt.messages.for_conversation(conversation_id),
        rt.messages.state(conversation_id),
    )
    tree = await _tree_of(rt, conversation, messages)
    leaf = tree.active_leaf(state.active_leaf_id if state else None)
    return conversation, tree, tree.path_to(str(leaf.id)) if leaf else []


async def owned_message(rt: Runtime, message_id: str, user_id: str) -> tuple[Message, dict[str, Any]]:
    """The user's message in a live conversation, and that conversation; else 404."""
    try:
        oid = ObjectId(message_id)
    except (InvalidId, TypeError):
        raise message_not_found() from None
    message = await rt.messages.get(oid)
    if message is None or message.user_id != user_id:
        raise message_not_found()
    try:
        conversation = await access.conversation(rt, message.conversation_id, user_id)
    except NotFoundError:
        raise message_not_found() from None
    return message, conversation


async def select(rt: Runtime, message_id: str, user_id: str) -> tuple[Tree, list[Message]]:
    """Make the message's branch the active path (its newest continuation)."""
    message, conversation = await owned_message(rt, message_id, user_id)
    tree = await load_tree(rt, conversation)
    leaf = tree.newest_leaf_below(in_tree(tree, str(message.id)))
    await rt.messages.set_active_leaf(conversation["id"], user_id, str(leaf.id), now())
    return tree, tree.path_to(str(leaf.id))


async def add_branch(
    rt: Runtime, conversation: dict[str, Any], message: Message, content: str
) -> tuple[Tree, Message]:
    """A sibling of the user's message with new text, made the active leaf. Under the conversation's
    lock, as deletes are, so that it never lands under a branch being deleted."""
    lock = await rt.live.lock_conversation(conversation["id"], rt.settings.job_lease_seconds)
    if lock is None:
        raise generation_in_progress()
    try:
        if message.parent_id and await rt.messages.get_by_str(message.parent_id) is None:
            raise message_not_found()
        # A message of the conversation like any other: counted (its activity and the character's
        # counter, by its own id) as a reply's follow-ups are, and retried by the sweeper until told.
        branch = await rt.messages.insert(
            new_message(
                conversation,
                role="user",
                content=content,
                parent_id=message.parent_id,
                followups_pending=True,
                with_parent=False,
            )
        )
        await rt.messages.set_active_leaf(conversation["id"], conversation["user_id"], str(branch.id), now())
    finally:
        await rt.live.unlock_conversation(conversation["id"], lock)
    followups.queue(rt, branch)
    tree = await load_tree(rt, conversation)
    return tree, tree.by_id[str(branch.id)]


async def delete(rt: Runtime, message_id: str, user_id: str) -> int:
    """Delete the message and everything below it; the active path moves to what remains. Never while
    a reply is generating in the conversation: that reply's messages could land under what is deleted."""
    message, conversation = await owned_message(rt, message_id, user_id)
    lock = await rt.live.lock_conversation(conversation["id"], rt.settings.job_lease_seconds)
    if lock is None:
        raise generation_in_progress()
    try:
        deleted, deletion = await _delete_branch(rt, conversation, message)
    finally:
        await rt.live.unlock_conversation(conversation["id"], lock)
    # After the lock: the deletion is recorded, and a conversation-service slow to answer must not keep
    # the conversation locked (a retry by the sweeper meanwhile is harmless: both are idempotent).
    await deletions.tell_now(rt, deletion)
    return deleted


async def _count_what_stays(rt: Runtime, tree: Tree, doomed: list[Message]) -> None:
    """A reply deleted before its follow-ups were told would take its parent's count with it (a send's
    reply counts the user message it answers): told now, or when the services are away, each such
    parent left to count itself, retried by the sweeper."""
    pending = [m for m in doomed if m.followups_pending]
    size, untold = rt.settings.follow_up_batch_size, []
    for start in range(0, len(pending), size):  # a call tells at most a batch
        batch = pending[start : start + size]
        if not await followups.tell(rt, [(m, None) for m in batch]):
            untold += batch
    if not untold:
        return
    doomed_ids = {str(m.id) for m in doomed}
    parents = [tree.get(m.parent_id) for m in untold if m.with_parent is not False and m.parent_id]
    stays = [p.id for p in parents if p and p.id and p.role == "user" and str(p.id) not in doomed_ids]
    if stays:
        await rt.messages.count_apart(stays, now())


def generation_in_progress() -> ConflictError:
    return ConflictError(
        "A reply is being generated in this conversation, or it is being changed (an edit, a delete): "
        "stop the reply, or try again in a moment",
        code="generation_in_progress",
    )


async def _delete_branch(rt: Runtime, conversation: dict[str, Any], message: Message) -> tuple[int, Deletion]:
    tree = await load_tree(rt, conversation)
    doomed = [message, *tree.descendants(message)]
    if any(
        m.status == "generating" for m in doomed
    ):  # a job whose replica died: its lock lapsed, its lease not yet
        raise generation_in_progress()
    for doomed_message in doomed:
        await bookkeeping.settle_now(rt, doomed_message)
    await _count_what_stays(rt, tree, doomed)
    state = await rt.messages.state(conversation["id"])
    deletion = await deletions.record(rt, conversation, doomed)
    deleted = await rt.messages.delete([m.id for m in doomed if m.id is not None])
    doomed_ids = {str(m.id) for m in doomed}
    if state and state.active_leaf_id in doomed_ids:
        remaining = Tree(m for m in tree.by_id.values() if str(m.id) not in doomed_ids)
        parent = remaining.get(message.parent_id) if message.parent_id else None
        leaf = remaining.newest_leaf_below(parent) if parent else remaining.active_leaf(None)
        if leaf is not None:
            await rt.messages.set_active_leaf(
                conversation["id"], conversation["user_id"], str(leaf.id), now()
            )
    return deleted, deletion
