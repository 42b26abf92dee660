"""The emulated Scaleway API: routing, generic resources, asynchronous statuses, errors.

Most Scaleway resources follow one pattern — POST a collection to create, GET/PATCH/DELETE
an item, GET the collection to list (`{"<plural>": [...], "total_count": n}`) — under
`/<api>/<version>/{regions|zones}/<location>/<collection>`. A `Kind` declares one such
resource: how an object is built from the create request, which fields an update may
change, and its asynchronous statuses. Families (lab/families/) declare their kinds
and add routes for what does not fit (actions, sub-resources, text bodies).

Asynchronous statuses are counted in reads, not seconds: a created or changed object
is transient (e.g. `provisioning`) until it has been read `settle_reads` times, then
settles (`ready`). The provider's waiters therefore always see at least one transient
status and poll through it, as against the real API, without the lab sleeping.

Errors have the real API's shapes (404 `not_found`, 409 `transient_state`, 400
`invalid_arguments` naming the field), so the provider's and SDK's error handling runs.

Authorization: a route may declare a `Permission`. A token the lab's IAM did not issue
(the deployer's own key) acts as the organization owner, allowed everything; a key the
IAM issued to an application gets only what its policies grant on the project concerned
(403 `permissions_denied` otherwise), and a key it revoked is refused on every route (401
`denied_authentication`). The IAM family provides `Lab.authenticate`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from lab.store import Store

PAGING = {"page", "per_page", "order_by", "page_size"}


class ApiError(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("message", ""))
        self.status, self.body = status, body


def not_found(resource: str, resource_id: str) -> ApiError:
    return ApiError(404, {"message": "resource is not found", "resource": resource, "resource_id": resource_id,
                          "type": "not_found"})


def transient(resource: str, resource_id: str, status: str) -> ApiError:
    return ApiError(409, {"message": "resource is in a transient state", "resource": resource,
                          "resource_id": resource_id, "current_state": status, "type": "transient_state"})


def invalid(argument: str, help_message: str, reason: str = "constraint") -> ApiError:
    return ApiError(400, {"details": [{"argument_name": argument, "reason": reason, "help_message": help_message}],
                          "message": "invalid argument(s)", "type": "invalid_arguments"})


def denied(resource: str, action: str) -> ApiError:
    """Scaleway's refusal of an authenticated caller (as recorded, e.g. on mnq and instance)."""
    return ApiError(403, {"details": [{"action": action, "resource": resource}], "message": "insufficient permissions",
                          "type": "permissions_denied"})


def unauthenticated(reason: str) -> ApiError:
    """Scaleway's refusal of an API key it does not know (`not_found`) or that has expired."""
    return ApiError(401, {"message": "authentication is denied", "method": "api_key", "reason": reason,
                          "type": "denied_authentication"})


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: object  # parsed JSON (dict/list), text, or None
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def json(self) -> dict:
        return self.body if isinstance(self.body, dict) else {}


Handler = Callable[["Lab", Request], tuple[int, object]]


@dataclass(frozen=True)
class Permission:
    """What a route asks of an application's key: one of the permission sets `sets` on the
    project the request concerns, which `project` finds (None: the organization as a
    whole). `resource` and `action` name the refusal's detail."""

    resource: str
    action: str
    sets: frozenset[str]
    project: Callable[["Lab", Request], str | None]


# The permission set names a caller holds on a project (None: organization-wide only).
Grants = Callable[[str | None], set[str]]
# Who a token is: None for a token the lab's IAM did not issue (the organization owner);
# else the bearer's grants. Raises the 401 for a key the IAM revoked.
Authenticate = Callable[["Lab", str | None], Grants | None]


# What the real API answers when it refuses for a while (bodies as the SDK parses them).
FAULT_BODIES = {
    409: {"message": "resource is in a transient state", "resource": "lb", "resource_id": "",
          "current_state": "pending", "type": "transient_state"},
    429: {"message": "too many requests", "type": "too_many_requests"},
    500: {"message": "internal error", "type": "internal_error"},
    503: {"message": "service unavailable", "type": "service_unavailable"},
}


@dataclass
class ApiFault:
    """For `seconds` from its start, requests whose method is one of `methods` and whose
    path matches `path` get the statuses in turn (409, 429, 500, 409, ...)."""

    path: re.Pattern
    methods: tuple[str, ...]
    statuses: tuple[int, ...]
    until: float
    answered: int = 0

    @classmethod
    def from_request(cls, body: dict) -> "ApiFault":
        import time

        statuses = tuple(int(status) for status in body.get("statuses") or [409])
        if any(status not in FAULT_BODIES for status in statuses):
            raise invalid("statuses", f"the lab injects {sorted(FAULT_BODIES)}")
        seconds = float(body.get("seconds") or 0)
        if not 0 < seconds <= 600:
            raise invalid("seconds", "a fault lasts 0 to 600 seconds")
        return cls(re.compile(str(body.get("path") or "^/")), tuple(body.get("methods") or ("POST", "PUT", "PATCH",
                                                                                        "DELETE")),
                   statuses, time.monotonic() + seconds)

    def answer(self, method: str, path: str) -> tuple[int, dict] | None:
        import time

        if method not in self.methods or not self.path.search(path) or time.monotonic() > self.until:
            return None
        status = self.statuses[self.answered % len(self.statuses)]
        self.answered += 1
        return status, FAULT_BODIES[status]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    handler: Handler
    template: str  # the path with placeholders, for the conformance report
    permission: Permission | None = None  # None: any authenticated caller


