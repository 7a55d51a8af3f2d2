"""llama-cpp-python's OpenAI-compatible server, with requests checked the way OpenAI's API checks
them: `python -m llmbuild.adapters.llama_cpp_api <llama_cpp.server's arguments>`.

llama-cpp-python's server answers a malformed body with HTTP 500 (a traceback's text, the server's
file paths in it), and an empty or missing `messages` or an unknown model with 200. In front of it,
each of these is a 4xx whose body is OpenAI's error object (`{"error": {"message", "type", "param",
"code"}}`), and a failure inside the server is a 500 that says so without its internals (the
server's log has them). Everything else reaches the server as sent.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}}).encode()


def check(path: str, body: bytes, model: str, schemas: dict[str, Any] | None = None) -> dict:
    """The request to `path` (RequestError where OpenAI's API would refuse it). `model`: the served alias;
    `schemas`: the server's own request models (pydantic) by path, whose validation errors are 400s."""
    try:
        request = json.loads(body or b"null")
    except ValueError as err:
        raise RequestError(400, f"the request body is not valid JSON ({err})") from None
    if not isinstance(request, dict):
        raise RequestError(400, "the request body must be a JSON object")
    asked = request.get("model")
    if asked is not None and asked != model:
        raise RequestError(404, f"The model '{asked}' does not exist: this server serves '{model}' "
                                f"(GET /v1/models)", "model", "model_not_found")
    if path == CHAT:
        messages = request.get("messages")
        if messages is None:
            raise RequestError(400, "'messages' is a required property", "messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty array of messages", "messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise RequestError(400, f"messages[{index}] must be an object whose 'role' is one of "
                                        f"{', '.join(ROLES)}", f"messages[{index}].role")
            content = message.get("content")
            if content is not None and not isinstance(content, (str, list)):
                raise RequestError(400, f"messages[{index}].content must be a string or an array of parts",
                                   f"messages[{index}].content")
    if path == COMPLETIONS and "prompt" not in request:
        raise RequestError(400, "'prompt' is a required property", "prompt")
    schema = (schemas or {}).get(path)
    if schema is not None:
        from pydantic import ValidationError

        try:
            schema.model_validate(request)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise RequestError(400, f"{where}: {first['msg']}", where or None) from None
    return request


class OpenAIErrors:
    """ASGI middleware: checks the JSON requests to the generation endpoints (`check`), and replaces the
    body of any 500 with an error object that shows no internals."""

    def __init__(self, app, model: str, schemas: dict[str, Any] | None = None):
        self.app, self.model, self.schemas = app, model, schemas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"] in (CHAT, COMPLETIONS):
            body = await _read_body(receive)
            try:
                request = check(scope["path"], body, self.model, self.schemas)
            except RequestError as err:
                await _respond(send, err.status, error_body(str(err), "invalid_request_error", err.param, err.code))
                return
            if "model" not in request:   # the server would answer with its model's file path as the model
                body = json.dumps({**request, "model": self.model}).encode()
            receive = _replay(body, receive)
        await self.app(scope, receive, _hide_internal_errors(send))


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, then the connection's own messages (a disconnect when the client goes)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replayed


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _hide_internal_errors(send: Send) -> Send:
    failed = False

    async def guarded(message: dict) -> None:
        nonlocal failed
        if message["type"] == "http.response.start" and message["status"] >= 500:
            failed = True
            return
        if failed:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await _respond(send, 500, error_body("the server failed on this request; its log says why",
                                                     "server_error"))
            return
        await send(message)
    return guarded


def main() -> None:
    """llama_cpp.server's command line and app, behind OpenAIErrors."""
    import argparse

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings
    from llama_cpp.server.types import CreateChatCompletionRequest, CreateCompletionRequest

    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.split("\n\n")[0])
    add_args_from_model(parser, Settings)
    args = parser.parse_args()
    server = parse_model_from_args(ServerSettings, args)
    model = parse_model_from_args(ModelSettings, args)
    app = create_app(server_settings=server, model_settings=[model])
    alias = model.model_alias or model.model
    schemas = {CHAT: CreateChatCompletionRequest, COMPLETIONS: CreateCompletionRequest}
    uvicorn.run(OpenAIErrors(app, alias, schemas), host=server.host, port=server.port)


if __name__ == "__main__":
    sys.exit(main())
