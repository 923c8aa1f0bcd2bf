"""A minimal in-memory Hugging Face Hub for tests: just the HTTP API `huggingface_hub` and `transformers` use.

Nothing here talks to huggingface.co. Served (model, dataset and space repos alike):

- `POST /api/repos/create`                                  create_repo (409 when it exists)
- `POST /api/validate-yaml`                                 README metadata check done before uploads
- `GET  /api/{type}s/{repo_id}[/revision/{rev}]`            repo_info / model_info (sha, siblings, cardData)
- `GET  /api/{type}s/{repo_id}/tree/{rev}[/{path}]`         list_repo_tree / list_repo_files (`recursive`)
- `POST /api/{type}s/{repo_id}/preupload/{rev}`             always answers `uploadMode: "regular"`
- `POST /api/{type}s/{repo_id}/commit/{rev}`                NDJSON commit with base64 file contents
- `HEAD|GET /[{type}s/]{repo_id}/resolve/{rev}/{path}`      hf_hub_download (ETag, X-Repo-Commit, Content-Length)

Preupload answers "regular" for every file, `.safetensors` included, so the client sends contents base64
inline in the commit and never starts an LFS or Xet transfer (`huggingface_hub` accepts that for any size).
Errors carry the `X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) that the
client maps to its exception classes. Writes need `Authorization: Bearer <token>`; reads of private repos
too. Setting `fail_all` makes every request answer HTTP 500, to test failure handling.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

DEFAULT_NAMESPACE = "user"  # owner of repos created without an organization, like the token's user on the Hub
# Content of the first commit of a new repo, as on the Hub (abridged).
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_TYPE = r"(?P<type>models|datasets|spaces)"
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_CARD_YAML = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


class HubHTTPError(Exception):
    """An error answer: status, optional `X-Error-Code`, and a message for the JSON body."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob: what the Hub reports as a regular file's `oid` and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now_iso() -> str:
    # The client parses exactly this shape ('%Y-%m-%dT%H:%M:%S.%fZ').
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Commit:
    """One commit: its id and the full snapshot of the repo's files at that commit."""

    oid: str
    files: dict[str, bytes]
    date: str


@dataclass
class Repo:
    """A repo: commits by id and branches pointing at them."""

    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        """The commit a branch name or commit id points at, or a `RevisionNotFound` error."""
        commit = self.commits.get(self.branches.get(revision, revision))
        if commit is None:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def add_commit(self, branch: str, files: dict[str, bytes], message: str) -> Commit:
        """Store a snapshot as a new commit on top of `branch` and move the branch to it."""
        seed = f"{self.repo_id}\0{self.branches.get(branch)}\0{message}\0{time.time_ns()}"
        oid = hashlib.sha1(seed.encode()).hexdigest()  # 40 hex digits, as the client's commit-id regex needs
        commit = Commit(oid=oid, files=dict(files), date=_now_iso())
        self.commits[oid] = commit
        self.branches[branch] = oid
        return commit


