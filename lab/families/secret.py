"""Secret Manager API (secret-manager/v1beta1): secrets and their versions.

As recorded on Scaleway:
- a secret is `ready` and a version `enabled` as soon as created; revisions count from 1
  and the newest is `latest`; a secret's `version_count` counts every version ever made;
- a version's payload goes in and comes out base64-encoded, and only through
  `.../versions/{revision}/access` (the lab keeps it beside the version, never in it);
- deleting a version schedules it for deletion (`scheduled_for_deletion`, still listed);
- deleting a secret that has versions schedules it too: it still answers a GET, with
  `deletion_requested_at` set, but lists leave it out unless asked for; a secret without
  versions is gone at once;
- a protected secret refuses deletion with 412 `precondition_failed`.
"""

from __future__ import annotations

import base64
import binascii
import posixpath

from lab.api import ApiError, Handler, Lab, Request, copy_fields, invalid, new_id, not_found, now, route

SECRETS = "/secret-manager/v1beta1/regions/{region}/secrets"
SECRET = SECRETS + "/{id}"
VERSIONS = SECRET + "/versions"
VERSION = VERSIONS + "/{revision}"

SECRET_TYPES = ("opaque", "certificate", "key_value", "basic_credentials", "database_credentials", "ssh_key")
MAX_PAYLOAD = 64 * 1024


# --- secrets -----------------------------------------------------------------------------

def _secret(lab: Lab, req: Request) -> dict:
    found = lab.objects("secret").get(req.params["id"])
    if found is None or found["region"] != req.params["region"]:
        raise not_found("secret", req.params["id"])
    return found


def _path(text: str | None) -> str:
    """Scaleway stores a folder path without its trailing slash."""
    path = text or "/"
    if not path.startswith("/"):
        raise invalid("path", "a path starts with /", reason="format")
    return posixpath.normpath(path)


def _create_secret(lab: Lab, req: Request) -> tuple[int, dict]:
    body, stamp = req.json, now()
    if not body.get("name"):
        raise invalid("name", "required", reason="required")
    if not body.get("project_id"):
        raise invalid("project_id", "required", reason="required")
    secret_type = body.get("type") or "opaque"
    if secret_type not in SECRET_TYPES:
        raise invalid("type", f"one of {', '.join(SECRET_TYPES)}")
    secret = {"id": new_id(), "project_id": body["project_id"], "name": body["name"], "status": "ready",
              "created_at": stamp, "updated_at": stamp, "tags": body.get("tags") or [], "version_count": 0,
              "description": body.get("description") or "", "managed": False, "type": secret_type,
              "protected": bool(body.get("protected")), "path": _path(body.get("path")),
              "ephemeral_policy": body.get("ephemeral_policy"), "used_by": [], "deletion_requested_at": None,
              "key_id": body.get("key_id"), "region": req.params["region"]}
    lab.objects("secret")[secret["id"]] = secret
    lab.store.save()
    return 200, secret


def _update_secret(lab: Lab, req: Request) -> tuple[int, dict]:
    secret, body = _secret(lab, req), req.json
    for name in ("name", "description", "tags", "ephemeral_policy"):
        if body.get(name) is not None:
            secret[name] = body[name]
    if body.get("path") is not None:
        secret["path"] = _path(body["path"])
    secret["updated_at"] = now()
    lab.store.save()
    return 200, secret


def _protection(protected: bool) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        secret = _secret(lab, req)
        secret["protected"], secret["updated_at"] = protected, now()
        lab.store.save()
        return 200, secret
    return handler


def _delete_secret(lab: Lab, req: Request) -> tuple[int, None]:
    secret = _secret(lab, req)
    if secret["protected"]:
        raise ApiError(412, {"help_message": "cannot delete a protected secret",
                             "message": "precondition is not respected", "precondition": "protected_resource",
                             "type": "precondition_failed"})
    versions = _versions(lab, secret["id"])
    if not versions:
        del lab.objects("secret")[secret["id"]]
    else:
        stamp = now()
        secret["deletion_requested_at"] = secret["updated_at"] = stamp
        for version in versions:
            if version["status"] != "scheduled_for_deletion":
                _schedule_deletion(version, stamp)
    lab.store.save()
    return 204, None


def _list_secrets(lab: Lab, req: Request) -> tuple[int, dict]:
    scheduled = req.arg("scheduled_for_deletion", "false").lower() == "true"
    wanted_type = req.arg("type", "")
    tags = req.query.get("tags", [])
    found = [secret for secret in lab.objects("secret").values()
             if secret["region"] == req.params["region"]
             and (secret["deletion_requested_at"] is not None) == scheduled
             and req.arg("project_id") in (None, secret["project_id"])
             and req.arg("name") in (None, secret["name"])
             and req.arg("path") in (None, secret["path"])
             and wanted_type in ("", "unknown_type", secret["type"])
             and all(tag in secret["tags"] for tag in tags)]
    found.sort(key=lambda secret: secret["name"])
    return 200, _page(req, "secrets", found)


