"""hello-python: an fnhost function in Python (componentize-py).

Build: `fnhost build examples/components/hello-python`; run:
`fnhost invoke <printed path> --payload '{"name":"you"}'`.
"""

from fnhost import FunctionError, WitWorld, handler  # noqa: F401 (WitWorld: the export)


@handler
def hello(event, ctx):
    name = event.get("name")
    if not isinstance(name, str) or not name:
        raise FunctionError("InvalidRequest", "name must be a non-empty string")
    print(f"request {ctx.request_id}: greeting {name}")
    return {"message": f"Hello, {name}!", "language": "python"}
