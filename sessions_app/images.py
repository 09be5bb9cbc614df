"""Images sent with a run's message: read them from what an edge received (JSON, an upload),
check them, store them with the run, and hand them to the model as image parts.

One place for every edge (REST JSON and multipart, agno's `files`, websocket frames), so each
refuses the same image the same way, before anything is written (sessions_app.errors):

* more than IMAGE_MAX_COUNT images: 400 `too_many_images`;
* more than IMAGE_MAX_BYTES bytes: 413 `image_too_large`;
* bytes that are not one of IMAGE_TYPES: 415 `unsupported_media_type`. The type is read from the
  bytes' signature (the first bytes of a PNG, JPEG, GIF or WebP file: enough to know the format,
  not to decode it; Pillow is not a dependency). A type the client declares is neither needed nor
  trusted; an image given by URL is judged by its path's extension, when it has one;
* anything else unreadable (bad base64, a URL that is not http(s), unknown keys, a bad `detail`):
  400 `invalid_image`.

An uploaded image (or a `data:` URL) is stored through Django's storage API (`RunImage.file`); an
image given by URL is stored as its URL, not downloaded. The model gets the user's message as
OpenAI content parts: the text, then one `image_url` part per image (the URL, or a `data:` URL of
the bytes).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import mimetypes
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import FileUploadHandler
from django.core.validators import URLValidator

from sessions_app.conf import agentos_settings
from sessions_app.errors import ImageTooLarge, InvalidImage, TooManyImages, UnsupportedImageType
from sessions_app.inputs import InvalidInput, clean_text
from sessions_app.models import RunImage

logger = logging.getLogger(__name__)

DETAILS = ("auto", "low", "high")
URL_MAX_CHARS = 2000  # RunImage.url's max_length
NAME_MAX_CHARS = 255  # RunImage.name's max_length
MIME_MAX_CHARS = 100  # RunImage.mime_type's max_length
_KEYS = frozenset({"url", "data", "mime_type", "name", "detail"})
_DATA_URL = re.compile(r"data:([^,;]*)((?:;[^,;]*)*),(.*)", re.DOTALL)
_url_validator = URLValidator(schemes=["http", "https"])

# The first bytes of each format (its "magic number"): the format, whatever the name or the
# declared type say. WebP is a RIFF container whose form type is "WEBP".
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff(data: bytes) -> str:
    """The image type the bytes are (`image/png`, `image/jpeg`, `image/gif`, `image/webp`), or ""."""
    for signature, mime_type in _SIGNATURES:
        if data.startswith(signature):
            return mime_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


def max_bytes() -> int:
    return int(agentos_settings.IMAGE_MAX_BYTES)


def max_count() -> int:
    return int(agentos_settings.IMAGE_MAX_COUNT)


def allowed_types() -> list[str]:
    return [str(t).lower() for t in agentos_settings.IMAGE_TYPES]


def _type_names() -> str:
    return ", ".join(t.removeprefix("image/") for t in allowed_types()) or "none"


def base64_chars(size: int) -> int:
    """Characters of the base64 text of `size` bytes."""
    return 4 * ((size + 2) // 3)


def encoded_allowance() -> int:
    """Characters a body or frame may carry for its images beyond its other limits: every image at
    the size limit, base64-encoded as a `data:` URL, with its keys and punctuation."""
    return max_count() * (base64_chars(max_bytes()) + 1024)


def image_text_chars(body: Any) -> int:
    """Characters of image text (`data`, `url`) in a parsed JSON body's or frame's `images`: what
    a body may have beyond its usual size limit (REST: DATA_UPLOAD_MAX_MEMORY_SIZE; websocket: a
    frame's)."""
    images = body.get("images") if isinstance(body, dict) else None
    if not isinstance(images, list):
        return 0
    return sum(
        len(item[key])
        for item in images
        if isinstance(item, dict)
        for key in ("data", "url")
        if isinstance(item.get(key), str)
    )


@dataclass(frozen=True, slots=True)
class ImageInput:
    """One checked image: given by URL (`url`), or bytes (`data`, with the type read from them and
    `encoded`, their base64 text)."""

    url: str = ""
    data: bytes = b""
    encoded: str = ""
    mime_type: str = ""
    name: str = ""
    detail: str = ""

    @property
    def size(self) -> int:
        return len(self.data)

    def model_url(self) -> str:
        """What the model is given: the URL, or a `data:` URL of the bytes."""
        return f"data:{self.mime_type};base64,{self.encoded}" if self.data else self.url

    def content_part(self) -> dict[str, Any]:
        """The image as an OpenAI content part."""
        image_url: dict[str, Any] = {"url": self.model_url()}
        if self.detail:
            image_url["detail"] = self.detail
        return {"type": "image_url", "image_url": image_url}


def user_content(text: str, image_parts: Sequence[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A user message's `content`: the text alone, or (with images) the text part, then the images."""
    if not image_parts:
        return text
    return [{"type": "text", "text": text}, *image_parts]


def content_text(content: Any) -> str:
    """The text of a message's `content`, whether a string or content parts."""
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def with_text(content: Any, text: str) -> str | list[dict[str, Any]]:
    """`content` with its text replaced by `text` (image parts kept): a pre-hook rewrote the input."""
    if isinstance(content, list):
        return user_content(text, [p for p in content if not (isinstance(p, dict) and p.get("type") == "text")])
    return text


# ---- reading what a client sent -------------------------------------------------------------


def _count_checked(count: int) -> None:
    if count > max_count():
        raise TooManyImages(f"A message may carry at most {max_count()} images; this one has {count}.")


def _detail(value: Any, index: int) -> str:
    if value is None or value == "":
        return ""
    if value not in DETAILS:
        raise InvalidImage(f"Image {index}: 'detail' must be one of {', '.join(DETAILS)}.", index=index)
    return str(value)


def _name(value: Any, index: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidImage(f"Image {index}: 'name' must be a string.", index=index)
    try:
        clean_text(value, field="images")
    except InvalidInput as exc:
        raise InvalidImage(f"Image {index}: {exc.detail}", index=index) from None
    # A name, not a path: what follows the last slash, bounded.
    return value.replace("\\", "/").rsplit("/", 1)[-1].strip()[:NAME_MAX_CHARS]


def _checked_bytes(data: bytes, index: int, label: str = "Image") -> str:
    """The type of an image's bytes, if within the size limit and allowed."""
    if len(data) > max_bytes():
        raise ImageTooLarge(
            f"{label} {index} is {len(data)} bytes; the limit is {max_bytes()} bytes.", index=index, limit=max_bytes()
        )
    if not data:
        raise InvalidImage(f"{label} {index} is empty.", index=index)
    mime_type = sniff(data)
    if mime_type not in allowed_types():
        raise UnsupportedImageType(
            f"{label} {index} is not an image of an accepted type ({_type_names()}): its bytes are "
            f"{'a ' + mime_type.removeprefix('image/') + ' image' if mime_type else 'none of these formats'}.",
            index=index,
        )
    return mime_type


def _decoded(text: str, index: int) -> tuple[bytes, str]:
    """The bytes of base64 `text` (line breaks allowed) and its text without them."""
    if len(text) > base64_chars(max_bytes()) * 11 // 10 + 1024:
        # Over the limit even if a tenth of it were line breaks: refused before it is decoded.
        raise ImageTooLarge(f"Image {index} is over the limit of {max_bytes()} bytes.", index=index, limit=max_bytes())
    for candidate in (text, "".join(text.split())):
        try:
            return base64.b64decode(candidate, validate=True), candidate
        except (binascii.Error, ValueError):
            continue
    raise InvalidImage(f"Image {index}: 'data' is not valid base64.", index=index)


def _from_bytes(data: bytes, encoded: str, *, index: int, name: str, detail: str) -> ImageInput:
    mime_type = _checked_bytes(data, index)
    return ImageInput(data=data, encoded=encoded, mime_type=mime_type, name=name, detail=detail)


def _from_url(url: str, *, index: int, name: str, detail: str) -> ImageInput:
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None or ";base64" not in match.group(2).lower():
            raise InvalidImage(f"Image {index}: a data: URL must be base64 (data:image/png;base64,...).", index=index)
        data, encoded = _decoded(match.group(3), index)
        return _from_bytes(data, encoded, index=index, name=name, detail=detail)
    if len(url) > URL_MAX_CHARS:
        raise InvalidImage(f"Image {index}: the URL is longer than {URL_MAX_CHARS} characters.", index=index)
    try:
        clean_text(url, field="images")
        _url_validator(url)
    except (InvalidInput, ValidationError):
        raise InvalidImage(f"Image {index}: 'url' must be an http(s) URL, or a data: URL.", index=index) from None
    guessed, _ = mimetypes.guess_type(urlsplit(url).path, strict=False)
    if guessed is not None and guessed.lower() not in allowed_types():
        raise UnsupportedImageType(
            f"Image {index}: the URL names a {guessed} file; accepted types: {_type_names()}.", index=index
        )
    return ImageInput(url=url, mime_type=(guessed or "").lower(), name=name, detail=detail)


def images_from_json(value: Any) -> list[ImageInput]:
    """The images of a JSON request (REST body, websocket frame): a list of `{"url": ...}` or
    `{"data": <base64>, "mime_type"?, "name"?}` objects, each with an optional `detail`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidImage("'images' must be a list of objects.")
    _count_checked(len(value))
    images = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidImage(f"Image {index} must be an object with 'url' or 'data'.", index=index)
        unknown = sorted(str(k) for k in item if k not in _KEYS)
        if unknown:
            raise InvalidImage(
                f"Image {index}: unknown keys {', '.join(unknown)}; the keys are {', '.join(sorted(_KEYS))}.",
                index=index,
            )
        url, data = item.get("url"), item.get("data")
        if (url is None) == (data is None):
            raise InvalidImage(f"Image {index} must have either 'url' or 'data'.", index=index)
        mime_type = item.get("mime_type")
        if mime_type is not None and (not isinstance(mime_type, str) or len(mime_type) > MIME_MAX_CHARS):
            raise InvalidImage(f"Image {index}: 'mime_type' must be a short string.", index=index)
        name, detail = _name(item.get("name"), index), _detail(item.get("detail"), index)
        if url is not None:
            if not isinstance(url, str):
                raise InvalidImage(f"Image {index}: 'url' must be a string.", index=index)
            images.append(_from_url(url, index=index, name=name, detail=detail))
        else:
            if not isinstance(data, str):
                raise InvalidImage(f"Image {index}: 'data' must be base64 text.", index=index)
            raw, encoded = _decoded(data, index)
            images.append(_from_bytes(raw, encoded, index=index, name=name, detail=detail))
    return images


def images_from_uploads(files: Iterable[Any], *, detail: Any = None, label: str = "Image") -> list[ImageInput]:
    """The images of uploaded files (Django's UploadedFile: multipart `images`, agno's `files`);
    `label` names them in error messages."""
    uploads = list(files)
    _count_checked(len(uploads))
    images = []
    for index, upload in enumerate(uploads):
        size = getattr(upload, "size", None) or 0
        if size > max_bytes():  # never read a file that is over the limit
            raise ImageTooLarge(
                f"{label} {index} is {size} bytes; the limit is {max_bytes()} bytes.", index=index, limit=max_bytes()
            )
        upload.seek(0)
        data = upload.read(max_bytes() + 1)
        mime_type = _checked_bytes(data, index, label)
        images.append(
            ImageInput(
                data=data,
                encoded=base64.b64encode(data).decode("ascii"),
                mime_type=mime_type,
                name=_name(getattr(upload, "name", "") or "", index),
                detail=_detail(detail, index),
            )
        )
    return images


class ImageUploadHandler(FileUploadHandler):
    """Django upload handler that stops a multipart body as soon as it breaks an image limit, before
    the rest is written to a temporary file: any file over IMAGE_MAX_BYTES (413 `image_too_large`),
    more than IMAGE_MAX_COUNT files in `fields` (400 `too_many_images`), or (unless `other_files`)
    a file in another field (400 `invalid_image`). Put it first in the request's upload handlers
    (`install`). Without it, Django writes any file part of any size to a temporary file:
    DATA_UPLOAD_MAX_MEMORY_SIZE bounds only the other fields, and FILE_UPLOAD_MAX_MEMORY_SIZE
    only decides between memory and a temporary file."""

    def __init__(self, request: Any = None, *, fields: Sequence[str] = ("images",), other_files: bool = False) -> None:
        super().__init__(request)
        self.fields = tuple(fields)
        self.other_files = other_files
        self.count = 0

    @classmethod
    def install(cls, request: Any, **options: Any) -> None:
        """Put the handler first among `request`'s (a Django HttpRequest, before its body is read)."""
        request.upload_handlers = [cls(request, **options), *request.upload_handlers]

    def _fail(self, error: Exception) -> None:
        # The handlers after this one may have opened a temporary file for this upload: close it.
        for handler in getattr(self.request, "upload_handlers", ()):
            if handler is not self and getattr(handler, "file", None) is not None:
                with contextlib.suppress(Exception):
                    handler.file.close()
        raise error

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        if field_name not in self.fields:
            if not self.other_files:
                self._fail(InvalidImage(f"Files go in the {' or '.join(self.fields)} field, not {field_name!r}."))
            return
        self.count += 1
        if self.count > max_count():
            self._fail(TooManyImages(f"A message may carry at most {max_count()} images."))

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > max_bytes():
            index = max(self.count - 1, 0)
            self._fail(
                ImageTooLarge(
                    f"Image {index} is over the limit of {max_bytes()} bytes.", index=index, limit=max_bytes()
                )
            )
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers keep the file


# ---- storing ------------------------------------------------------------------------------------


def image_rows_create(*, run: Any, images: Sequence[ImageInput]) -> list[str]:
    """The run's RunImage rows (in the caller's transaction), uploads written through the default
    storage; returns the names of the files written, for `image_files_delete` should the
    transaction not commit. If writing fails halfway, the files already written are deleted."""
    rows: list[RunImage] = []
    written: list[str] = []
    try:
        for position, image in enumerate(images):
            row = RunImage(
                run=run,
                position=position,
                url=image.url,
                name=image.name,
                mime_type=image.mime_type,
                size=image.size,
                detail=image.detail,
            )
            if image.data:
                row.file.save(f"{position}{row.extension}", ContentFile(image.data), save=False)
                written.append(row.file.name)
            rows.append(row)
        RunImage.objects.bulk_create(rows)
    except BaseException:
        image_files_delete(written)
        raise
    return written


def image_files_delete(names: Iterable[str]) -> None:
    """Delete stored image files (of a run whose start was rolled back); never raises."""
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # a leftover file is logged, not a failed request
            logger.warning("Could not delete the image file %s", name, exc_info=True)


def run_image_parts(*, run_id: Any) -> list[dict[str, Any]]:
    """A run's stored images as the model got them with its message (OpenAI image parts, in order:
    an upload as a `data:` URL of its file, an image given by URL as its URL), for a paused run
    that goes on: its resume state refers to them instead of holding a second copy. An upload
    whose file cannot be read is left out (logged)."""
    parts: list[dict[str, Any]] = []
    for row in RunImage.objects.filter(run_id=run_id).order_by("position"):
        if row.file:
            try:
                with row.file.open("rb") as handle:
                    data = handle.read()
            except OSError:
                logger.warning("Could not read the image file %s of run %s", row.file.name, run_id, exc_info=True)
                continue
            image = ImageInput(
                data=data, encoded=base64.b64encode(data).decode(), mime_type=row.mime_type, detail=row.detail
            )
        else:
            image = ImageInput(url=row.url, detail=row.detail)
        parts.append(image.content_part())
    return parts
