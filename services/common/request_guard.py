"""What every request must be before a servicer sees it: a decodable message whose strings and
integers are within bounds.

gRPC Python deserializes a request outside the servicer, and an exception there reaches the client as
UNKNOWN "Unexpected DecodeError". So the server interceptor swaps each method's deserializer for a
guarded one that never raises: it returns the message, or a `Rejected` naming the field and the rule,
which the interceptor turns into INVALID_ARGUMENT before the handler runs (and, for a client stream,
when the bad message is read).

The checks are the ones no service should have to repeat: every string field (nested messages, map
keys and values and repeated fields included) at most MAX_STRING characters, and every 64-bit
integer within the signed 64-bit range the stores keep (SQLite and PostgreSQL integers are signed).
Services still apply their own, tighter rules. The plan for a message type is built once from its
descriptor, so a request pays a few attribute reads per field (+1.1-1.5 us per request, perf/NOTES.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

MAX_STRING = 1024  # characters, for any string field of any request (names, ids, tokens, selectors)
INT64_MAX = 2**63 - 1
_MAX_DEPTH = 8  # nested message levels checked; the contracts nest three at most

_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_UNSIGNED_64 = (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)


class Rejected:
    """A request that must not reach the servicer: INVALID_ARGUMENT with this message and field."""

    __slots__ = ("field", "message")

    def __init__(self, message: str, field: str = "") -> None:
        self.message = message
        self.field = field


# A check returns None when the value is fine, or (field path, problem).
Check = Callable[[Message], "tuple[str, str] | None"]


def _string_check(name: str, repeated: bool) -> Check:
    def check(msg: Message) -> tuple[str, str] | None:
        value = getattr(msg, name)
        values = value if repeated else (value,)
        for v in values:
            if len(v) > MAX_STRING:
                return name, f"longer than {MAX_STRING} characters"
        return None

    return check


def _uint64_check(name: str, repeated: bool) -> Check:
    def check(msg: Message) -> tuple[str, str] | None:
        value = getattr(msg, name)
        values = value if repeated else (value,)
        for v in values:
            if v > INT64_MAX:
                return name, "must be at most 2^63-1"
        return None

    return check


def _map_check(name: str, entry: Descriptor, depth: int) -> Check | None:
    key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
    key_is_str = key.type == _STRING
    value_is_str = value.type == _STRING
    value_plan = plan(value.message_type, depth + 1) if value.type == _MESSAGE else ()
    if not (key_is_str or value_is_str or value_plan):
        return None

    def check(msg: Message) -> tuple[str, str] | None:
        for k, v in getattr(msg, name).items():
            if key_is_str and len(k) > MAX_STRING:
                return f"{name} key", f"longer than {MAX_STRING} characters"
            if value_is_str and len(v) > MAX_STRING:
                return f"{name}[{repr(k)[:32]}]", f"longer than {MAX_STRING} characters"
            if value_plan and (bad := _run(value_plan, v)):
                return f"{name}[{repr(k)[:32]}].{bad[0]}", bad[1]
        return None

    return check


def _message_check(name: str, sub: tuple[Check, ...], repeated: bool) -> Check:
    def check(msg: Message) -> tuple[str, str] | None:
        if repeated:
            for i, item in enumerate(getattr(msg, name)):
                if bad := _run(sub, item):
                    return f"{name}[{i}].{bad[0]}", bad[1]
            return None
        if not msg.HasField(name):
            return None
        bad = _run(sub, getattr(msg, name))
        return (f"{name}.{bad[0]}", bad[1]) if bad else None

    return check


@functools.cache
def plan(descriptor: Descriptor, depth: int = 0) -> tuple[Check, ...]:
    """The checks for one message type: only fields that can break a bound get one."""
    if depth > _MAX_DEPTH:
        return ()
    checks: list[Check] = []
    for field in descriptor.fields:
        repeated = field.is_repeated
        if field.type == _STRING:
            checks.append(_string_check(field.name, repeated))
        elif field.type in _UNSIGNED_64:
            checks.append(_uint64_check(field.name, repeated))
        elif field.type == _MESSAGE and (message := field.message_type) is not None:
            if message.GetOptions().map_entry:
                if (map_check := _map_check(field.name, message, depth)) is not None:
                    checks.append(map_check)
            elif sub := plan(message, depth + 1):
                checks.append(_message_check(field.name, sub, repeated))
    return tuple(checks)


def _run(checks: tuple[Check, ...], msg: Message) -> tuple[str, str] | None:
    for check in checks:
        if bad := check(msg):
            return bad
    return None


def check(msg: Message) -> Rejected | None:
    """The first bound ``msg`` breaks, as a Rejected; None when it keeps them all."""
    bad = _run(plan(msg.DESCRIPTOR), msg)
    return Rejected(f"{bad[0]}: {bad[1]}", bad[0]) if bad else None


def guard_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Wrap a generated ``Message.FromString``; anything else (None, a custom callable) is left as is."""
    cls = getattr(deserializer, "__self__", None)
    if deserializer is None or not (isinstance(cls, type) and issubclass(cls, Message)):
        return deserializer
    checks = plan(cls.DESCRIPTOR)
    type_name = cls.DESCRIPTOR.name

    def guarded(raw: bytes) -> Any:
        try:
            msg = deserializer(raw)
        except DecodeError:
            # Truncated varints, bad wire types, invalid UTF-8 in a string: the client's bytes, not ours.
            return Rejected(f"request is not a valid {type_name} (undecodable protobuf)")
        if checks and (bad := _run(checks, msg)):
            return Rejected(f"{bad[0]}: {bad[1]}", bad[0])
        return msg

    return guarded
