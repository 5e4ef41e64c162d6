"""Where a task's image comes from, by the rules Label Studio's ML backends follow.

- `http://` / `https://` URLs are fetched as they are (with the Label Studio token only when
  the host is LABEL_STUDIO_URL's);
- Label Studio's own URLs (`/data/upload/...`, `/data/local-files/?d=...`,
  `/storage-data/uploaded/?filepath=...`, `upload/...`) are fetched from LABEL_STUDIO_URL with
  LABEL_STUDIO_API_KEY: a personal access token (a JWT, exchanged at /api/token/refresh/ for
  an access token) or a legacy token;
- a local path (or `file://` URL) is read only when it lies under one of the allowed folders
  (`--allow-dir`, links resolved); nothing else on disk is ever read.

Every download is bounded in bytes and time; a failure is an `InputError` (LimitError when too
large) whose one line names the URL.
"""

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote, urljoin, urlparse

from ..data.images import InputError, LimitError
from ..demo.session import sizes
from ..limits import FETCH_DEADLINE_S

LS_PREFIXES = ("/data/", "/storage-data/", "data/upload/", "upload/", "/upload/")
TIMEOUT_S = 30.0  # per network operation (connect, each read)
DEADLINE_S = FETCH_DEADLINE_S  # a whole download, however slowly it trickles in


class AccessError(InputError):
    """A local path outside the allowed folders (HTTP 403)."""


@dataclass(frozen=True)
class Source:
    """A resolved image source: `key` identifies the content for the embedding cache."""

    key: str
    url: Optional[str] = None  # absolute http(s) URL
    path: Optional[Path] = None  # allowed local file
    auth: bool = False  # send Label Studio's token


def is_jwt(token: str) -> bool:
    """A personal access token (JWT: three base64url parts) rather than a legacy token."""
    return token.count(".") == 2 and all(token.split("."))


