"""Download GPT-2 from the Hugging Face hub with the standard library, into the hub's cache.

Files are fetched from `{endpoint}/{repo}/resolve/{revision}/{filename}` and kept in
the cache layout `huggingface_hub` uses, so either tool finds what the other fetched:

    $HF_HOME/hub/models--openai-community--gpt2/
        refs/main                     the commit the branch pointed at (from X-Repo-Commit)
        snapshots/<commit>/config.json
        snapshots/<commit>/model.safetensors

(`huggingface_hub` stores the bytes under `blobs/` and links them from `snapshots/`;
we write plain files into `snapshots/`, which it reads just the same.) A file in
progress is `<name>.incomplete` next to its final place; the next attempt, in this
call or a later one, continues it with an HTTP Range request. A model already in
the cache is used without asking the network.

Settings come from the environment the way `huggingface_hub` reads them, but only
in :meth:`HubSettings.from_env`; the functions take the settings as an argument.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DownloadError, ModelNotFound

# The four published sizes, under their current hub names.
KNOWN_MODELS = {name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # preferred first
CHUNK_BYTES = 1 << 20

# progress(filename, bytes done, bytes total or None)
DownloadProgress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class HubSettings:
    endpoint: str = "https://huggingface.co"
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "huggingface" / "hub")
    offline: bool = False
    attempts: int = 5  # tries per file; each retry resumes where the last one stopped
    timeout_s: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSettings:
        """HF_ENDPOINT, HF_HUB_CACHE or HF_HOME (cache = $HF_HOME/hub), HF_HUB_OFFLINE."""
        env = os.environ if environ is None else environ
        if env.get("HF_HUB_CACHE"):
            cache = Path(env["HF_HUB_CACHE"]).expanduser()
        elif env.get("HF_HOME"):
            cache = Path(env["HF_HOME"]).expanduser() / "hub"
        else:
            cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "huggingface" / "hub"
        offline = env.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
        endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        return cls(endpoint=endpoint, cache_dir=cache, offline=offline)


def repo_id_for(name: str) -> str | None:
    """The hub repository of a known model name (`gpt2` or `openai-community/gpt2`), else None."""
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    if name in KNOWN_MODELS.values():
        return name
    return None


def repo_cache_dir(settings: HubSettings, repo_id: str) -> Path:
    return settings.cache_dir / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(settings: HubSettings, repo_id: str, revision: str = "main") -> Path | None:
    """The cached snapshot directory holding config.json and a weights file, if any."""
    root = repo_cache_dir(settings, repo_id)
    candidates = []
    ref = root / "refs" / revision
    if ref.is_file():
        candidates.append(root / "snapshots" / ref.read_text().strip())
    candidates.append(root / "snapshots" / revision)
    for snapshot in candidates:
        if _is_complete(snapshot):
            return snapshot
    return None


def _is_complete(snapshot: Path) -> bool:
    return (snapshot / "config.json").is_file() and any((snapshot / w).is_file() for w in WEIGHT_FILES)


def download_model(
    repo_id: str,
    settings: HubSettings,
    progress: DownloadProgress | None = None,
    revision: str = "main",
) -> Path:
    """The local snapshot directory of `repo_id`, downloading config and weights if needed."""
    cached = cached_snapshot(settings, repo_id, revision)
    if cached is not None:
        return cached
    if settings.offline:
        raise ModelNotFound(_offline_message(settings, repo_id, revision))
    root = repo_cache_dir(settings, repo_id)
    # config.json is small and served directly, with the commit it came from.
    staging = root / "snapshots" / revision
    try:
        headers = _fetch(settings, repo_id, revision, "config.json", staging, progress)
    except _NotOnHub:
        raise ModelNotFound(f"{settings.endpoint}/{repo_id} (revision {revision}) has no config.json") from None
    commit = headers.get("X-Repo-Commit", "").strip()
    snapshot = staging
    if re.fullmatch(r"[0-9a-f]{40}", commit) and commit != revision:
        snapshot = root / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "config.json", snapshot / "config.json")
        with contextlib.suppress(OSError):
            staging.rmdir()  # only if nothing else (an older download) is in it
        _write_ref(root, revision, commit)
    for i, filename in enumerate(WEIGHT_FILES):
        try:
            _fetch(settings, repo_id, commit or revision, filename, snapshot, progress)
            return snapshot
        except _NotOnHub:
            if i == len(WEIGHT_FILES) - 1:
                raise ModelNotFound(f"{settings.endpoint}/{repo_id} has neither {' nor '.join(WEIGHT_FILES)}") from None
    raise AssertionError("unreachable")


def _offline_message(settings: HubSettings, repo_id: str, revision: str) -> str:
    where = repo_cache_dir(settings, repo_id) / "snapshots" / revision
    return (
        f"{repo_id} is not in the cache and HF_HUB_OFFLINE is set: download config.json and "
        f"model.safetensors from {settings.endpoint}/{repo_id}/tree/{revision} and put them in "
        f"{where}/ (or pass the path of a directory holding them)"
    )


def _write_ref(root: Path, revision: str, commit: str) -> None:
    refs = root / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / revision).write_text(commit)


class _NotOnHub(Exception):
    """404: the repository has no such file (try the next weights format)."""


def _fetch(
    settings: HubSettings,
    repo_id: str,
    revision: str,
    filename: str,
    directory: Path,
    progress: DownloadProgress | None,
) -> http.client.HTTPMessage:
    """Download one file into `directory`, resuming a `.incomplete` part; return the headers."""
    url = f"{settings.endpoint}/{repo_id}/resolve/{revision}/{filename}"
    dest = directory / filename
    part = directory / (filename + ".incomplete")
    last_error: Exception | None = None
    for _ in range(settings.attempts):
        try:
            headers, complete = _fetch_once(url, part, filename, settings.timeout_s, progress)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise _NotOnHub() from None
            if exc.code == 416:  # our part is not a prefix of this file: start over
                part.unlink(missing_ok=True)
                last_error = exc
                continue
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            last_error = exc
            continue
        if complete:
            _verify_sha256(part, headers, url)
            os.replace(part, dest)
            return headers
    if part.exists() and part.stat().st_size:
        raise DownloadError(
            f"{url}: download failed after {settings.attempts} attempts ({_reason(last_error)}); "
            f"run the command again to resume from {part}"
        )
    raise DownloadError(
        f"cannot download {url} ({_reason(last_error)}); to work offline, put config.json and "
        f"model.safetensors in a directory and pass its path"
    )


def _reason(exc: Exception | None) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _fetch_once(
    url: str, part: Path, filename: str, timeout: float, progress: DownloadProgress | None
) -> tuple[http.client.HTTPMessage, bool]:
    """One request: append what arrives to `part`; return (headers, whether it is whole)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "gpt2-weights/0.1"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        total = _total_size(response.headers, have)
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "ab" if have else "wb") as out:
            done = have
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(filename, done, total)
        return response.headers, total is None or done == total


def _total_size(headers: http.client.HTTPMessage, have: int) -> int | None:
    content_range = headers.get("Content-Range", "")
    m = re.match(r"bytes \d+-\d+/(\d+)", content_range)
    if m:
        return int(m.group(1))
    length = headers.get("Content-Length")
    return have + int(length) if length and length.isdigit() else None


def _verify_sha256(path: Path, headers: http.client.HTTPMessage, url: str) -> None:
    """Large files are stored with Git LFS, whose ETag is the file's sha256: check it."""
    etag = headers.get("X-Linked-Etag") or headers.get("ETag") or ""
    etag = etag.removeprefix("W/").strip('"')
    if not re.fullmatch(r"[0-9a-f]{64}", etag):
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != etag:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{url}: downloaded bytes do not match the hub's sha256; removed, run again")