def route(method: str, template: str, handler: Handler, permission: Permission | None = None) -> Route:
    """`template` like `/vpc/v2/regions/{region}/vpcs/{id}`; each {name} matches one segment."""
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
    return Route(method, pattern, handler, template, permission)


@dataclass
class Kind:
    """One resource type of the pattern above."""

    api: str  # e.g. "vpc/v2"
    scope: str  # "regions" or "zones"
    collection: str  # URL segment, e.g. "private-networks"
    plural: str  # list key, e.g. "private_networks"
    resource: str  # name in error bodies, e.g. "private_network"
    build: Callable[["Lab", Request], dict]  # the new object (id, dates, location are added)
    updatable: tuple[str, ...] | None = None  # fields PATCH may change (None: any sent field)
    statuses: tuple[str, str] | None = None  # (transient, settled), e.g. ("creating", "ready")
    settle_reads: int = 1
    refuse_while_transient: bool = False  # 409 on a change while transient (LB, instances)
    delete_status: int = 204  # 204: no body; 200: the deleted object
    list_filter: Callable[[dict, Request], bool] | None = None  # beyond the generic field filters
    on_update: Callable[["Lab", dict, Request], None] | None = None
    on_delete: Callable[["Lab", dict], None] | None = None
    location_key: str | None = None  # "region"/"zone" in the object (default: from scope)
    # While this says so, the object stays transient whatever the reads (a control plane
    # that the data plane is still starting).
    hold_transient: Callable[["Lab", dict], bool] | None = None

    @property
    def base(self) -> str:
        location = "region" if self.scope == "regions" else "zone"
        return f"/{self.api}/{self.scope}/{{{location}}}/{self.collection}"


