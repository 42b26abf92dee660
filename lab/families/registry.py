"""Container Registry API (registry/v1): namespaces.

A namespace is ready as soon as it is created (as recorded); deleting answers the object
once more with the status `deleting`, then the namespace is gone. This API's 404 is not
the common `not_found` shape but a bare message, which the lab reproduces.
"""

from __future__ import annotations

from lab.api import ApiError, Handler, Kind, Lab, Request, invalid, now, route


def _namespace(lab: Lab, req: Request) -> dict:
    body, region = req.json, req.params["region"]
    if not body.get("name"):
        raise invalid("name", "required", reason="required")
    return {"name": body["name"], "description": body.get("description") or "",
            "project_id": body.get("project_id"), "status": "ready", "status_message": "",
            "endpoint": f"rg.{region}.scw.cloud/{body['name']}", "is_public": bool(body.get("is_public")),
            "size": 0, "image_count": 0}


def _registry_errors(handler: Handler) -> Handler:
    def wrapped(lab: Lab, req: Request) -> tuple[int, object]:
        try:
            return handler(lab, req)
        except ApiError as error:
            if error.status == 404:
                raise ApiError(404, {"message": "Namespace was not found"}) from None
            raise
    return wrapped


def _delete(kind: Kind) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        namespace = dict(lab.get(kind, req.params["id"]))
        lab.delete(kind, req)
        return 200, {**namespace, "status": "deleting", "updated_at": now()}
    return handler


def register(lab: Lab) -> None:
    kind = lab.add_kind(Kind("registry/v1", "regions", "namespaces", "namespaces", "namespace", _namespace,
                             updatable=("description", "is_public")), with_routes=False)
    item = kind.base + "/{id}"
    lab.add(route("POST", kind.base, lambda lab, req: (200, lab.create(kind, req))),
            route("GET", kind.base, lambda lab, req: (200, lab.list(kind, req))),
            route("GET", item, _registry_errors(lambda lab, req: (200, lab.read(kind, req.params["id"])))),
            route("PATCH", item, _registry_errors(lambda lab, req: (200, lab.update(kind, req)))),
            route("DELETE", item, _registry_errors(_delete(kind))))