class HubServer:
    """The in-memory Hub, served on 127.0.0.1 on a free port from a background thread.

    Use as a context manager, or call `start()` and `stop()`. `url` is the value for `HF_ENDPOINT`.
    """

    def __init__(self, token: str = "dummy") -> None:
        self.token = token
        self.fail_all = False
        self.requests: list[str] = []  # "METHOD /path" of every request, for assertions
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self  # type: ignore[attr-defined]  # read by the handler
        # A short poll interval keeps stop() (which waits for the serving loop to notice) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"

    def start(self) -> HubServer:
        """Start serving in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def repo(self, repo_type: str, repo_id: str, authorized: bool) -> Repo:
        """A stored repo; private ones are hidden from unauthorized readers, as on the Hub."""
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def repo_url(self, repo: Repo) -> str:
        """The web URL of a repo (`create_repo` parses it)."""
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.url}/{prefix}{repo.repo_id}"


@dataclass
class _Request:
    """What a route handler gets: the matched URL parts, query, JSON/NDJSON body and auth state."""

    groups: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    authorized: bool

    def repo(self, hub: HubServer) -> Repo:
        return hub.repo(REPO_TYPES[self.groups.get("type") or "models"], self.groups["repo"], self.authorized)

    @property
    def revision(self) -> str:
        return unquote(self.groups["rev"])  # the client quotes revisions with safe="" ("refs%2Fpr%2F1")

    @property
    def path(self) -> str:
        return unquote(self.groups.get("path") or "")

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[0].lower() in ("1", "true")


# A route handler answers (status, headers, body); a dict or list body is sent as JSON.
_Answer = tuple[int, dict[str, str], Any]


def _require_write(request: _Request) -> None:
    if not request.authorized:
        # This exact message makes the client report a bad token instead of "repository not found".
        raise HubHTTPError(401, "Invalid credentials in Authorization header")


def _create_repo(hub: HubServer, request: _Request) -> _Answer:
    _require_write(request)
    payload = json.loads(request.body)
    repo_id = f"{payload.get('organization') or DEFAULT_NAMESPACE}/{payload['name']}"
    key = (payload.get("type") or "model", repo_id)
    if key in hub.repos:
        return (
            409,
            {},
            {"error": f"You already created this {key[0]} repo", "url": hub.repo_url(hub.repos[key])},
        )
    # Recent huggingface_hub clients (2.x) send "visibility": "private"|"public"; older ones "private": bool.
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    repo = Repo(repo_id=repo_id, repo_type=key[0], private=private)
    repo.add_commit("main", {".gitattributes": GITATTRIBUTES}, "initial commit")
    hub.repos[key] = repo
    return 200, {}, {"url": hub.repo_url(repo), "name": repo_id}


def _validate_yaml(hub: HubServer, request: _Request) -> _Answer:
    try:
        _card_metadata(json.loads(request.body)["content"].encode())
    except yaml.YAMLError as err:
        return 400, {}, {"errors": [{"message": f"Invalid YAML in README.md: {err}"}], "warnings": []}
    return 200, {}, {"errors": [], "warnings": []}


def _card_metadata(readme: bytes | None) -> dict[str, Any]:
    match = _CARD_YAML.match(readme.decode()) if readme else None
    return (yaml.safe_load(match.group(1)) or {}) if match else {}


def _repo_info(hub: HubServer, request: _Request) -> _Answer:
    repo = request.repo(hub)
    commit = repo.resolve(request.revision if request.groups.get("rev") else "main")
    card = _card_metadata(commit.files.get("README.md"))
    info = {
        "id": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": commit.oid,
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "lastModified": commit.date,
        "tags": card.get("tags", []),
        "library_name": card.get("library_name"),
        "cardData": card,
        "siblings": [{"rfilename": path} for path in sorted(commit.files)],
    }
    return 200, {}, info


def _tree(hub: HubServer, request: _Request) -> _Answer:
    commit = request.repo(hub).resolve(request.revision)
    folder = request.path.strip("/")
    entries = _tree_entries(commit.files, folder, recursive=request.flag("recursive"))
    if folder and not entries:
        raise HubHTTPError(404, f"{folder} does not exist on {request.revision}", "EntryNotFound")
    return 200, {}, entries


def _tree_entries(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict[str, Any]]:
    """Files and folders under `folder`: direct children, or everything below with `recursive`."""
    prefix = f"{folder}/" if folder else ""
    folders: set[str] = set()
    entries = []
    for path in sorted(p for p in files if p.startswith(prefix)):
        parts = path[len(prefix) :].split("/")
        depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
        folders.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        if recursive or len(parts) == 1:
            data = files[path]
            entries.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path})
    # Folders get a stable stand-in for a git tree id.
    entries += [
        {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        for path in sorted(folders)
    ]
    return entries


def _preupload(hub: HubServer, request: _Request) -> _Answer:
    _require_write(request)
    commit = request.repo(hub).resolve(request.revision)
    answers = []
    for item in json.loads(request.body)["files"]:
        current = commit.files.get(item["path"])
        # The remote oid lets the client skip files that did not change (no empty commits).
        oid = git_blob_sha1(current) if current is not None else None
        answers.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
    return 200, {}, {"files": answers}


def _commit(hub: HubServer, request: _Request) -> _Answer:
    _require_write(request)
    repo = request.repo(hub)
    branch = request.revision
    files = dict(repo.resolve(branch).files)
    lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
    summary = next((line["value"].get("summary", "") for line in lines if line["key"] == "header"), "")
    for line in lines:
        _apply_operation(files, line["key"], line["value"])
    commit = repo.add_commit(branch, files, summary)
    url = f"{hub.repo_url(repo)}/commit/{commit.oid}"
    return 200, {}, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None}


def _apply_operation(files: dict[str, bytes], key: str, value: dict[str, Any]) -> None:
    """Apply one NDJSON commit operation to a snapshot."""
    if key == "file":
        content = value["content"]
        files[value["path"]] = (
            base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
        )
    elif key == "deletedFile":
        files.pop(value["path"], None)
    elif key == "deletedFolder":
        prefix = value["path"].rstrip("/") + "/"
        for path in [p for p in files if p.startswith(prefix)]:
            del files[path]
    elif key == "lfsFile":
        raise HubHTTPError(400, "This test Hub stores no LFS objects: preupload only answers 'regular'.")
    elif key != "header":
        raise HubHTTPError(400, f"Unknown commit operation {key!r}")


def _resolve(hub: HubServer, request: _Request) -> _Answer:
    commit = request.repo(hub).resolve(request.revision)
    data = commit.files.get(request.path)
    if data is None:
        # X-Repo-Commit on the 404 lets the client cache the file's absence for this commit.
        message = f"{request.path} does not exist on {request.revision}"
        raise HubHTTPError(404, message, "EntryNotFound", {"X-Repo-Commit": commit.oid})
    headers = {
        "ETag": f'"{git_blob_sha1(data)}"',
        "X-Repo-Commit": commit.oid,
        "Content-Type": "application/octet-stream",
    }
    return 200, headers, data


_RouteHandler = Callable[[HubServer, _Request], _Answer]
_ROUTES: list[tuple[str, re.Pattern[str], _RouteHandler]] = [
    ("POST", re.compile(r"/api/repos/create"), _create_repo),
    ("POST", re.compile(r"/api/validate-yaml"), _validate_yaml),
    ("GET", re.compile(rf"/api/{_TYPE}/{_REPO}(?:/revision/(?P<rev>[^/]+))?"), _repo_info),
    ("GET", re.compile(rf"/api/{_TYPE}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), _tree),
    ("POST", re.compile(rf"/api/{_TYPE}/{_REPO}/preupload/(?P<rev>[^/]+)"), _preupload),
    ("POST", re.compile(rf"/api/{_TYPE}/{_REPO}/commit/(?P<rev>[^/]+)"), _commit),
    ("GET", re.compile(rf"/(?:{_TYPE}/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), _resolve),
]


class _Handler(BaseHTTPRequestHandler):
    """Routes every request through `_ROUTES`; HEAD is answered like GET without a body."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log; requests are recorded in `hub.requests` instead."""

    def _handle(self, method: str) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        # Always read the body so that the next request on this keep-alive connection starts clean.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        hub.requests.append(f"{self.command} {url.path}")
        try:
            if hub.fail_all:
                raise HubHTTPError(500, "Internal Error - the test Hub is in fail_all mode")
            status, headers, payload = self._dispatch(hub, method, url.path, parse_qs(url.query), body)
        except HubHTTPError as err:
            status, payload = err.status, {"error": str(err)}
            headers = {**err.headers, "X-Error-Message": str(err)}
            if err.code:
                headers["X-Error-Code"] = err.code
        self._send(status, headers, payload)

    def _dispatch(
        self, hub: HubServer, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> _Answer:
        authorized = self.headers.get("Authorization") == f"Bearer {hub.token}"
        for route_method, pattern, handler in _ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                groups = {k: v for k, v in match.groupdict().items() if v is not None}
                with hub.lock:  # one request at a time touches the repos
                    return handler(hub, _Request(groups, query, body, authorized))
        raise HubHTTPError(404, f"No route for {method} {path}")

    def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        if not isinstance(payload, bytes):
            self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
