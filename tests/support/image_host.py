"""An https server for one host name (`images.test`, its certificate names it), serving the
input images of image-to-video jobs (tests only)."""

from __future__ import annotations

import io
from ipaddress import ip_address

from PIL import Image

from services.core.generators.input_images import MAX_IMAGE_BYTES, ImageFetcher
from tests.support.fake_provider import FakeProvider, Request, Response
from tests.support.tls import make_tls

HOST = "images.test"


def png(width: int = 8, height: int = 8) -> bytes:
    """A small real PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


class ImageHost(FakeProvider):
    """Serves /img/<name> over TLS; names in `redirects` answer 302 to another URL."""

    def __init__(self) -> None:
        super().__init__()
        self.tls = make_tls(HOST)
        self._server.socket = self.tls.server.wrap_socket(self._server.socket, server_side=True)
        self.images: dict[str, tuple[bytes, str]] = {}
        self.redirects: dict[str, str] = {}
        self.route("GET", r"/img/(?P<name>[^/]+)", self._image)

    def url(self, name: str, data: bytes | None = None, content_type: str = "image/png") -> str:
        """The https URL of an image served here (by its host name, which tests resolve here)."""
        self.images[name] = (png() if data is None else data, content_type)
        return f"https://{HOST}:{self._server.server_address[1]}/img/{name}"

    def fetcher(self, *, allow_private: bool = True, max_bytes: int = MAX_IMAGE_BYTES) -> ImageFetcher:
        """An ImageFetcher that resolves images.test to this server and trusts its certificate."""
        return ImageFetcher(
            allow_private=allow_private,
            resolver=lambda host: [ip_address("127.0.0.1")],
            verify=self.tls.client,
            max_bytes=max_bytes,
        )

    def _image(self, request: Request) -> Response:
        name = request.match["name"]
        if name in self.redirects:
            return Response(302, {}, {"Location": self.redirects[name]})
        if name not in self.images:
            return Response(404, {"detail": "not found"})
        data, content_type = self.images[name]
        return Response(200, raw=data, content_type=content_type)