def _page(req: Request, plural: str, items: list[dict]) -> dict:
    """Every item on page 1: clients that walk pages stop at the first empty one."""
    page = int(req.arg("page", "1") or 1)
    return {plural: items if page == 1 else [], "total_count": len(items)}


# --- versions ----------------------------------------------------------------------------

def _versions(lab: Lab, secret_id: str) -> list[dict]:
    """A secret's versions, newest first."""
    found = [version for version in lab.objects("secret_version").values() if version["secret_id"] == secret_id]
    return sorted(found, key=lambda version: version["revision"], reverse=True)


def _version(lab: Lab, req: Request) -> dict:
    """The version a path names: a revision number, `latest` or `latest_enabled`."""
    versions = _versions(lab, _secret(lab, req)["id"])
    wanted = req.params["revision"]
    if wanted == "latest_enabled":
        versions = [version for version in versions if version["status"] == "enabled"]
    for version in versions:
        if wanted in ("latest", "latest_enabled") or str(version["revision"]) == wanted:
            return version
    raise not_found("secret_version", wanted)


def _schedule_deletion(version: dict, stamp: str) -> None:
    version.update(status="scheduled_for_deletion", deletion_requested_at=stamp, updated_at=stamp)


def _payload(body: dict) -> str:
    """The base64 payload sent, checked as Scaleway checks it."""
    data = body.get("data")
    if not isinstance(data, str):
        raise invalid("data", "required: the payload, base64-encoded", reason="required")
    try:
        size = len(base64.b64decode(data, validate=True))
    except binascii.Error:
        raise invalid("data", "not valid base64", reason="format") from None
    if size > MAX_PAYLOAD:
        raise invalid("data", f"the payload exceeds {MAX_PAYLOAD} bytes")
    return data


def _create_version(lab: Lab, req: Request) -> tuple[int, dict]:
    secret, body, stamp = _secret(lab, req), req.json, now()
    data = _payload(body)
    for previous in _versions(lab, secret["id"]):
        if previous["latest"] and body.get("disable_previous") and previous["status"] == "enabled":
            previous.update(status="disabled", updated_at=stamp)
        previous["latest"] = False
    secret["version_count"] += 1
    version = {"revision": secret["version_count"], "secret_id": secret["id"], "status": "enabled",
               "created_at": stamp, "updated_at": stamp, "deleted_at": None, "description": body.get("description"),
               "latest": True, "ephemeral_properties": None, "deletion_requested_at": None,
               "region": secret["region"]}
    key = f"{secret['id']}/{version['revision']}"
    lab.objects("secret_version")[key] = version
    lab.store.meta[key] = {"data": data}
    lab.store.save()
    return 200, version


def _update_version(lab: Lab, req: Request) -> tuple[int, dict]:
    version = copy_fields(_version(lab, req), req.json, ("description", "ephemeral_properties"))
    lab.store.save()
    return 200, version


def _delete_version(lab: Lab, req: Request) -> tuple[int, None]:
    _schedule_deletion(_version(lab, req), now())
    lab.store.save()
    return 204, None


def _list_versions(lab: Lab, req: Request) -> tuple[int, dict]:
    statuses = req.query.get("status", [])
    found = [version for version in _versions(lab, _secret(lab, req)["id"])
             if not statuses or version["status"] in statuses]
    return 200, _page(req, "versions", found)


def _access(lab: Lab, req: Request) -> tuple[int, dict]:
    version, secret = _version(lab, req), _secret(lab, req)
    data = lab.store.meta[f"{secret['id']}/{version['revision']}"]["data"]
    return 200, {"secret_id": secret["id"], "revision": version["revision"], "data": data, "data_crc32": None,
                 "type": secret["type"]}


def register(lab: Lab) -> None:
    lab.add(route("POST", SECRETS, _create_secret),
            route("GET", SECRETS, _list_secrets),
            route("GET", SECRET, lambda lab, req: (200, _secret(lab, req))),
            route("PATCH", SECRET, _update_secret),
            route("DELETE", SECRET, _delete_secret),
            route("POST", SECRET + "/protect", _protection(True)),
            route("POST", SECRET + "/unprotect", _protection(False)),
            route("POST", VERSIONS, _create_version),
            route("GET", VERSIONS, _list_versions),
            route("GET", VERSION, lambda lab, req: (200, _version(lab, req))),
            route("PATCH", VERSION, _update_version),
            route("DELETE", VERSION, _delete_version),
            route("GET", VERSION + "/access", _access))
