"""Publishing the event log to NATS JetStream.

Every event goes to `bastion.<tenant>.<kind>.<event_type>` (its entity kind and its full type,
so `bastion.acme.risk.risk.status_changed`, `bastion.acme.edge.edge.added`) with the message id
`<tenant>:<seq>`: JetStream drops a message whose id it has seen within the stream's duplicate
window. The relay's cursor per tenant (`relay_cursor`, sink `nats:<stream>`) moves only past
events the server acknowledged. A relay killed between an acknowledgement and the cursor's
commit would publish those events again: on connecting, it reads the stream's last message of
each tenant and moves the cursor up to it, and messages in flight are de-duplicated by their id,
so nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import asyncio

from bastion.errors import ConfigError
from bastion.feed.wire import event_id, nats_message

DEFAULT_STREAM = "BASTION"
SUBJECT_ROOT = "bastion"
DUPLICATE_WINDOW = 3600.0  # seconds; when the relay creates the stream


def subject(tenant_name: str, e) -> str:
    return f"{SUBJECT_ROOT}.{tenant_name}.{e.entity_kind}.{e.event_type}"


class JetStreamSink:
    """One connection to NATS, publishing tenants' events after their cursors."""

    def __init__(self, url: str, stream: str = DEFAULT_STREAM, *, batch: int = 500,
                 timeout: float = 5.0):
        self.url, self.stream, self.batch, self.timeout = url, stream, batch, timeout
        self.sink = f"nats:{stream}"
        self.nc = None
        self.js = None
        self._checked: set[int] = set()  # tenants whose cursor was checked against the stream

    async def connect(self) -> None:
        import nats
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        try:
            # Reconnecting forever once connected; but with that, nats-py would also retry the
            # first connection forever: bounded here.
            self.nc = await asyncio.wait_for(
                nats.connect(servers=[self.url], connect_timeout=self.timeout,
                             allow_reconnect=True, max_reconnect_attempts=-1,
                             reconnect_time_wait=1), 2 * self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to connect is the user's to fix
            raise ConfigError(f"cannot connect to NATS at {self.url}: "
                              f"{type(exc).__name__} {exc}".strip()) from None
        self.js = self.nc.jetstream(timeout=self.timeout)
        try:
            info = await self.js.stream_info(self.stream)
        except NotFoundError:
            try:  # JetStream refuses two streams taking the same subjects
                other = await self.js.find_stream_name_by_subject(f"{SUBJECT_ROOT}.>")
            except NotFoundError:
                other = None
            if other is not None:
                raise ConfigError(f"JetStream stream {other} already takes {SUBJECT_ROOT}.>: "
                                  f"relay to it with --stream {other}") from None
            await self.js.add_stream(StreamConfig(name=self.stream, subjects=[f"{SUBJECT_ROOT}.>"],
                                                  duplicate_window=DUPLICATE_WINDOW))
        except Exception as exc:  # noqa: BLE001 - no JetStream on that server
            raise ConfigError(f"NATS at {self.url} has no JetStream (start nats-server -js): "
                              f"{type(exc).__name__} {exc}".strip()) from None
        else:
            if f"{SUBJECT_ROOT}.>" not in (info.config.subjects or []):
                raise ConfigError(f"JetStream stream {self.stream} does not take the subjects "
                                  f"{SUBJECT_ROOT}.> (it takes {info.config.subjects})")

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.drain()
            self.nc = None

    async def last_published(self, tenant_name: str) -> int:
        """The sequence of the tenant's last event in the stream (0: none)."""
        from nats.js.errors import NotFoundError

        try:
            msg = await self.js.get_last_msg(self.stream, f"{SUBJECT_ROOT}.{tenant_name}.>")
        except NotFoundError:
            return 0
        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
        name, _, seq = msg_id.rpartition(":")
        return int(seq) if name == tenant_name and seq.isdigit() else 0

    async def publish_pending(self, tenant, max_batches: int = 20) -> int:
        """Publish the tenant's events after its cursor (at most `max_batches` batches), moving
        the cursor past each acknowledged batch; the number published."""
        feed = tenant.feed
        cursor = feed.cursor(self.sink)
        if tenant.tenant_id not in self._checked:
            last = await self.last_published(tenant.name)
            if last > cursor:
                feed.set_cursor(self.sink, last)
                cursor = last
            self._checked.add(tenant.tenant_id)
        published = 0
        for _ in range(max_batches):
            events, _upto = feed.events_after(cursor, (), self.batch)
            if not events:
                break
            acked = await self._publish(tenant.name, events)
            if acked:
                cursor = events[acked - 1].seq
                feed.set_cursor(self.sink, cursor)
                published += acked
            if acked < len(events):
                break  # not acknowledged: tried again on the next pass
        return published

    async def _publish(self, tenant_name: str, events) -> int:
        """How many of `events`, in order from the first, the server acknowledged."""
        futures = []
        try:
            for e in events:
                futures.append(await self.js.publish_async(
                    subject(tenant_name, e), nats_message(tenant_name, e),
                    headers={"Nats-Msg-Id": event_id(tenant_name, e.seq)}))
        except Exception:  # noqa: BLE001 - disconnected: what was sent may still be acked
            pass
        acked = 0
        for future in futures:
            try:
                await asyncio.wait_for(future, self.timeout)
            except Exception:  # noqa: BLE001 - no ack (timeout, error): stop at the gap
                break
            acked += 1
        for future in futures[acked:]:
            future.cancel()
        return acked
