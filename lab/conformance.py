"""Conformance: do the lab's responses carry the real API's keys, with the real types?

The reference is what the real API answered in the pinned provider's acceptance tests:
go-vcr recordings shipped in its Go module (internal/services/<api>/testdata/*.cassette.yaml).
Each recorded 2xx JSON response is filed under the lab route that serves its URL (same
method), and reduced to key paths with their JSON types: dotted, a list's elements as `[]`,
a map's values (an object keyed by data, e.g. labels or server types) as `{}`.

For every endpoint the lab served (its last response per route, GET /lab/v1/shapes), each
recorded key path must be in the lab's response with a compatible type (null is compatible
with anything), unless ALLOWED_OMISSIONS explains why not. A key under a value that the lab
left empty (an empty list, a null object) cannot be checked there: it is counted apart,
as not observed, never as missing. Nor is a member of a oneof (the Go SDK's "Precisely one
of ... must be set": the API answers only the member in use) when the lab answers with
another member of it. A missing key's report says when a recording last showed it: a key
only old recordings have may be one the API has dropped since.

Reading every cassette takes seconds; what they show is cached per machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from foundation import paths
from lab.api import Lab

# Cassette folders (internal/services/<name>) of the APIs the lab emulates, with block and
# marketplace, which instance servers use. Object Storage is not among them: the lab
# serves it with moto, not with this API.
SERVICES = ("vpc", "vpcgw", "ipam", "instance", "block", "marketplace", "lb", "rdb", "redis", "registry", "iam",
            "secret", "mnq", "cockpit", "edgeservices", "domain", "k8s")
API_ROOT = "https://api.scaleway.com"
CACHE_FORMAT = 2

# Deliberate omissions: (endpoint glob, key path) → why the lab leaves the key out. A path
# covers the keys under it.
ALLOWED_OMISSIONS: dict[tuple[str, str], str] = {
    **{("* /k8s/v1/*", path): "only the October 2025 recordings have it; the 2026 ones no longer do"
       for path in ("new_images_enabled", "clusters[].new_images_enabled", "pools[].new_images_enabled")},
    # A server's volumes differ by type, and the recordings hold both kinds.
    **{("* /instance/v1/zones/{zone}/servers*", f"server.volumes{{}}.{key}"):
       "a local (l_ssd) volume's key; the lab's servers boot from sbs volumes, the real API's default"
       for key in ("creation_date", "export_uri", "modification_date", "name", "organization", "project", "server",
                   "size", "tags")},
}

Shapes = dict[str, dict[str, set[str]]]  # endpoint → key path → JSON types

_UUID = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?=/|$)")
_FIELD = re.compile(r"^[a-z][a-z0-9_]*$")
# Objects keyed by data whose keys may nevertheless look like field names.
MAP_FIELDS = frozenset({"labels", "annotations"})


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _is_map(path: str, value: dict) -> bool:
    name = re.split(r"[.\[\]{}]+", path.rstrip("[]{}"))[-1] if path else ""
    return name in MAP_FIELDS or any(not _FIELD.match(key) for key in value)


def key_types(body: object, prefix: str = "", into: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """The key paths of a JSON value with the types seen at each."""
    found = {} if into is None else into
    if isinstance(body, dict):
        as_map = _is_map(prefix, body)
        for key, value in body.items():
            path = f"{prefix}{{}}" if as_map else (f"{prefix}.{key}" if prefix else key)
            found.setdefault(path, set()).add(json_type(value))
            key_types(value, path, found)
    elif isinstance(body, list):
        for item in body:
            found.setdefault(f"{prefix}[]", set()).add(json_type(item))
            key_types(item, f"{prefix}[]", found)
    return found


def lab_shapes(snapshots: list[dict[str, object]]) -> Shapes:
    """Key types per endpoint from GET /lab/v1/shapes answers taken at several moments."""
    shapes: Shapes = defaultdict(dict)
    for snapshot in snapshots:
        for endpoint, body in snapshot.items():
            key_types(body, into=shapes[endpoint])
    return dict(shapes)


# --- the recordings -----------------------------------------------------------------------


@dataclass
class Recordings:
    shapes: Shapes  # endpoint → key path → types
    last_seen: dict[str, dict[str, str]] = field(default_factory=dict)  # endpoint → key path → date
    oneofs: list[list[str]] = field(default_factory=list)  # JSON names of each oneof's members

    def add(self, endpoint: str, body: object, date: str) -> None:
        keys = key_types(body)
        self._merge(endpoint, keys, dict.fromkeys(keys, date))

    def by_route(self, lab: Lab) -> Recordings:
        """Filed under the lab route that serves each recorded URL (the one Lab.handle picks)."""
        filed = Recordings({}, oneofs=self.oneofs)
        for endpoint, keys in self.shapes.items():
            method, path = endpoint.split(" ", 1)
            served = next((r for r in lab.routes if r.method == method and r.pattern.match(path)), None)
            if served:
                filed._merge(f"{method} {served.template}", keys, self.last_seen.get(endpoint, {}))
        return filed

    def _merge(self, endpoint: str, keys: dict[str, set[str]], dates: dict[str, str]) -> None:
        shapes, seen = self.shapes.setdefault(endpoint, {}), self.last_seen.setdefault(endpoint, {})
        for path, types in keys.items():
            shapes.setdefault(path, set()).update(types)
            seen[path] = max(seen.get(path, ""), dates.get(path, ""))


def provider_module(module: str, version: str) -> Path:
    """Where Go keeps the provider's module (its recordings); building the provider put it there."""
    go = shutil.which("go")
    if not go:
        raise FileNotFoundError("`go` is not on PATH: the provider's recordings are in Go's module cache")
    cache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    found = Path(cache.stdout.strip()) / f"{module}@{version}"
    if not found.is_dir():
        raise FileNotFoundError(f"{found} is missing: `go mod download {module}@{version}` (./setup.sh does)")
    return found