class Lab:
    """The emulated API's state and dispatch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.routes: list[Route] = []
        self.kinds: dict[str, Kind] = {}
        self.shapes: dict[tuple[str, str], dict] = {}  # (method, template) → last response body
        self.runtime = None  # lab.runtime.Runtime: the data plane, when one runs (`ciel lab up`)
        self.faults: list[ApiFault] = []  # injected by rehearsals through POST /lab/v1/faults
        self.authenticate: Authenticate | None = None  # set by the IAM family

    # --- registration ---------------------------------------------------------------------

    def add(self, *routes: Route) -> None:
        self.routes.extend(routes)

    def add_kind(self, kind: Kind, *, with_routes: bool = True) -> Kind:
        self.kinds[kind.resource] = kind
        if with_routes:
            self.add(route("POST", kind.base, lambda lab, req: (200, lab.create(kind, req))),
                     route("GET", kind.base, lambda lab, req: (200, lab.list(kind, req))),
                     route("GET", kind.base + "/{id}", lambda lab, req: (200, lab.read(kind, req.params["id"]))),
                     route("PATCH", kind.base + "/{id}", lambda lab, req: (200, lab.update(kind, req))),
                     route("DELETE", kind.base + "/{id}", lambda lab, req: lab.delete(kind, req)))
        return kind

    # --- objects --------------------------------------------------------------------------

    def objects(self, kind: Kind | str) -> dict[str, dict]:
        return self.store.collection(kind if isinstance(kind, str) else kind.resource)

    def get(self, kind: Kind | str, object_id: str, *, resource: str | None = None) -> dict:
        """The object, or the 404 naming `resource` (the API's name for it, when the lab's
        collection is named otherwise)."""
        name = kind if isinstance(kind, str) else kind.resource
        found = self.store.collection(name).get(object_id)
        if found is None:
            raise not_found(resource or name, object_id)
        return found

    def get_settled(self, kind: Kind | str, object_id: str, *, resource: str, settled: str = "ready") -> dict:
        """The object, or the 409 the real API answers to a change while it is busy."""
        found = self.get(kind, object_id, resource=resource)
        if found.get("status") != settled:
            raise transient(resource, object_id, str(found.get("status")))
        return found

    def set_transient(self, kind: Kind, obj: dict, status: str | None = None) -> None:
        if kind.statuses:
            obj["status"] = status or kind.statuses[0]
            self.store.meta.setdefault(obj["id"], {})["reads_left"] = kind.settle_reads

    def settle(self, kind: Kind, obj: dict) -> None:
        """A read: count it, and settle the object once it has been read enough."""
        meta = self.store.meta.get(obj["id"], {})
        if kind.hold_transient and kind.hold_transient(self, obj):
            return
        if kind.statuses and meta.get("reads_left", 0) > 0:
            meta["reads_left"] -= 1
            if meta["reads_left"] == 0:
                obj["status"] = meta.pop("settles_to", kind.statuses[1])
                obj["updated_at"] = now()

    def create(self, kind: Kind, req: Request) -> dict:
        obj = kind.build(self, req)
        obj.setdefault("id", new_id())
        stamp = now()
        obj.setdefault("created_at", stamp)
        obj.setdefault("updated_at", stamp)
        location = kind.location_key or ("region" if kind.scope == "regions" else "zone")
        obj.setdefault(location, req.params.get(location))
        if "project_id" in obj or "project_id" in req.json:
            obj.setdefault("project_id", req.json.get("project_id"))
            obj.setdefault("organization_id", obj["project_id"])
        self.set_transient(kind, obj)
        self.objects(kind)[obj["id"]] = obj
        self.store.save()
        return obj

    def read(self, kind: Kind, object_id: str) -> dict:
        obj = self.get(kind, object_id)
        self.settle(kind, obj)
        return obj

    def check_settled(self, kind: Kind, obj: dict) -> None:
        if kind.refuse_while_transient and kind.statuses and obj.get("status") != kind.statuses[1]:
            raise transient(kind.resource, obj["id"], obj.get("status", ""))

    def update(self, kind: Kind, req: Request) -> dict:
        obj = self.get(kind, req.params["id"])
        self.check_settled(kind, obj)
        for key, value in req.json.items():
            if value is None or (kind.updatable is not None and key not in kind.updatable):
                continue
            obj[key] = value
        if kind.on_update:
            kind.on_update(self, obj, req)
        obj["updated_at"] = now()
        if kind.refuse_while_transient:
            self.set_transient(kind, obj)
        self.store.save()
        return obj

    def delete(self, kind: Kind, req: Request) -> tuple[int, object]:
        obj = self.get(kind, req.params["id"])
        self.check_settled(kind, obj)
        if kind.on_delete:
            kind.on_delete(self, obj)
        del self.objects(kind)[obj["id"]]
        self.store.meta.pop(obj["id"], None)
        self.store.save()
        return (kind.delete_status, obj if kind.delete_status == 200 else None)

    def list(self, kind: Kind, req: Request) -> dict:
        location = "region" if kind.scope == "regions" else "zone"
        found = []
        for obj in self.objects(kind).values():
            if obj.get(kind.location_key or location) not in (None, req.params.get(location)):
                continue
            if not matches(obj, req) or (kind.list_filter and not kind.list_filter(obj, req)):
                continue
            self.settle(kind, obj)
            found.append(obj)
        page = int(req.arg("page", "1") or 1)
        return {kind.plural: found if page == 1 else [], "total_count": len(found)}

    # --- dispatch -------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: object,
               token: str | None = None) -> tuple[int, object]:
        """`token`: the request's X-Auth-Token."""
        with self.store.lock:
            for fault in self.faults:
                if (answer := fault.answer(method, path)) is not None:
                    return answer
            try:
                grants = self.authenticate(self, token) if self.authenticate else None
            except ApiError as error:
                return error.status, error.body
            for candidate in self.routes:
                if candidate.method != method:
                    continue
                match = candidate.pattern.match(path)
                if not match:
                    continue
                req = Request(method, path, query, body, match.groupdict())
                try:
                    needed = candidate.permission
                    if grants is not None and needed and not needed.sets & grants(needed.project(self, req)):
                        raise denied(needed.resource, needed.action)
                    status, payload = candidate.handler(self, req)
                except ApiError as error:
                    return error.status, error.body
                if isinstance(payload, dict):
                    self.shapes[(method, candidate.template)] = payload
                return status, payload
            return 404, {"message": f"the lab does not emulate {method} {path}", "type": "not_found",
                         "resource": "unknown", "resource_id": ""}


def matches(obj: dict, req: Request) -> bool:
    """Generic list filters: a query argument naming a top-level field filters on it
    (equality; for a list field, every requested value must be in it)."""
    for name, values in req.query.items():
        if name in PAGING or name not in obj:
            continue
        field_value = obj[name]
        if isinstance(field_value, list):
            if not all(value in field_value for value in values):
                return False
        elif name == "name":
            if values[0] not in str(field_value):  # Scaleway's name filter matches a substring
                return False
        elif str(field_value).lower() != values[0].lower():
            return False
    return True


def copy_fields(target: dict, body: dict, names: tuple[str, ...]) -> dict:
    """An update: the named fields the request sets (not null), and the update time."""
    for name in names:
        if body.get(name) is not None:
            target[name] = body[name]
    target["updated_at"] = now()
    return target


def pick(body: dict, defaults: dict) -> dict:
    """The object built from a create request: the defaults, then every field sent."""
    return {**defaults, **{key: value for key, value in body.items() if value is not None}}
