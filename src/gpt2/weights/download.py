"""Fetch one file of the hub into the cache, and rename it to its final name only once it is
known whole: the cache never keeps a bad file.

    fetch_file(settings.transfer, url, directory, "model.safetensors", progress)

It knows nothing of the hub's names or cache: how long and how often to try is a small value,
:class:`Transfer`, that `hub.HubSettings.transfer` hands it (so this module does not import hub).

What "known whole" means, and what each check stops:

- the size: what Content-Range, Content-Length and the hub's X-Linked-Size announced
  (a connection cut before the end);
- the sha256 the hub gives for large (Git LFS) files, as X-Linked-Etag on its redirect
  to storage, or an ETag of 64 hex digits (a corrupted or substituted file);
- that the file parses as its name says: JSON for config.json, a safetensors header
  whose tensors tile the data area to the last byte, a zip with its central directory
  (a cut connection that announced no length; an HTML page served as the file);
- an HTML Content-Type is refused at once (a captive portal or a proxy's page);
- a 206 answer must start at the byte asked for (a proxy that sends from byte 0 would
  otherwise be appended after the part already here);
- one deadline bounds the whole download, all attempts together (a server that
  trickles a byte at a time never trips a per-read timeout).

A file in progress is `<name>.incomplete` beside its final place; a dropped
connection is resumed with a Range request, in this call or a later one. A file
that fails a check is deleted, never kept as a part to resume.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..config import MAX_CONFIG_BYTES, show_value
from .errors import DownloadError, HubUnreachable, SafetensorsError, TorchBinError

CHUNK_BYTES = 1 << 20
DEADLINE_VARIABLE = "GPT2_DOWNLOAD_DEADLINE"
_SHA256 = re.compile(r"[0-9a-f]{64}")

# progress(filename, bytes done, bytes total or None)
DownloadProgress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class Transfer:
    """How one file is fetched: `attempts` tries (each resumes where the last stopped), `timeout_s`
    for each wait on the server, `deadline_s` for the whole file, all attempts together (None: none).
    `hub.HubSettings` checks the values and builds this one.

    >>> Transfer(attempts=2, timeout_s=5.0, deadline_s=None).attempts
    2
    """

    attempts: int = 5
    timeout_s: float = 60.0
    deadline_s: float | None = 3600.0


class NotOnHub(Exception):
    """404: the repository has no such file (try the next weights format)."""


class _Retry(Exception):
    """This attempt failed; a fresh one from the first byte may succeed (the reason is the message)."""


class _Refuse(Exception):
    """What arrived is not the file and never will be (an HTML page): stop trying."""


class _DeadlinePassed(Exception):
    pass


@dataclass
class _Attempt:
    headers: http.client.HTTPMessage
    redirects: list[http.client.HTTPMessage]
    done: int
    total: int | None


def fetch_file(
    settings: Transfer,
    url: str,
    directory: Path,
    filename: str,
    progress: DownloadProgress | None,
) -> http.client.HTTPMessage:
    """Download `url` into `directory/filename`, resuming a `.incomplete` part; return the
    headers. The file gets its final name only once `_check_whole` accepts it; a 404 is
    `NotOnHub`, every other failure a `DownloadError` that says whether anything was kept."""
    dest = directory / filename
    part = directory / (filename + ".incomplete")
    deadline = None if settings.deadline_s is None else time.monotonic() + settings.deadline_s
    last_error: str | None = None
    for _ in range(settings.attempts):
        try:
            attempt = _fetch_once(url, part, filename, settings, deadline, progress)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotOnHub() from None
            if exc.code == 416:  # our part is not a prefix of this file: start over
                part.unlink(missing_ok=True)
                last_error = "HTTP 416: the partial download does not fit the file"
                continue
            if exc.code in (408, 429) or exc.code >= 500:  # the server may recover
                last_error = f"HTTP {exc.code} {exc.reason}"
                continue
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except _DeadlinePassed:
            raise DownloadError(_deadline_message(url, part, settings)) from None
        except _Retry as exc:
            last_error = str(exc)
            continue
        except _Refuse as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: {exc}; nothing was saved in the cache") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            last_error = _reason(exc)
            continue
        if attempt.total is not None and attempt.done < attempt.total:
            last_error = f"the connection closed after {attempt.done:,} of {attempt.total:,} bytes"
            continue  # the next attempt resumes from here
        problem = _check_whole(part, attempt, filename)
        if problem is None:
            os.replace(part, dest)
            return attempt.headers
        part.unlink(missing_ok=True)  # never keep a bad file, not even as a part to resume
        last_error = problem
    if deadline is not None and time.monotonic() >= deadline:
        raise DownloadError(_deadline_message(url, part, settings))
    if part.exists() and part.stat().st_size:
        raise DownloadError(
            f"{url}: download failed after {settings.attempts} attempts ({last_error}); "
            f"run the command again to resume from {part}"
        )
    raise HubUnreachable(
        f"cannot download {url} ({last_error}); nothing was saved in the cache; to work offline, "
        "put config.json and model.safetensors in a directory and pass its path"
    )


def _deadline_message(url: str, part: Path, settings: Transfer) -> str:
    have = part.stat().st_size if part.exists() else 0
    kept = f"; the {have:,} bytes received are kept in {part} and the next run resumes them" if have else ""
    return (
        f"{url}: not finished within the {settings.deadline_s:g} s deadline (set {DEADLINE_VARIABLE}, "
        f"in seconds, to allow longer){kept}"
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
    """Keeps the headers of each redirect: the hub's 302 to its storage carries the
    large file's sha256 (X-Linked-Etag) and size (X-Linked-Size); the storage's own
    answer need not."""

    def __init__(self) -> None:
        self.seen: list[http.client.HTTPMessage] = []

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        self.seen.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch_once(
    url: str,
    part: Path,
    filename: str,
    settings: Transfer,
    deadline: float | None,
    progress: DownloadProgress | None,
) -> _Attempt:
    """One request: append what arrives to `part` (or start it afresh)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "gpt2-weights/0.1", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    redirects = _RecordRedirects()
    opener = urllib.request.build_opener(redirects)
    timeout = settings.timeout_s
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed()
        timeout = min(timeout, left)
    with opener.open(request, timeout=timeout) as response:
        if _is_html(response.headers) and not filename.endswith(".html"):
            raise _Refuse(
                "the server answered with an HTML page instead of the file (a captive portal, or a proxy's "
                "login or error page?)"
            )
        have, total = _resume_point(response, have, part)
        part.parent.mkdir(parents=True, exist_ok=True)
        done = have
        limit = MAX_CONFIG_BYTES if filename.endswith(".json") else None
        read = getattr(response, "read1", response.read)  # read1: http(s); a redirect may lead elsewhere
        with open(part, "ab" if have else "wb") as out:
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    raise _DeadlinePassed()
                # read1: return what one read of the socket gives, so that a trickle still
                # comes back here to look at the clock (read(n) would wait for all n bytes).
                chunk = read(CHUNK_BYTES)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if limit is not None and done > limit:
                    raise _Refuse(f"more than {limit:,} bytes for a {filename}; that is not a config file")
                if progress is not None:
                    progress(filename, done, total)
        return _Attempt(response.headers, redirects.seen, done, total)