def cache_file(module_dir: Path) -> Path:
    version = module_dir.name.rsplit("@", 1)[-1].lstrip("v")
    return paths.cache_dir() / f"lab-shapes-{version}.json"


def recordings(module_dir: Path) -> Recordings:
    """What the cassettes show per "METHOD path" (UUID segments as {uuid}): from the cache
    when it was made from this same module, otherwise read (then cached)."""
    cache = cache_file(module_dir)
    try:
        saved = json.loads(cache.read_text())
        if saved.get("format") == CACHE_FORMAT and saved.get("module") == str(module_dir):
            return Recordings({endpoint: {path: set(types) for path, types in keys.items()}
                               for endpoint, keys in saved["shapes"].items()}, saved["last_seen"], saved["oneofs"])
    except (OSError, ValueError, KeyError):
        pass
    found = _read_cassettes(module_dir)
    found.oneofs = _oneofs(_sdk_dir(module_dir))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({
        "format": CACHE_FORMAT, "module": str(module_dir), "last_seen": found.last_seen, "oneofs": found.oneofs,
        "shapes": {endpoint: {path: sorted(types) for path, types in keys.items()}
                   for endpoint, keys in found.shapes.items()}}))
    os.replace(tmp, cache)
    return found


def _read_cassettes(module_dir: Path) -> Recordings:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found = Recordings({})
    for service in SERVICES:
        for cassette in sorted((module_dir / "internal" / "services" / service / "testdata").glob("*.cassette.yaml")):
            with cassette.open() as stream:
                interactions = (yaml.load(stream, Loader=loader) or {}).get("interactions") or []
            for interaction in interactions:
                request, response = interaction["request"], interaction["response"]
                if not 200 <= int(response.get("code") or 0) < 300 or not request["url"].startswith(API_ROOT):
                    continue
                try:
                    body = json.loads(response.get("body") or "")
                except ValueError:
                    continue
                if isinstance(body, dict):
                    path = _UUID.sub("/{uuid}", request["url"][len(API_ROOT):].split("?", 1)[0])
                    found.add(f"{request['method']} {path}", body, _date(response))
    return found


def _sdk_dir(module_dir: Path) -> Path:
    """The Go SDK the provider is built with, in the same module cache."""
    version = re.search(r"github\.com/scaleway/scaleway-sdk-go (\S+)", (module_dir / "go.mod").read_text()).group(1)
    cache = next(parent for parent in module_dir.parents if parent.name == "github.com").parent
    return cache / "github.com" / "scaleway" / f"scaleway-sdk-go@{version}"


_ONEOF = re.compile(r"^\s*// Precisely one of (.+) must be set\.$")
_STRUCT = re.compile(r"^type (\w+) struct \{$")
_JSON_NAME = re.compile(r'`json:"([^",]+)')


