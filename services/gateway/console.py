"""/ui/: the web console, one page shell and the modules it loads from services/gateway/ui/.

The pages hold no data: the modules read /api/v1 with the key the person gives (kept in the
tab's sessionStorage), so the console follows the API's key rules exactly. The assets are
versioned by a digest of their contents: a URL of them never changes meaning, so browsers may
keep them for a year, and a new release's page asks for new URLs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

ASSETS = Path(__file__).with_name("ui")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# Scripts and styles only from here; videos from here or, with MEDIA_BACKEND=s3, the store.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' https: http:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_YEAR = 365 * 24 * 3600


@dataclass(frozen=True)
class ConsoleAssets:
    """The console's files, read once, and the version that their contents give."""

    files: dict[str, bytes]
    version: str
    page: bytes

    @classmethod
    def load(cls, folder: Path = ASSETS) -> ConsoleAssets:
        """Every asset of folder, and the page shell pointing at this version of them."""
        files = {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.suffix in _TYPES}
        digest = hashlib.sha256()
        for name, content in files.items():
            digest.update(name.encode() + b"\0" + content + b"\0")
        version = digest.hexdigest()[:12]
        page = (folder / "index.html").read_bytes().replace(b"{{version}}", version.encode())
        return cls(files=files, version=version, page=page)


router = APIRouter(include_in_schema=False)


def _assets(request: Request) -> ConsoleAssets:
    assets: ConsoleAssets = request.app.state.console
    return assets


@router.get("/ui")
async def console_root() -> RedirectResponse:
    """The console lives under /ui/."""
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/assets/{version}/{name}")
async def console_asset(version: str, name: str, request: Request) -> Response:
    """A script or style sheet; immutable under its own version, revalidated under another."""
    assets = _assets(request)
    content = assets.files.get(name)
    if content is None:
        raise HTTPException(status_code=404, detail="no such asset")
    cache = f"public, max-age={_YEAR}, immutable" if version == assets.version else "no-cache"
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    return Response(content, media_type=_TYPES[Path(name).suffix], headers=headers)


@router.get("/ui/{page:path}")
async def console_page(page: str, request: Request) -> Response:
    """The page shell for every console address: the modules draw the page that the path names."""
    return Response(_assets(request).page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)