class ImageFetcher:
    """Resolves and reads task images (see the module doc)."""

    def __init__(self, label_studio_url: str = "", api_key: str = "", allow_dirs: Sequence[str] = (),
                 max_bytes: int = 20_000_000, timeout: float = TIMEOUT_S, deadline: float = DEADLINE_S):
        self.base = label_studio_url.strip().rstrip("/")
        if self.base and urlparse(self.base).scheme not in ("http", "https"):
            raise ValueError(f"LABEL_STUDIO_URL must start with http:// or https://, got {label_studio_url!r}")
        self.api_key = api_key.strip()
        self.allow_dirs = tuple(Path(os.path.realpath(d)) for d in allow_dirs)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.deadline = deadline
        self._access: Optional[str] = None  # access token from a personal access token
        self._lock = threading.Lock()
        self._client = None

    @classmethod
    def from_env(cls, allow_dirs: Sequence[str] = (), max_bytes: int = 20_000_000) -> "ImageFetcher":
        """LABEL_STUDIO_URL (or LABEL_STUDIO_HOST) and LABEL_STUDIO_API_KEY from the environment."""
        env = os.environ
        return cls(env.get("LABEL_STUDIO_URL") or env.get("LABEL_STUDIO_HOST") or "",
                   env.get("LABEL_STUDIO_API_KEY") or "", allow_dirs, max_bytes)

    @property
    def client(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout, follow_redirects=True)
        return self._client

    def resolve(self, value: object) -> Source:
        """A task's image value -> Source, or InputError / AccessError saying why it cannot be used."""
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"the task's image is not a URL or path: {str(value)[:80]!r}")
        value = value.strip()
        scheme = urlparse(value).scheme.lower()
        if scheme in ("http", "https"):
            return Source(value, url=value, auth=bool(self.base) and self._same_host(value))
        if value.startswith(LS_PREFIXES):
            if not self.base:
                raise InputError(f"{value[:120]} is a Label Studio file: start the backend with LABEL_STUDIO_URL "
                                 "and LABEL_STUDIO_API_KEY set so it can fetch it")
            path = "/data/" + value.lstrip("/") if value.lstrip("/").startswith("upload/") else value
            url = urljoin(self.base + "/", path.lstrip("/"))
            return Source(url, url=url, auth=True)
        if scheme == "file":
            value = unquote(urlparse(value).path)
        elif scheme and len(scheme) > 1:  # s3://, gs://, data:, ... (a one-letter scheme is a Windows drive)
            raise InputError(f"unsupported image URL {value[:120]!r}: give an http(s) URL, a Label Studio "
                             "upload or local-files URL, or a path under --allow-dir")
        return self._local(value)

    def _same_host(self, url: str) -> bool:
        return urlparse(url).netloc.lower() == urlparse(self.base).netloc.lower()

    def _local(self, value: str) -> Source:
        real = Path(os.path.realpath(value))
        if not any(real == d or d in real.parents for d in self.allow_dirs):
            where = ", ".join(map(str, self.allow_dirs)) or "none given"
            raise AccessError(f"local path {value[:120]} is not under an allowed folder (--allow-dir: {where})")
        try:
            stat = real.stat()
        except OSError:
            raise InputError(f"local path {value[:120]}: no such file") from None
        if not real.is_file():
            raise InputError(f"local path {value[:120]}: not a file")
        return Source(f"{real}:{stat.st_mtime_ns}:{stat.st_size}", path=real)

    def read(self, source: Source, cancel: Optional[threading.Event] = None) -> bytes:
        """The bytes of a resolved source (at most max_bytes, within `deadline` seconds; a set
        `cancel` event, the client gone, abandons a download)."""
        if source.path is not None:
            size = source.path.stat().st_size
            if size > self.max_bytes:
                raise self._too_large(str(source.path), size)
            return source.path.read_bytes()
        return self._download(source.url, source.auth, cancel)

    def _too_large(self, what: str, size: int, exact: bool = True) -> LimitError:
        if exact:
            size_text, limit = sizes(size, self.max_bytes)
            return LimitError(f"image {what[:120]} is {size_text}; the limit is {limit} (--max-bytes)")
        return LimitError(f"image {what[:120]} is over the limit of {sizes(size, self.max_bytes)[1]} (--max-bytes)")

    def _headers(self, refresh: bool = False) -> dict:
        if not self.api_key:
            raise InputError("Label Studio files need LABEL_STUDIO_API_KEY (Account & Settings > "
                             "Personal Access Token) in the backend's environment")
        if not is_jwt(self.api_key):
            return {"Authorization": f"Token {self.api_key}"}
        with self._lock:
            if self._access is None or refresh:
                self._access = self._exchange()
            return {"Authorization": f"Bearer {self._access}"}

    def _exchange(self) -> str:
        """A personal access token (a refresh token) -> a short-lived access token."""
        import httpx

        try:
            r = self.client.post(f"{self.base}/api/token/refresh/", json={"refresh": self.api_key})
        except httpx.HTTPError as e:
            raise InputError(f"cannot reach Label Studio at {self.base} ({type(e).__name__})") from None
        if r.status_code != 200 or "access" not in r.json():
            raise InputError(f"Label Studio refused LABEL_STUDIO_API_KEY (HTTP {r.status_code} from "
                             "/api/token/refresh/): give a valid personal access token")
        return r.json()["access"]

    def _download(self, url: str, auth: bool, cancel: Optional[threading.Event] = None) -> bytes:
        import httpx

        end = time.monotonic() + self.deadline
        for attempt in range(2):
            headers = self._headers(refresh=attempt > 0) if auth else {}
            try:
                with self.client.stream("GET", url, headers=headers) as r:
                    if r.status_code == 401 and auth and attempt == 0 and is_jwt(self.api_key):
                        continue  # the access token expired: exchange the personal token again
                    if r.status_code != 200:
                        raise InputError(f"image {url[:120]} cannot be fetched: HTTP {r.status_code} "
                                         f"{r.reason_phrase}")
                    declared = r.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise self._too_large(url, int(declared))
                    chunks, size = [], 0
                    for chunk in r.iter_bytes():
                        if cancel is not None and cancel.is_set():
                            raise InputError(f"image {url[:120]}: the download was abandoned (the client went away)")
                        if time.monotonic() > end:
                            raise InputError(f"image {url[:120]} took longer than {self.deadline:g} s to fetch "
                                             f"({size} bytes so far)")
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise self._too_large(url, size, exact=False)
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as e:
                reason = str(e).splitlines()[0][:80] if str(e) else ""
                raise InputError(f"image {url[:120]} cannot be fetched ({type(e).__name__}: {reason})") from None
        raise InputError(f"image {url[:120]}: Label Studio refused the access token (HTTP 401)")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

