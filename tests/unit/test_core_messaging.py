"""MessagingService: body rules, nonce dedupe, history paging and read-your-writes over the log."""

from __future__ import annotations

import uuid

import pytest

from echonats.core.caller import Caller
from echonats.core.messaging import DEFAULT_PAGE
from echonats.model import HistoryPage
from echonats.model.errors import NotFound, Unavailable, ValidationFailed
from tests.unit.fakes import EPOCH, Harness

FIRST_ID = 1000  # the stream continues after the ids already in PostgreSQL: never assume 1


@pytest.fixture
def h() -> Harness:
    return Harness.build(first_message_id=FIRST_ID)


async def _world(h: Harness) -> tuple[Caller, Caller, uuid.UUID]:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    general = await h.services.channels.create(owner, name="general", is_private=False)
    return owner, ann, general.id


async def _send_many(h: Harness, caller: Caller, channel_id: uuid.UUID, n: int) -> list[int]:
    return [
        (await h.services.messaging.send(caller, channel_id, body=f"m{i}", nonce=None)).id for i in range(n)
    ]


async def _page_backward(h: Harness, caller: Caller, channel_id: uuid.UUID, limit: int) -> list[list[int]]:
    """Every page from the newest, following nextCursor as ``before``."""
    pages: list[list[int]] = []
    before: int | None = None
    while True:
        page = await h.services.messaging.history(caller, channel_id, before=before, limit=limit)
        ids = [m.id for m in page.items]
        pages.append(ids)
        if not page.has_more:
            assert page.next_cursor is None
            return pages
        assert page.next_cursor == ids[-1]
        before = page.next_cursor
        assert len(pages) < 100, "paging does not terminate"


async def _page_forward(
    h: Harness, caller: Caller, channel_id: uuid.UUID, after: int, limit: int
) -> list[list[int]]:
    """Every page after ``after``, following nextCursor as ``after`` (each page is newest first)."""
    pages: list[list[int]] = []
    while True:
        page = await h.services.messaging.history(caller, channel_id, after=after, limit=limit)
        ids = [m.id for m in page.items]
        pages.append(ids)
        assert page.next_cursor == (ids[0] if ids else after)  # forward always has a cursor to poll
        if not page.has_more:
            return pages
        after = ids[0]
        assert len(pages) < 100, "paging does not terminate"


# -- send -------------------------------------------------------------------------------------------


async def test_send_trims_the_body_and_returns_the_logged_message(h: Harness) -> None:
    owner, ann, channel_id = await _world(h)
    h.clock.advance(42)

    sent = await h.services.messaging.send(ann, channel_id, body="  hello there \n ", nonce=None)

    assert sent.id == FIRST_ID
    assert sent.body == "hello there"
    assert sent.sender_id == "ann"
    assert sent.sender_display_name == "Ann"
    assert sent.tenant_id == owner.tenant_id
    assert sent.channel_id == channel_id
    assert sent.created_at == h.clock.now() != EPOCH
    assert h.log.stream == {FIRST_ID: sent}
    second = await h.services.messaging.send(owner, channel_id, body="hi", nonce=None)
    assert second.id == FIRST_ID + 1


async def test_newlines_and_tabs_are_allowed_inside_a_body(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    body = "line one\nline two\n\n\tindented"
    sent = await h.services.messaging.send(ann, channel_id, body=body, nonce=None)
    assert sent.body == body
    assert h.log.stream[sent.id].body == body


async def test_a_body_of_exactly_the_maximum_length_after_trimming_is_accepted(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    sent = await h.services.messaging.send(ann, channel_id, body="  " + "x" * 4000 + "  ", nonce=None)
    assert len(sent.body) == 4000


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        " \n\t \n ",
        "x" * 4001,
        "nul\x00byte",
        "bell\x07",
        "ansi \x1b[31mred",
        "delete\x7f",
        "vertical\x0btab",
    ],
    ids=["empty", "spaces", "whitespace", "too-long", "nul", "bell", "escape", "del", "vtab"],
)
async def test_invalid_bodies_are_rejected_and_not_logged(h: Harness, body: str) -> None:
    _, ann, channel_id = await _world(h)
    with pytest.raises(ValidationFailed) as raised:
        await h.services.messaging.send(ann, channel_id, body=body, nonce=None)
    assert raised.value.details == {"field": "body"}
    assert h.log.stream == {}


@pytest.mark.parametrize("nonce", ["", "   ", "n" * 65, "bad\x00nonce"])
async def test_invalid_nonces_are_rejected(h: Harness, nonce: str) -> None:
    _, ann, channel_id = await _world(h)
    with pytest.raises(ValidationFailed):
        await h.services.messaging.send(ann, channel_id, body="hi", nonce=nonce)
    assert h.log.stream == {}


