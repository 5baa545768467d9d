"""Request bodies read as strict JSON, so that anything else is a 422 naming the body, never a 400 or 500.

Python's json module takes `NaN`, `Infinity` and `1e999` (as infinity), and strings with lone UTF-16
surrogates; it raises RecursionError on deep nesting and ValueError on integers of thousands of
digits. None of that is JSON that the services or the answers can carry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from fastapi import Request, Response
from fastapi.routing import APIRoute


def _refuse(problem: str, text: str) -> NoReturn:
    # FastAPI answers a JSONDecodeError from the body as a 422 `json_invalid` with this message.
    raise json.JSONDecodeError(problem, text, 0)


def parse_json_body(body: bytes) -> Any:
    """The value of a UTF-8 JSON body (a byte order mark is allowed), or json.JSONDecodeError."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        _refuse("the body is not UTF-8", body.decode("utf-8", "replace"))

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            _refuse(f"{literal} is too large a number", text)
        return value

    try:
        value = json.loads(text, parse_float=number, parse_constant=lambda name: _refuse(f"{name} is not JSON", text))
        json.dumps(value, ensure_ascii=False).encode()
    except json.JSONDecodeError:
        raise
    except RecursionError:
        _refuse("the body is nested too deeply", text)
    except UnicodeEncodeError:
        _refuse("a string holds a lone UTF-16 surrogate, which is no Unicode character", text)
    except ValueError:  # an integer of more digits than Python converts
        _refuse("a number has too many digits", text)
    return value


class StrictJsonRequest(Request):
    """A request whose json() is parse_json_body."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route that reads its JSON body with parse_json_body (`APIRouter(route_class=...)`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_strictly(request: Request) -> Response:
            return await handle(StrictJsonRequest(request.scope, request.receive))

        return handle_strictly