def _oneofs(sdk_dir: Path) -> list[list[str]]:
    """The oneofs of the SDK's response types (a request's oneofs say nothing of answers)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for source in sorted((sdk_dir / "api").rglob("*_sdk.go")):
        struct, pending = "", None
        for line in source.read_text().splitlines():
            if found := _STRUCT.match(line):
                struct = found.group(1)
            elif (found := _ONEOF.match(line)) and not struct.endswith("Request"):
                pending = (f"{source}:{struct}", found.group(1))
            elif pending and (name := _JSON_NAME.search(line)):
                groups.setdefault(pending, []).append(name.group(1))
                pending = None
    return [list(group) for group in sorted({tuple(sorted(set(names))) for names in groups.values()})
            if len(group) > 1]


def _date(response: dict) -> str:
    stamp = ((response.get("headers") or {}).get("Date") or [""])[0]
    try:
        return parsedate_to_datetime(stamp).date().isoformat()
    except (TypeError, ValueError):
        return ""


# --- the comparison -----------------------------------------------------------------------


@dataclass
class Report:
    compared: list[str] = field(default_factory=list)  # endpoints with both sides
    keys: int = 0  # recorded key paths checked against the lab's
    missing: dict[str, list[str]] = field(default_factory=dict)
    mistyped: dict[str, list[str]] = field(default_factory=dict)
    allowed: dict[str, list[str]] = field(default_factory=dict)
    unobserved: int = 0  # recorded keys under values the lab left empty
    alternatives: int = 0  # oneof members the lab answers another member in place of
    unrecorded: list[str] = field(default_factory=list)  # endpoints no recording shows

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mistyped

    @property
    def summary(self) -> str:
        return (f"compared {len(self.compared)} endpoints, {self.keys} keys "
                f"({self.alternatives} of them oneof members answered by another member; "
                f"{self.unobserved} more under values the lab left empty; "
                f"{len(self.unrecorded)} lab endpoints without recordings)")

    def text(self) -> str:
        lines = [self.summary]
        for title, entries in (("MISSING (the real API returns them, the lab does not)", self.missing),
                               ("TYPE DIFFERS", self.mistyped), ("ALLOWED OMISSIONS", self.allowed)):
            if entries:
                lines += ["", title] + [f"  {endpoint}\n" + "\n".join(f"    {key}" for key in keys)
                                        for endpoint, keys in sorted(entries.items())]
        if self.unrecorded:
            lines += ["", "NOT RECORDED (nothing to compare with)"] + [f"  {e}" for e in sorted(self.unrecorded)]
        return "\n".join(lines) + "\n"


def _parent(path: str) -> str:
    if path.endswith(("[]", "{}")):
        return path[:-2]
    return path.rsplit(".", 1)[0] if "." in path else ""


def _allowance(endpoint: str, path: str) -> str | None:
    while path:
        for (endpoints, allowed), reason in ALLOWED_OMISSIONS.items():
            if allowed == path and fnmatchcase(endpoint, endpoints):
                return reason
        path = _parent(path)
    return None


def _observed(lab_keys: dict[str, set[str]], path: str) -> bool:
    """Whether the lab showed content where `path` would be: its nearest ancestor that the
    lab has must have children (the root always counts)."""
    ancestor = _parent(path)
    while ancestor and ancestor not in lab_keys:
        ancestor = _parent(ancestor)
    return not ancestor or any(_parent(key) == ancestor for key in lab_keys)


def _answered_by_another(lab_keys: dict[str, set[str]], path: str, oneofs: list[list[str]]) -> bool:
    parent = _parent(path)
    name = path[len(parent) + 1:] if parent else path
    return any(name in group and any((f"{parent}.{other}" if parent else other) in lab_keys
                                     for other in group if other != name) for group in oneofs)


def compare(lab: Shapes, recorded: Recordings) -> Report:
    report = Report()
    for endpoint in sorted(lab):
        real_keys = recorded.shapes.get(endpoint)
        if real_keys is None:
            report.unrecorded.append(endpoint)
            continue
        report.compared.append(endpoint)
        lab_keys = lab[endpoint]
        for path, real_types in sorted(real_keys.items()):
            if path in lab_keys:
                report.keys += 1
                real, ours = real_types - {"null"}, lab_keys[path] - {"null"}
                if real and ours - real:
                    report.mistyped.setdefault(endpoint, []).append(
                        f"{path}: lab {'/'.join(sorted(ours))}, real API {'/'.join(sorted(real))}")
            elif not _observed(lab_keys, path):
                report.unobserved += 1
            elif _parent(path) in real_keys and _parent(path) not in lab_keys:
                continue  # its parent is reported missing
            elif _answered_by_another(lab_keys, path, recorded.oneofs):
                report.keys += 1
                report.alternatives += 1
            else:
                report.keys += 1
                reason = _allowance(endpoint, path)
                if reason:
                    report.allowed.setdefault(endpoint, []).append(f"{path} ({reason})")
                else:
                    seen = recorded.last_seen.get(endpoint, {}).get(path)
                    report.missing.setdefault(endpoint, []).append(f"{path} (last recorded {seen})" if seen else path)
    return report
