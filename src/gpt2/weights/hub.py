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

The cache never keeps a bad file: `download.fetch_file` renames a download to its
final name only once it is known whole (see there). Names and revisions become
paths in the cache, so they are checked first: `owner/name`, and a revision of
plain `/`-separated names, never `..`, absolute, or holding a NUL.

Settings come from the environment the way `huggingface_hub` reads them, but only
in :meth:`HubSettings.from_env`; the functions take the settings as an argument.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..config import show_value
from .download import DEADLINE_VARIABLE, DownloadProgress, NotOnHub, Transfer, fetch_file
from .errors import DownloadError, ModelNotFound, with_packaged

# The four published sizes, under their current hub names.
KNOWN_MODELS = {name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # preferred first
DEFAULT_DEADLINE_S = 3600.0

# `owner/name` as the hub spells repositories; a revision is a branch, tag or commit, whose
# `/`-separated parts (`refs/pr/1`) are plain names: never empty, `.`, `..`, absolute or NUL.
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_REPO_ID = re.compile(rf"{_NAME}/{_NAME}")
_REVISION_PART = re.compile(r"[A-Za-z0-9_.-]{1,255}")
# A full commit hash, what `refs/<revision>` holds and `X-Repo-Commit` names: a ref's content is
# used as a folder name only when it matches, so a ref is never a path to follow.
COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubSettings:
    """Where the hub is, where the cache is, and how long to try.

    `timeout_s` bounds each wait for the server (connecting, each read); `deadline_s`
    bounds one file's download, all attempts together (None: no deadline), so a
    server that trickles a byte at a time cannot hold a command for ever. A download
    stopped by the deadline keeps its `.incomplete` part: the next run resumes it.

    >>> HubSettings(endpoint="huggingface.co")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gpt2.weights.errors.DownloadError: the hub endpoint 'huggingface.co' (HF_ENDPOINT) is not an http(s) URL; ...
    """

    endpoint: str = "https://huggingface.co"
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "huggingface" / "hub")
    offline: bool = False
    attempts: int = 5  # tries per file; each retry resumes where the last one stopped
    timeout_s: float = 60.0
    deadline_s: float | None = DEFAULT_DEADLINE_S

    def __post_init__(self) -> None:
        check_endpoint(self.endpoint)
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise DownloadError(f"attempts must be a positive integer, got {show_value(self.attempts)}")
        if not 0 < self.timeout_s < math.inf:
            raise DownloadError(f"timeout_s must be a positive number of seconds, got {show_value(self.timeout_s)}")
        if self.deadline_s is not None and not 0 < self.deadline_s < math.inf:
            raise DownloadError(f"deadline_s must be a positive number of seconds or None, got {self.deadline_s!r}")

    @property
    def transfer(self) -> Transfer:
        """How `download.fetch_file` fetches each file: the attempts, timeout and deadline."""
        return Transfer(attempts=self.attempts, timeout_s=self.timeout_s, deadline_s=self.deadline_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSettings:
        """HF_ENDPOINT, HF_HUB_CACHE or HF_HOME (cache = $HF_HOME/hub), HF_HUB_OFFLINE, and
        GPT2_DOWNLOAD_DEADLINE (seconds per file; `none` for no deadline; default 3600)."""
        env = os.environ if environ is None else environ
        if env.get("HF_HUB_CACHE"):
            cache = Path(env["HF_HUB_CACHE"]).expanduser()
        elif env.get("HF_HOME"):
            cache = Path(env["HF_HOME"]).expanduser() / "hub"
        else:
            cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "huggingface" / "hub"
        offline = env.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
        endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        return cls(
            endpoint=endpoint, cache_dir=cache, offline=offline, deadline_s=_deadline_from(env.get(DEADLINE_VARIABLE))
        )


def _deadline_from(value: str | None) -> float | None:
    if value is None or not value.strip():
        return DEFAULT_DEADLINE_S
    if value.strip().lower() in ("none", "off", "0"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise DownloadError(
            f"{DEADLINE_VARIABLE}={show_value(value)} is not a number of seconds > 0 (or 'none' for no deadline)"
        )
    return seconds


def check_endpoint(endpoint: str) -> str:
    """`endpoint` if it is an http(s) URL with a host (a mirror may add a path), else a DownloadError.

    >>> check_endpoint("http://127.0.0.1:8080/mirror")
    'http://127.0.0.1:8080/mirror'
    """
    bad = DownloadError(
        f"the hub endpoint {show_value(endpoint)} (HF_ENDPOINT) is not an http(s) URL; "
        "expected e.g. https://huggingface.co or a mirror's https://host/path"
    )
    if not isinstance(endpoint, str) or any(c <= " " or c == "\x7f" for c in endpoint):
        raise bad
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise bad
    return endpoint


def check_repo_id(repo_id: str) -> str:
    """`owner/name`, nothing else: the name becomes a folder of the cache.

    >>> check_repo_id("openai-community/gpt2")
    'openai-community/gpt2'
    """
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise ModelNotFound(f"{show_value(repo_id)} is not a hub repository name (expected owner/name)")
    return repo_id


def check_revision(revision: str) -> str:
    """A branch, tag or commit: `/`-separated plain names (it becomes part of a cache path).

    >>> check_revision("refs/pr/1")
    'refs/pr/1'
    >>> check_revision("../../etc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gpt2.weights.errors.ModelNotFound: '../../etc' is not a revision (a branch, tag or commit: ...)
    """
    parts = revision.split("/") if isinstance(revision, str) else [""]
    if not all(_REVISION_PART.fullmatch(p) and p not in (".", "..") for p in parts) or len(parts) > 8:
        raise ModelNotFound(
            f"{show_value(revision)} is not a revision (a branch, tag or commit: names of letters, digits, "
            "'.', '_' and '-', separated by '/', none of them '.' or '..')"
        )
    return revision


def repo_id_for(name: str) -> str | None:
    """The hub repository of a known model name (`gpt2` or `openai-community/gpt2`), else None."""
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    if name in KNOWN_MODELS.values():
        return name
    return None


def repo_cache_dir(settings: HubSettings, repo_id: str) -> Path:
    """The cache folder of one repository: delete it to download that model afresh."""
    return settings.cache_dir / ("models--" + check_repo_id(repo_id).replace("/", "--"))


def read_ref(root: Path, revision: str) -> str | None:
    """The commit hash that refs/<revision> of a cached repository names, or None: absent,
    unreadable, or not a commit hash (a ref is never a path to follow out of the cache).

    >>> read_ref(Path("/nonexistent"), "main") is None
    True
    """
    try:
        commit = (root / "refs" / revision).read_text(encoding="ascii", errors="replace")[:100].strip()
    except OSError:
        return None
    return commit if COMMIT_HASH.fullmatch(commit) else None


def cached_snapshot(settings: HubSettings, repo_id: str, revision: str = "main") -> Path | None:
    """The cached snapshot directory holding config.json and a weights file, if any."""
    root = repo_cache_dir(settings, repo_id)
    commit = read_ref(root, check_revision(revision))
    candidates = [root / "snapshots" / commit] if commit else []
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
    check_repo_id(repo_id)
    check_revision(revision)
    cached = cached_snapshot(settings, repo_id, revision)
    if cached is not None:
        return cached
    if settings.offline:
        raise ModelNotFound(_offline_message(settings, repo_id, revision))
    config_file, commit = _download_config(repo_id, settings, progress, revision)
    snapshot = config_file.parent
    for i, filename in enumerate(WEIGHT_FILES):
        try:
            url = resolve_url(settings, repo_id, commit or revision, filename)
            fetch_file(settings.transfer, url, snapshot, filename, progress)
            return snapshot
        except NotOnHub:
            if i == len(WEIGHT_FILES) - 1:
                raise ModelNotFound(f"{settings.endpoint}/{repo_id} has neither {' nor '.join(WEIGHT_FILES)}") from None
    raise AssertionError("unreachable")


def fetch_config(
    repo_id: str, settings: HubSettings, progress: DownloadProgress | None = None, revision: str = "main"
) -> Path:
    """The path of a hub model's config.json, fetched alone into the hub cache if it is not
    there (the weights are left for `load_model` to download when they are needed)."""
    root = repo_cache_dir(settings, check_repo_id(repo_id))
    candidates = [root / "snapshots" / revision]
    commit = read_ref(root, check_revision(revision))
    if commit:
        candidates.insert(0, root / "snapshots" / commit)
    for snapshot in candidates:
        if (snapshot / "config.json").is_file():
            return snapshot / "config.json"
    if settings.offline:
        raise with_packaged(ModelNotFound(f"{repo_id}'s config.json is not in the cache and HF_HUB_OFFLINE is set"))
    return _download_config(repo_id, settings, progress, revision)[0]


def _download_config(
    repo_id: str, settings: HubSettings, progress: DownloadProgress | None, revision: str
) -> tuple[Path, str]:
    """Fetch config.json (small, served directly, with the commit it came from) into
    `snapshots/<commit>/`, with `refs/<revision>` naming the commit, as `huggingface_hub` keeps
    it; return its path and the commit ("" when the hub named none: then it stays under
    `snapshots/<revision>/`)."""
    root = repo_cache_dir(settings, repo_id)
    staging = root / "snapshots" / revision
    try:
        headers = fetch_file(
            settings.transfer, resolve_url(settings, repo_id, revision, "config.json"), staging, "config.json", progress
        )
    except NotOnHub:
        raise ModelNotFound(f"{settings.endpoint}/{repo_id} (revision {revision}) has no config.json") from None
    commit = headers.get("X-Repo-Commit", "").strip()
    if not (COMMIT_HASH.fullmatch(commit) and commit != revision):
        return staging / "config.json", ""
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    os.replace(staging / "config.json", snapshot / "config.json")
    remove_empty_folders(staging, root / "snapshots")
    write_ref(root, revision, commit)
    return snapshot / "config.json", commit


def resolve_url(settings: HubSettings, repo_id: str, revision: str, filename: str) -> str:
    """The hub's download URL of one file of a repository at a revision (a branch, tag or commit).

    The revision is one segment of the URL's path, so its `/` are escaped:

    >>> resolve_url(HubSettings(), "openai-community/gpt2", "refs/pr/1", "config.json")
    'https://huggingface.co/openai-community/gpt2/resolve/refs%2Fpr%2F1/config.json'
    """
    return f"{settings.endpoint}/{repo_id}/resolve/{urllib.parse.quote(revision, safe='')}/{filename}"


def _offline_message(settings: HubSettings, repo_id: str, revision: str) -> str:
    where = repo_cache_dir(settings, repo_id) / "snapshots" / revision
    return (
        f"{repo_id} is not in the cache and HF_HUB_OFFLINE is set: download config.json and "
        f"model.safetensors from {settings.endpoint}/{repo_id}/tree/{revision} and put them in "
        f"{where}/ (or pass the path of a directory holding them)"
    )


def remove_empty_folders(folder: Path, stop: Path) -> None:
    """Remove `folder` and its parents up to `stop` (never `stop` itself) while they are empty.

    A download for a revision with `/` in it stages under `snapshots/refs/pr/1/`; once its
    file has moved to `snapshots/<commit>/`, this clears the empty `1/`, `pr/` and `refs/`.
    A folder that is not empty, or not under `stop`, is left alone.
    """
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: something else (an older download) is in it
        folder = folder.parent


def write_ref(root: Path, revision: str, commit: str) -> None:
    """Record in the repository's cache folder `root` that `revision` names `commit`, as
    `huggingface_hub` does: `root/refs/<revision>` holds the hash, written atomically."""
    ref = root / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(ref, commit.encode("ascii"))