async def test_a_repeated_nonce_returns_the_original_message(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    original = await h.services.messaging.send(ann, channel_id, body="once", nonce="n-1")
    await h.services.messaging.send(ann, channel_id, body="other", nonce="n-2")

    retry = await h.services.messaging.send(ann, channel_id, body="once (retried)", nonce="n-1")

    assert retry.id == original.id
    assert retry.body == "once"
    assert sorted(h.log.stream) == [FIRST_ID, FIRST_ID + 1]
    # Still deduplicated once the persist worker has stored it.
    h.log.persist_all()
    again = await h.services.messaging.send(ann, channel_id, body="once", nonce="n-1")
    assert again.id == original.id
    history = await h.services.messaging.history(ann, channel_id)
    assert [m.id for m in history.items] == [FIRST_ID + 1, FIRST_ID]


async def test_nonces_are_scoped_to_sender_and_channel(h: Harness) -> None:
    owner, ann, channel_id = await _world(h)
    other = (await h.services.channels.create(owner, name="other", is_private=False)).id
    first = await h.services.messaging.send(ann, channel_id, body="a", nonce="same")
    by_owner = await h.services.messaging.send(owner, channel_id, body="b", nonce="same")
    elsewhere = await h.services.messaging.send(ann, other, body="c", nonce="same")
    assert len({first.id, by_owner.id, elsewhere.id}) == 3


async def test_messages_without_a_nonce_are_never_deduplicated(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    ids = [(await h.services.messaging.send(ann, channel_id, body="same", nonce=None)).id for _ in range(3)]
    assert ids == [FIRST_ID, FIRST_ID + 1, FIRST_ID + 2]


async def test_send_to_an_unknown_channel_is_not_found(h: Harness) -> None:
    _, ann, _ = await _world(h)
    with pytest.raises(NotFound):
        await h.services.messaging.send(ann, uuid.uuid4(), body="hi", nonce=None)
    assert h.log.stream == {}


async def test_an_unavailable_log_fails_the_send(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    h.log.fail_with = Unavailable("message not stored: JetStream did not acknowledge")
    with pytest.raises(Unavailable):
        await h.services.messaging.send(ann, channel_id, body="hi", nonce=None)
    assert h.log.stream == {}


# -- history ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, 101])
async def test_history_limit_must_be_1_to_100(h: Harness, limit: int) -> None:
    _, ann, channel_id = await _world(h)
    with pytest.raises(ValidationFailed) as raised:
        await h.services.messaging.history(ann, channel_id, limit=limit)
    assert raised.value.details == {"field": "limit"}


async def test_history_limit_bounds_are_inclusive(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    ids = await _send_many(h, ann, channel_id, 101)
    one = await h.services.messaging.history(ann, channel_id, limit=1)
    hundred = await h.services.messaging.history(ann, channel_id, limit=100)
    default = await h.services.messaging.history(ann, channel_id)
    assert [m.id for m in one.items] == [ids[-1]]
    assert [m.id for m in hundred.items] == ids[::-1][:100]
    assert hundred.has_more
    assert len(default.items) == DEFAULT_PAGE


@pytest.mark.parametrize("cursor", ["before", "after"])
async def test_history_cursors_must_not_be_negative(h: Harness, cursor: str) -> None:
    _, ann, channel_id = await _world(h)
    cursors: dict[str, int] = {cursor: -1}
    with pytest.raises(ValidationFailed) as raised:
        await h.services.messaging.history(ann, channel_id, **cursors)
    assert raised.value.details == {"field": cursor}


async def test_history_of_an_empty_channel(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    page = await h.services.messaging.history(ann, channel_id)
    assert page == HistoryPage(items=[], next_cursor=None, has_more=False)


async def test_history_pages_back_with_before_over_persisted_messages(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    ids = await _send_many(h, ann, channel_id, 23)
    h.log.persist_all()
    assert h.log.floor == ids[-1]

    pages = await _page_backward(h, ann, channel_id, limit=10)

    assert [len(p) for p in pages] == [10, 10, 3]
    assert [i for p in pages for i in p] == ids[::-1]  # every id once, newest first


async def test_history_pages_forward_with_after(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    ids = await _send_many(h, ann, channel_id, 23)
    h.log.persist_all()

    pages = await _page_forward(h, ann, channel_id, after=ids[2], limit=10)

    assert [len(p) for p in pages] == [10, 10]
    for page in pages:
        assert page == sorted(page, reverse=True)  # each window is presented newest first
    assert [i for p in pages for i in reversed(p)] == ids[3:]

    # Polling for new messages with the last cursor.
    cursor = pages[-1][0]
    assert (await h.services.messaging.history(ann, channel_id, after=cursor)).items == []
    newer = await h.services.messaging.send(ann, channel_id, body="new", nonce=None)
    polled = await h.services.messaging.history(ann, channel_id, after=cursor)
    assert [m.id for m in polled.items] == [newer.id]
    assert polled.next_cursor == newer.id
    assert not polled.has_more


async def test_history_between_two_cursors_is_newest_first(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    ids = await _send_many(h, ann, channel_id, 12)
    h.log.persist_up_to(ids[5])  # the window straddles the persisted floor

    page = await h.services.messaging.history(ann, channel_id, after=ids[1], before=ids[10], limit=5)

    assert [m.id for m in page.items] == [ids[9], ids[8], ids[7], ids[6], ids[5]]
    assert page.has_more
    assert page.next_cursor == ids[5]
    rest = await h.services.messaging.history(ann, channel_id, after=ids[1], before=ids[5], limit=5)
    assert [m.id for m in rest.items] == [ids[4], ids[3], ids[2]]
    assert not rest.has_more


async def test_read_your_writes_when_nothing_is_persisted_yet(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    ids = await _send_many(h, ann, channel_id, 23)
    assert h.store.state.messages == {}  # the persist worker has not run

    pages = await _page_backward(h, ann, channel_id, limit=10)
    assert [i for p in pages for i in p] == ids[::-1]
    latest = await h.services.messaging.history(ann, channel_id, limit=1)
    assert latest.items[0].body == "m22"
    forward = await _page_forward(h, ann, channel_id, after=0, limit=10)
    assert [i for p in forward for i in reversed(p)] == ids


@pytest.mark.parametrize("persisted", [0, 1, 9, 10, 11, 13, 20, 22, 23])
async def test_a_mix_of_persisted_and_unpersisted_messages_pages_without_gaps_or_duplicates(
    h: Harness, persisted: int
) -> None:
    owner, ann, channel_id = await _world(h)
    noise = (await h.services.channels.create(owner, name="noise", is_private=False)).id
    ids: list[int] = []
    for i in range(23):  # interleave another channel so ids are not contiguous
        ids.append((await h.services.messaging.send(ann, channel_id, body=f"m{i}", nonce=None)).id)
        await h.services.messaging.send(owner, noise, body=f"noise {i}", nonce=None)
    if persisted:
        h.log.persist_up_to(ids[persisted - 1])
    assert len([m for m in h.store.state.messages.values() if m.channel_id == channel_id]) == persisted

    backward = await _page_backward(h, ann, channel_id, limit=10)
    assert [len(p) for p in backward] == [10, 10, 3]
    assert [i for p in backward for i in p] == ids[::-1]

    forward = await _page_forward(h, ann, channel_id, after=0, limit=10)
    assert [i for p in forward for i in reversed(p)] == ids

    everything = await h.services.messaging.history(ann, channel_id, limit=100)
    assert [m.body for m in everything.items] == [f"m{i}" for i in reversed(range(23))]
    assert {m.channel_id for m in everything.items} == {channel_id}


async def test_paging_stays_exact_while_the_persist_worker_catches_up(h: Harness) -> None:
    _, ann, channel_id = await _world(h)
    ids = await _send_many(h, ann, channel_id, 23)
    seen: list[int] = []
    before: int | None = None
    progress = iter([ids[4], ids[15], ids[22]])
    while True:
        page = await h.services.messaging.history(ann, channel_id, before=before, limit=10)
        seen.extend(m.id for m in page.items)
        h.log.persist_up_to(next(progress, ids[-1]))  # the worker moves between requests
        if not page.has_more:
            break
        before = page.next_cursor
    assert seen == ids[::-1]


async def test_messages_of_another_channel_never_appear(h: Harness) -> None:
    owner, ann, channel_id = await _world(h)
    other = (await h.services.channels.create(owner, name="other", is_private=False)).id
    mine: list[int] = []
    for i in range(3):
        mine.append((await h.services.messaging.send(ann, channel_id, body=f"m{i}", nonce=None)).id)
        await h.services.messaging.send(ann, other, body=f"o{i}", nonce=None)
    h.log.persist_up_to(mine[1] + 1)  # two of each channel persisted, one of each still in the log
    more = await _send_many(h, ann, other, 2)

    page = await h.services.messaging.history(ann, channel_id)
    assert [m.id for m in page.items] == mine[::-1]
    after = await h.services.messaging.history(ann, channel_id, after=0)
    assert [m.id for m in after.items] == mine[::-1]
    between = await h.services.messaging.history(ann, channel_id, before=more[-1] + 1)
    assert [m.id for m in between.items] == mine[::-1]


async def test_history_of_another_tenants_channel_is_not_found(h: Harness) -> None:
    _, _, channel_id = await _world(h)
    stranger = await h.new_tenant("Globex")
    with pytest.raises(NotFound):
        await h.services.messaging.history(stranger, channel_id)


async def test_the_newest_messages_show_even_when_the_unpersisted_tail_is_longer_than_a_page(
    h: Harness,
) -> None:
    _, ann, channel_id = await _world(h)
    ids = await _send_many(h, ann, channel_id, 25)  # the persist worker is down

    page = await h.services.messaging.history(ann, channel_id, limit=5)

    assert [m.id for m in page.items] == ids[:-6:-1]