def _is_html(headers: http.client.HTTPMessage) -> bool:
    return headers.get_content_type() in ("text/html", "application/xhtml+xml")


def _resume_point(response: http.client.HTTPResponse, have: int, part: Path) -> tuple[int, int | None]:
    """Where this response's bytes go in the file, and the file's total size if known.

    A 206 must answer the range asked for: a proxy that sends from byte 0 (or from
    anywhere else) with 206 would otherwise be appended after the part we have."""
    headers = response.headers
    if response.status == 206:
        m = re.fullmatch(r"bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)", headers.get("Content-Range", "").strip())
        start = int(m.group(1)) if m else -1
        if m is None or start not in (have, 0):
            part.unlink(missing_ok=True)
            raise _Retry(
                f"the server answered a request for bytes {have}- with Content-Range "
                f"{show_value(headers.get('Content-Range'))}; starting over"
            )
        total = None if m.group(3) == "*" else int(m.group(3))
        return start, total  # start == 0: the whole file again, written afresh
    length = headers.get("Content-Length", "")
    return 0, int(length) if length.isdigit() and len(length) < 20 else None


def _check_whole(part: Path, attempt: _Attempt, filename: str) -> str | None:
    """Why `part` is not the whole, right file (None: it is). Checked: the size against
    what every header announced, the sha256 the hub gives for large files, and that
    the file parses as its name says (which also catches a cut connection that
    announced no length)."""
    size = part.stat().st_size
    headers = [*attempt.redirects, attempt.headers]
    for h in headers:
        linked = h.get("X-Linked-Size", "")
        if linked.isdigit() and len(linked) < 20 and int(linked) != size:
            return f"received {size:,} bytes but the hub says the file has {int(linked):,}"
    if attempt.total is not None and size != attempt.total:
        return f"received {size:,} bytes but the server announced {attempt.total:,}"
    sha256 = _announced_sha256(headers)
    if sha256 is not None and _sha256_of(part) != sha256:
        return "the downloaded bytes do not match the hub's sha256"
    return _check_format(part, filename)


def _announced_sha256(headers: list[http.client.HTTPMessage]) -> str | None:
    """The hub's sha256 of a large (LFS) file: X-Linked-Etag on its redirect, or an ETag
    of 64 hex digits (a small file's ETag is a git hash of 40: not a sha256)."""
    for name in ("X-Linked-Etag", "ETag"):
        for h in headers:
            etag = (h.get(name) or "").strip().removeprefix("W/").strip('"')
            if _SHA256.fullmatch(etag):
                return etag
    return None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _check_format(path: Path, filename: str) -> str | None:
    """The file parses as what its name says (the part of each format that proves it whole)."""
    from .safetensors import read_header
    from .torch_bin import check_container  # no torch needed: the zip's directory is read by zipfile

    try:
        if filename.endswith(".json"):
            data = json.loads(path.read_bytes().decode("utf-8"))
            if not isinstance(data, dict):
                return f"{filename} is not a JSON object"
        elif filename.endswith(".safetensors"):
            read_header(path)  # the header parses and the tensors tile the data area to the last byte
        elif filename.endswith(".bin"):
            check_container(path)
    except (SafetensorsError, TorchBinError) as exc:  # (before ValueError: they are ValueErrors too)
        return f"{filename} is damaged or incomplete ({str(exc).removeprefix(str(path) + ': ')})"
    except (ValueError, RecursionError) as exc:  # JSON, UTF-8
        return f"{filename} is not valid JSON ({type(exc).__name__})"
    except OSError as exc:
        return f"cannot read the downloaded {filename}: {exc.strerror or exc}"
    return None
