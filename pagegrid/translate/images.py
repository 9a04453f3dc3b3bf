"""Images between OpenAI's URL form and Anthropic's image blocks (pure).

OpenAI clients send an image as a URL, a ``data:`` URL for inline bytes; Anthropic takes a block
with a base64 or url source. One parser serves both OpenAI dialects, and ``anthropic_image_url``
is its inverse for Messages clients on GPT models.
"""

from __future__ import annotations

from pagegrid.errors import InvalidRequest
from pagegrid.json_types import as_object

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_ALIASES = {"image/jpg": "image/jpeg"}


def openai_image_url_to_anthropic(url: object, param: str) -> dict:
    """An image URL (http(s), or a base64 ``data:`` URL of a JPEG, PNG, GIF or WebP) as an image block."""
    if isinstance(url, str) and url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, *options = header.split(";")
        media_type = _ALIASES.get(media_type.lower(), media_type.lower())
        if not comma or "base64" not in options or media_type not in IMAGE_TYPES or not data:
            raise InvalidRequest("Image data URLs must be base64-encoded JPEG, PNG, GIF or WebP "
                                 "(data:image/png;base64,...).", param=param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("Image URLs must be http(s) URLs or base64 data URLs.", param=param)


def anthropic_image_url(block: dict) -> str | None:
    """An image block's source as the URL OpenAI takes (base64 as a data URL); None if it has neither."""
    source = as_object(block.get("source"))
    data, media_type = source.get("data"), source.get("media_type")
    if source.get("type") == "base64" and isinstance(data, str) and isinstance(media_type, str):
        return f"data:{media_type};base64,{data}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    return None
