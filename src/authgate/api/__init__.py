"""The first-party REST API (the original REST-auth design, done right)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from authgate.errors import InvalidInput

bp = Blueprint("api", __name__, url_prefix="/api")


def json_body(*required: str) -> dict[str, Any]:
    """The request's JSON object; raises InvalidInput naming a missing or non-string field.

    Flask answers 415 for a non-JSON content type and 400 for unparsable JSON;
    pathological nesting (which overflows Python's parser) is a 400 too.
    """
    try:
        body = request.get_json()
    except RecursionError as exc:
        raise InvalidInput("JSON body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    for name in required:
        if name not in body or body[name] is None:
            raise InvalidInput(f"missing field {name!r}")
        if not isinstance(body[name], str):
            raise InvalidInput(f"field {name!r} must be a string")
    return body


from authgate.api import consents, resource, tokens, users  # noqa: E402,F401
