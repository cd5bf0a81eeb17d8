"""probe-py: the Python twin of the `probe` test guests. Each command
(`{"op": ...}`) exercises one rule the host must enforce on a
componentize-py component, through the fnhost.py helper."""

import os

from fnhost import FunctionError, WitWorld, call, handler  # noqa: F401 (WitWorld)

counter = 0
hold = []


@handler
def probe(event, ctx):
    global counter
    op = event.get("op")
    if op == "echo":
        return event["data"]
    if op == "hello":
        print(f"hello, {event['name']}")
        return {"greeting": f"Hello, {event['name']}!"}
    if op == "raise":
        raise KeyError(event["message"])
    if op == "fail":
        raise FunctionError(event["kind"], event["message"])
    if op == "spin":
        while True:
            counter += 1
    if op == "alloc":
        for i in range(event["mib"]):
            hold.append(bytearray(1 << 20))
        return {"held": len(hold)}
    if op == "state":
        counter += 1
        return {"counter": counter}
    if op == "env":
        return dict(os.environ)
    if op == "print":
        for _ in range(event.get("times", 1)):
            print(event["text"])
        return "printed"
    if op == "output":
        return "x" * event["bytes"]
    if op == "context":
        return {
            "request_id": ctx.request_id,
            "function_name": ctx.function_name,
            "function_version": ctx.function_version,
            "memory_limit": ctx.memory_limit,
            "timeout_ms": ctx.timeout_ms,
            "event": ctx.event,
        }
    if op == "random":
        return os.urandom(16).hex()
    if op == "files":
        try:
            with open(event["path"], "rb") as f:
                return {"read": len(f.read())}
        except OSError as e:
            return {"error": type(e).__name__}
    if op == "tmp":
        # Write, read back, list; then past the quota; then out of /tmp.
        out = {}
        with open("/tmp/a.txt", "w") as f:
            f.write("x" * event["bytes"])
        with open("/tmp/a.txt") as f:
            out["read"] = len(f.read())
        out["list"] = sorted(os.listdir("/tmp"))
        try:
            with open("/tmp/big", "wb") as f:
                f.write(b"y" * event["over"])
            out["over"] = "written"
        except OSError as e:
            out["over"] = type(e).__name__
        try:
            open("/tmp/../etc/passwd").close()
            out["escape"] = "opened"
        except OSError as e:
            out["escape"] = type(e).__name__
        return out
    if op == "host_call":
        from fnhost import CapabilityError

        try:
            return {"ok": call(event["name"], event.get("request"))}
        except CapabilityError as e:
            return {"err": e.kind, "message": e.message, "kind": e.error_kind}
    raise FunctionError("BadRequest", f"unknown op {op}")
