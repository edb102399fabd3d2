"""JetStream's batched direct get (nats-server >= 2.11): the records of one subject filter from a
sequence on, in one request, answered by any replica. Shared by the message log and the feed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NatsClient

from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import unavailable
from echonats.adapters.nats.streams import PUBLISH_TIMEOUT_S
from echonats.model.errors import Unavailable


@dataclass(frozen=True, slots=True)
class Stored:
    sequence: int
    headers: Mapping[str, str]
    data: bytes


async def direct_batch(
    nc: NatsClient, stream: str, subject: str, start: int, count: int
) -> tuple[list[Stored], bool]:
    """Up to ``count`` records of ``subject`` (a filter) with sequence >= ``start``, oldest first,
    and whether more exist. ``Unavailable`` if the stream cannot be read."""
    inbox = nc.new_inbox()
    out: list[Stored] = []
    more = False
    # The subscription and its removal are NATS calls too: a closed connection must come out as
    # Unavailable here, like a failed read, since callers (the hub's gap repair) catch only that.
    with unavailable("JetStream"):
        sub = await nc.subscribe(inbox, max_msgs=count + 1)
        try:
            request = {"seq": start, "next_by_subj": subject, "batch": count}
            await nc.publish(subjects.direct_get_subject(stream), json.dumps(request).encode(), reply=inbox)
            while True:
                reply = await sub.next_msg(timeout=PUBLISH_TIMEOUT_S)
                headers = reply.headers or {}
                if headers.get("Status") is not None:  # 204 end of batch, 404 nothing (more) to read
                    break
                out.append(Stored(int(headers["Nats-Sequence"]), headers, reply.data))
                more = int(headers.get("Nats-Num-Pending", "0")) > 0
        except (KeyError, ValueError) as exc:
            raise Unavailable(f"JetStream: malformed direct get reply for {subject}: {exc}") from exc
        except nats.errors.TimeoutError as exc:
            raise Unavailable(f"JetStream: no direct get reply for {subject}") from exc
        finally:
            await sub.unsubscribe()
    return out, more
