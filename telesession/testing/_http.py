"""The HTTP side of FakeBotAPI: parse a Bot API request, hand it over, write the answer."""

from __future__ import annotations

import email.parser
import email.policy
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from ._api import FakeBotAPI

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
    """Serves one FakeBotAPI on a free port of 127.0.0.1, a thread per request."""

    daemon_threads = True
    # The default backlog of 5 drops connections when a bot's workers all send at once.
    request_queue_size = 128

    def __init__(self, api: FakeBotAPI) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api


class _Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = url.path.split("/")
        if len(parts) >= 4 and parts[1] == "file" and parts[2].startswith("bot"):
            content = self.server.api._download(url.path)
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
        status, payload = self.server.api._dispatch(parts[1][3:], parts[2], params)
        self._send(status, json.dumps(payload).encode())

    do_POST = do_GET

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a test run should not print a line per request
