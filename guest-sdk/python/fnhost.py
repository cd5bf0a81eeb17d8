"""fnhost's Python helper: a plain function becomes the `handle` export of
the WIT world `fnhost:function/handler` (wit/function.wit).

    from fnhost import handler, WitWorld  # WitWorld: what componentize-py looks for

    @handler
    def hello(event, ctx):
        print(f"request {ctx.request_id}")
        return {"greeting": f"Hello, {event['name']}!"}

The payload arrives parsed from JSON (an empty payload is `{}`); what the
function returns is sent back as JSON. An exception becomes the
invocation's `Guest { kind, message }` error: `kind` is the exception's
type name (or the `kind` of a `FunctionError`), `message` its text.
`fnhost build` puts this file beside your code.
"""

import json
import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports import capabilities as _capabilities
from wit_world.imports import context as _context
from wit_world.imports import types as _types

_handler = None


def handler(fn):
    """Registers `fn(event, ctx)` as the function's handler."""
    global _handler
    _handler = fn
    return fn


class FunctionError(Exception):
    """A handled failure with a kind of your choosing."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class CapabilityError(Exception):
    """A capability call that did not answer: `kind` is `failed` (the
    capability's own error, in `error_kind`/`message`), `denied` or
    `limit`."""

    def __init__(self, kind: str, message: str, error_kind: str = ""):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.error_kind = error_kind


class Context:
    """What this invocation is (read when asked)."""

    @property
    def request_id(self) -> str:
        return _context.request_id()

    @property
    def function_name(self) -> str:
        return _context.function_name()

    @property
    def function_version(self) -> str:
        return _context.function_version()

    @property
    def memory_limit(self) -> int:
        return _context.memory_limit()

    @property
    def timeout_ms(self) -> int:
        return _context.timeout_ns() // 1_000_000

    def remaining_ms(self) -> int:
        """Milliseconds left before the deadline."""
        return _context.remaining_ns() // 1_000_000

    @property
    def event(self):
        """`(id, attempt)` for an event invocation, else None."""
        e = _context.event()
        return None if e is None else (e.id, e.attempt)


def call(name: str, request=None):
    """Calls the capability `name` with `request` (sent as JSON); returns
    its JSON answer parsed, or raises `CapabilityError`."""
    try:
        raw = _capabilities.call(name, json.dumps(request).encode())
    except Err as e:
        err = e.value
        if isinstance(err, _capabilities.HostError_Failed):
            raise CapabilityError("failed", err.value.message, err.value.kind) from None
        if isinstance(err, _capabilities.HostError_Denied):
            raise CapabilityError("denied", err.value) from None
        raise CapabilityError("limit", err.value) from None
    return json.loads(raw) if raw else None


def _error(kind: str, message: str) -> Err:
    return Err(_types.Error(kind=kind, message=message))


class WitWorld(wit_world.WitWorld):
    """The world's export: decodes, calls the handler, encodes."""

    def handle(self, event: bytes) -> bytes:
        if _handler is None:
            raise _error("NoHandler", "no function is decorated with @fnhost.handler")
        try:
            data = json.loads(event) if event else {}
        except ValueError as e:
            raise _error("InvalidJson", f"the payload is not JSON: {e}") from None
        try:
            out = _handler(data, Context())
            return json.dumps(out, separators=(",", ":")).encode()
        except FunctionError as e:
            raise _error(e.kind, e.message) from None
        except MemoryError:
            # Out of the function's memory limit: not a handled failure.
            # Uncaught, it traps, and the host reports OutOfMemory.
            raise
        except Exception as e:
            raise _error(type(e).__name__, str(e)) from None
        finally:
            # stdout is block-buffered (not a terminal): what this
            # invocation printed belongs in its logs now.
            sys.stdout.flush()
            sys.stderr.flush()
