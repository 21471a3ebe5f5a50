"""Starting, listing, reading, changing and deleting conversations against the real fleet."""

from __future__ import annotations

import asyncio

import httpx

from chat_common.testing.fleet import FleetUser


async def test_a_conversation_snapshots_the_character_and_the_default_persona(
    client: httpx.AsyncClient, alice: FleetUser, make_character, make_persona
) -> None:
    character = await make_character(alice)
    persona = await make_persona(alice, name="Ada", description="An engineer")  # the first is the default

    response = await client.post(
        "/api/v1/conversations",
        json={"character_id": character["id"], "title": "  Tea on the airship "},
        headers=alice.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["ETag"] == '"1"'
    assert body["user_id"] == alice.id and body["character_id"] == character["id"]
    assert body["title"] == "Tea on the airship"
    assert body["character"]["name"] == character["name"]
    assert body["character"]["greeting"] == "Welcome aboard!"
    assert body["character"]["alternate_greetings"] == ["Ahoy!", "Who goes there?"]
    assert body["character"]["avatar_url"] == "https://example.com/mira.png"
    assert body["persona"] == {"id": persona["id"], "name": "Ada", "description": "An engineer"}
    assert body["status"] == "active" and body["pinned"] is False and body["version"] == 1
    assert body["message_count"] == 0 and body["last_message_at"] is None


async def test_without_personas_the_display_name_is_the_persona(start_conversation, alice: FleetUser) -> None:
    conversation = await start_conversation(alice)

    assert conversation["persona"] == {"id": None, "name": alice.display_name, "description": ""}


async def test_a_named_persona_is_used_and_another_users_persona_is_404(
    client: httpx.AsyncClient, alice: FleetUser, bob: FleetUser, make_character, make_persona
) -> None:
    character = await make_character(alice)
    await make_persona(alice, name="Default Ada")
    chosen = await make_persona(alice, name="Captain Ada")
    bobs = await make_persona(bob, name="Bob")

    mine = await client.post(
        "/api/v1/conversations",
        json={"character_id": character["id"], "persona_id": chosen["id"]},
        headers=alice.headers,
    )
    theirs = await client.post(
        "/api/v1/conversations",
        json={"character_id": character["id"], "persona_id": bobs["id"]},
        headers=alice.headers,
    )

    assert mine.status_code == 201 and mine.json()["persona"]["name"] == "Captain Ada"
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "persona_not_found"


async def test_someone_elses_private_character_cannot_start_a_conversation(
    client: httpx.AsyncClient, alice: FleetUser, bob: FleetUser, make_character
) -> None:
    private = await make_character(bob, visibility="private")

    response = await client.post(
        "/api/v1/conversations", json={"character_id": private["id"]}, headers=alice.headers
    )
    listed = await client.get("/api/v1/conversations", headers=alice.headers)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "character_not_found"
    assert listed.json()["total"] == 0


async def test_the_owner_of_a_private_character_can_talk_with_it(
    start_conversation, alice: FleetUser, make_character
) -> None:
    private = await make_character(alice, visibility="private")

    conversation = await start_conversation(alice, private["id"])

    assert conversation["character"]["name"] == private["name"]


async def test_an_unknown_character_is_404(client: httpx.AsyncClient, alice: FleetUser) -> None:
    response = await client.post(
        "/api/v1/conversations",
        json={"character_id": "3f1c6f5e-0000-4000-8000-000000000000"},
        headers=alice.headers,
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "character_not_found"


async def test_another_users_conversation_is_404_on_every_route(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, bob: FleetUser
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"

    responses = [
        await client.get(path, headers=bob.headers),
        await client.patch(path, json={"title": "mine now"}, headers=bob.headers),
        await client.post(f"{path}/refresh-character", headers=bob.headers),
        await client.delete(path, headers=bob.headers),
    ]
    listed = await client.get("/api/v1/conversations", headers=bob.headers)
    still_there = await client.get(path, headers=alice.headers)

    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert all(r.json()["error"]["code"] == "conversation_not_found" for r in responses)
    assert listed.json()["total"] == 0
    assert still_there.status_code == 200 and still_there.json()["title"] is None


async def test_the_list_is_pinned_first_then_newest_and_filters_by_character_and_status(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, bob: FleetUser, make_character
) -> None:
    mira, quill = await make_character(alice), await make_character(alice)
    first = await start_conversation(alice, mira["id"], title="first")
    second = await start_conversation(alice, quill["id"], title="second")
    third = await start_conversation(alice, mira["id"], title="third")
    await start_conversation(bob, mira["id"], title="bob's")
    await client.patch(f"/api/v1/conversations/{first['id']}", json={"pinned": True}, headers=alice.headers)
    await client.patch(
        f"/api/v1/conversations/{second['id']}", json={"archived": True}, headers=alice.headers
    )

    everything = (await client.get("/api/v1/conversations", headers=alice.headers)).json()
    with_mira = (
        await client.get(f"/api/v1/conversations?character_id={mira['id']}", headers=alice.headers)
    ).json()
    archived = (await client.get("/api/v1/conversations?status=archived", headers=alice.headers)).json()
    active = (await client.get("/api/v1/conversations?status=active", headers=alice.headers)).json()
    paged = (await client.get("/api/v1/conversations?limit=1&offset=1", headers=alice.headers)).json()

    assert [c["title"] for c in everything["items"]] == ["first", "third", "second"]
    assert everything["total"] == 3
    assert [c["title"] for c in with_mira["items"]] == ["first", "third"]
    assert [c["title"] for c in archived["items"]] == ["second"]
    assert [c["title"] for c in active["items"]] == ["first", "third"]
    assert [c["title"] for c in paged["items"]] == ["third"] and paged["total"] == 3
    assert third["id"] != first["id"]


async def test_patch_changes_fields_and_moves_the_version(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, make_persona
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"
    persona = await make_persona(alice, name="Zoë", description="Ελληνικά και 日本語")

    response = await client.patch(
        path,
        json={"title": "Renamed", "pinned": True, "archived": True, "persona_id": persona["id"]},
        headers={**alice.headers, "If-Match": '"1"'},
    )
    cleared = await client.patch(path, json={"title": None, "archived": False}, headers=alice.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["title"] == "Renamed" and body["pinned"] is True and body["status"] == "archived"
    assert body["persona"]["name"] == "Zoë" and body["persona"]["description"] == "Ελληνικά και 日本語"
    assert body["version"] == 2 and response.headers["ETag"] == '"2"'
    assert cleared.json()["title"] is None and cleared.json()["status"] == "active"
    assert cleared.json()["version"] == 3


async def test_a_stale_if_match_is_412_and_changes_nothing(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"
    await client.patch(path, json={"title": "one"}, headers={**alice.headers, "If-Match": '"1"'})

    stale = await client.patch(path, json={"title": "two"}, headers={**alice.headers, "If-Match": '"1"'})
    garbage = await client.patch(path, json={"title": "two"}, headers={**alice.headers, "If-Match": "abc"})
    current = await client.get(path, headers=alice.headers)

    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert stale.json()["error"]["details"] == {"version": 2}
    assert garbage.status_code == 412
    assert current.json()["title"] == "one" and current.json()["version"] == 2


async def test_a_weak_if_match_never_matches(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"

    weak = await client.patch(path, json={"title": "two"}, headers={**alice.headers, "If-Match": 'W/"1"'})
    current = await client.get(path, headers=alice.headers)

    assert weak.status_code == 412  # If-Match compares strongly (RFC 9110 13.1.1)
    assert current.json()["version"] == 1


async def test_concurrent_patches_with_the_same_if_match_let_exactly_one_win(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"

    responses = await asyncio.gather(
        *(
            client.patch(path, json={"title": f"t{i}"}, headers={**alice.headers, "If-Match": '"1"'})
            for i in range(10)
        )
    )

    assert sorted(r.status_code for r in responses) == [200] + [412] * 9
    assert (await client.get(path, headers=alice.headers)).json()["version"] == 2


async def test_concurrent_patches_without_if_match_all_apply_and_none_is_412(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"

    responses = await asyncio.gather(
        *(client.patch(path, json={"title": f"t{i}"}, headers=alice.headers) for i in range(20))
    )

    assert [r.status_code for r in responses] == [200] * 20
    assert (await client.get(path, headers=alice.headers)).json()["version"] == 21


async def test_refresh_character_copies_the_edited_character(
    client: httpx.AsyncClient,
    characters: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    make_character,
) -> None:
    character = await make_character(alice)
    conversation = await start_conversation(alice, character["id"])
    edited = await characters.patch(
        f"/api/v1/characters/{character['id']}",
        json={"name": "Admiral Mira", "greeting": "Report!"},
        headers=alice.headers,
    )
    assert edited.status_code == 200, edited.text

    before = await client.get(f"/api/v1/conversations/{conversation['id']}", headers=alice.headers)
    refreshed = await client.post(
        f"/api/v1/conversations/{conversation['id']}/refresh-character", headers=alice.headers
    )

    assert before.json()["character"]["name"] == character["name"]  # reading never calls out
    assert refreshed.status_code == 200
    assert refreshed.json()["character"]["name"] == "Admiral Mira"
    assert refreshed.json()["character"]["greeting"] == "Report!"
    assert refreshed.json()["version"] == 2


async def test_delete_hides_the_conversation_from_its_owner_at_once(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"

    deleted = await client.delete(path, headers=alice.headers)
    again = await client.delete(path, headers=alice.headers)
    read = await client.get(path, headers=alice.headers)
    patched = await client.patch(path, json={"title": "x"}, headers=alice.headers)
    listed = await client.get("/api/v1/conversations", headers=alice.headers)

    assert deleted.status_code == 204
    assert again.status_code == 404 and read.status_code == 404 and patched.status_code == 404
    assert listed.json()["total"] == 0


async def test_delete_with_a_stale_if_match_is_412_and_deletes_nothing(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"
    await client.patch(path, json={"title": "changed"}, headers=alice.headers)

    stale = await client.delete(path, headers={**alice.headers, "If-Match": '"1"'})
    read = await client.get(path, headers=alice.headers)
    current = await client.delete(path, headers={**alice.headers, "If-Match": '"2"'})

    assert stale.status_code == 412 and stale.json()["error"]["code"] == "precondition_failed"
    assert read.status_code == 200
    assert current.status_code == 204
