"""The HTTP side of FakeBotAPI: parse a Bot API request, hand it over, write the answer.

It knows URLs and encodings, nothing of what the methods do: :class:`Server` is given a
``dispatch`` function for method calls and a ``download`` function for files, and calls
nothing else.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: ``(token, method, params) -> (HTTP status, JSON answer)``: one Bot API call.
Dispatch = Callable[[str, str, dict[str, Any]], tuple[int, dict[str, Any]]]
#: ``(token, file path) -> content``, None for a file that does not exist.
Download = Callable[[str, str], bytes | None]

# Parameters whose values are strings even when they look like numbers or JSON: every other
# parameter is decoded (chat_id -> int, reply_markup -> dict, ...) for convenient assertions.
_STRING_PARAMS = frozenset({
    "text", "caption", "query", "data", "title", "description", "question", "explanation",
    "callback_query_id", "inline_query_id", "inline_message_id", "parse_mode", "url", "emoji",
    "business_connection_id", "file_id", "result_id", "first_name", "last_name", "username",
    "name", "switch_pm_text", "switch_pm_parameter", "next_offset", "custom_title",
    "message_effect_id", "address", "phone_number", "payload", "currency", "start_parameter",
    "sticker", "photo", "document", "audio", "video", "voice", "animation", "video_note",
})


def _decode(name: str, value: str) -> Any:
    if name in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _parse_params(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """Query string and body (form, JSON or multipart) merged; an uploaded file becomes
    ``{"filename": ..., "size": ...}``."""
    raw: list[tuple[str, Any]] = parse_qsl(query, keep_blank_values=True)
    if body:
        if content_type.startswith("application/json"):
            parsed = json.loads(body)
            # JSON bodies are already typed; keep them as they are.
            return {**{k: _decode(k, v) for k, v in raw}, **parsed}
        if content_type.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                payload = payload if isinstance(payload, bytes) else b""
                if part.get_filename() is not None:
                    raw.append((str(name), {"filename": part.get_filename(), "size": len(payload)}))
                else:
                    raw.append((str(name), payload.decode("utf-8")))
        else:
            raw.extend(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    return {k: (_decode(k, v) if isinstance(v, str) else v) for k, v in raw}


class Server(ThreadingHTTPServer):
    """Serves Bot API URLs on a free port of 127.0.0.1, a thread per request.

    ``/bot<token>/<method>`` goes to ``dispatch`` (GET or POST; parameters from the query string
    and a form, JSON or multipart body, plain or chunked); ``/file/bot<token>/<path>`` to
    ``download``. Anything else is a 404.
    """

    daemon_threads = True
    # The default backlog of 5 drops connections when a bot's workers all send at once.
    request_queue_size = 128

    def __init__(self, dispatch: Dispatch, download: Download) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dispatch = dispatch
        self.download = download

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-request (a cancelled coroutine, say) is no error of ours.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        parts = url.path.split("/", 3)
        if len(parts) == 4 and parts[1] == "file" and parts[2].startswith("bot"):
            content = self.server.download(parts[2][3:], parts[3])
            if content is None:
                self._send(404, b"Not Found", "text/plain")
            else:
                self._send(200, content, "application/octet-stream")
            return
        if len(parts) != 3 or not parts[1].startswith("bot"):
            self._send(404, json.dumps({"ok": False, "error_code": 404, "description": "Not Found"}).encode())
            return
        try:
            params = _parse_params(url.query, self.headers.get("Content-Type") or "", body)
        except ValueError as e:
            self._send(400, json.dumps({"ok": False, "error_code": 400, "description": f"Bad Request: {e}"}).encode())
            return
        status, payload = self.server.dispatch(parts[1][3:], parts[2], params)
        self._send(status, json.dumps(payload).encode())

    # TeleBot's client POSTs; AsyncTeleBot's sends most methods as a GET with a form body.
    do_POST = do_GET

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            # What a client sends when it does not know the size up front (a generator, say).
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a test run should not print a line per request
