"""A fake Hugging Face Hub for the push tests: a real HTTP server on loopback, started by the test.

This machine has no network, so the upload path is tested against this stand-in, which answers the
endpoints ``huggingface_hub`` calls for ``model_info``, ``create_repo`` and ``upload_folder``: model info,
repository creation, README metadata validation, pre-upload (which files go through LFS), the LFS batch API
with a basic PUT transfer (the way a safetensors file travels when Xet is off), and the NDJSON commit. It keeps
every request (method, path, headers) and the committed files in memory, and writes nothing to disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


@dataclass
class FakeHub:
    token: str
    url: str = ""
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content received by PUT
    fail_commit: int | None = None  # answer the commit with this status instead


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # ---------------------------------------------------------------------------------------------- plumbing

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, data: Any = None, headers: dict[str, str] | None = None) -> None:
        body = b"" if data is None else json.dumps(data).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _record(self) -> None:
        self.hub.requests.append(
            Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        )

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.hub.token}":
            return True
        self._send(
            401,
            {"error": "Invalid credentials in Authorization header"},
            {"X-Error-Message": "Invalid credentials in Authorization header"},
        )
        return False

    # ------------------------------------------------------------------------------------------------ routes

    def do_HEAD(self) -> None:
        self._record()
        self._send(200)

    def do_GET(self) -> None:
        self._record()
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) == 4:
            if not self._authorized():
                return
            repo_id = "/".join(parts[2:])
            repo = self.hub.repos.get(repo_id)
            if repo is None:
                self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return
            sha = repo.commits[-1] if repo.commits else "0" * 40
            siblings = [{"rfilename": name} for name in sorted(repo.files)]
            self._send(200, {"id": repo_id, "private": repo.private, "sha": sha, "siblings": siblings})
            return
        self._send(404, {"error": "not found"})

    def do_PUT(self) -> None:
        self._record()
        parts = self.path.strip("/").split("/")
        body = self._body()
        if parts[0] == "lfs-upload" and hashlib.sha256(body).hexdigest() == parts[1]:
            self.hub.lfs[parts[1]] = body
            self._send(200, {})
        else:
            self._send(400, {"error": "bad upload"})

    def do_POST(self) -> None:
        self._record()
        path = self.path.split("?")[0].strip("/")
        body = self._body()
        if not self._authorized():
            return
        parts = path.split("/")
        if path == "api/repos/create":
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}"
            if repo_id in self.hub.repos:
                self._send(409, {"error": "You already created this model repo"})
                return
            self.hub.repos[repo_id] = Repo(private=payload.get("visibility", "public") == "private")
            self._send(200, {"url": f"{self.hub.url}/{repo_id}"})
        elif path == "api/validate-yaml":
            self._validate_yaml(json.loads(body)["content"])
        elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "preupload":
            files = json.loads(body)["files"]
            modes = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                    "shouldIgnore": False,
                }
                for f in files
            ]
            self._send(200, {"files": modes, "commitOid": "0" * 40})
        elif path.endswith(".git/info/lfs/objects/batch"):
            objects = [
                {
                    "oid": o["oid"],
                    "size": o["size"],
                    "actions": {"upload": {"href": f"{self.hub.url}/lfs-upload/{o['oid']}"}},
                }
                for o in json.loads(body)["objects"]
            ]
            self._send(200, {"transfer": "basic", "objects": objects})
        elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "commit":
            self._commit("/".join(parts[2:4]), body)
        else:
            self._send(404, {"error": "not found"})

    def _validate_yaml(self, content: str) -> None:
        import yaml

        try:
            meta = yaml.safe_load(content.split("---")[1])
            assert isinstance(meta, dict)
        except Exception as err:
            self._send(400, {"errors": [{"message": f"invalid YAML: {err}"}]})
            return
        self._send(200, {"errors": [], "warnings": []})

    def _commit(self, repo_id: str, body: bytes) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return
        if self.hub.fail_commit is not None:
            self._send(self.hub.fail_commit, {"error": "commit refused"})
            return
        files: dict[str, bytes] = {}
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                files[value["path"]] = self.hub.lfs[value["oid"]]
        repo.files.update(files)  # one commit: all of it or (on an error above) none
        oid = hashlib.sha1(body).hexdigest()
        repo.commits.append(oid)
        self._send(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{oid}", "commitOid": oid})


@contextmanager
def fake_hub(token: str) -> Iterator[FakeHub]:
    """A FakeHub serving on a free loopback port until the block ends."""
    hub = FakeHub(token=token)
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
