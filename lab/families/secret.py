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
- a protected secret refuses deletion with 412 `precondition_failed`;
- a version is also accessed by its secret's project, path and name
  (`secrets-by-path/versions/{revision}/access`); a secret scheduled for deletion is not
  found there.

Permissions (an application's key; Scaleway's permission sets): payloads need
SecretManagerSecretAccess, metadata reads SecretManagerReadOnly (neither includes the
other), creations SecretManagerSecretCreate, edits SecretManagerSecretWrite, deletions
SecretManagerSecretDelete; SecretManagerFullAccess and AllProductsFullAccess grant all,
AllProductsReadOnly the metadata reads.
"""

from __future__ import annotations

import base64
import binascii
import posixpath

from lab.api import (ApiError, Handler, Lab, Permission, Request, copy_fields, invalid, new_id, not_found, now,
                     route)

SECRETS = "/secret-manager/v1beta1/regions/{region}/secrets"
SECRET = SECRETS + "/{id}"
VERSIONS = SECRET + "/versions"
VERSION = VERSIONS + "/{revision}"
BY_PATH_ACCESS = "/secret-manager/v1beta1/regions/{region}/secrets-by-path/versions/{revision}/access"

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
    return _revision(lab, _secret(lab, req), req.params["revision"])


def _revision(lab: Lab, secret: dict, wanted: str) -> dict:
    """The secret's version `wanted` names: a revision number, `latest` or `latest_enabled`."""
    versions = _versions(lab, secret["id"])
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


def _accessed(lab: Lab, secret: dict, revision: str) -> tuple[int, dict]:
    version = _revision(lab, secret, revision)
    data = lab.store.meta[f"{secret['id']}/{version['revision']}"]["data"]
    return 200, {"secret_id": secret["id"], "revision": version["revision"], "data": data, "data_crc32": None,
                 "type": secret["type"]}


def _access(lab: Lab, req: Request) -> tuple[int, dict]:
    return _accessed(lab, _secret(lab, req), req.params["revision"])


def _required(req: Request, name: str) -> str:
    value = req.arg(name)
    if not value:
        raise invalid(name, "required", reason="required")
    return value


def _access_by_path(lab: Lab, req: Request) -> tuple[int, dict]:
    project_id, name = _required(req, "project_id"), _required(req, "secret_name")
    path = _path(_required(req, "secret_path"))
    for secret in lab.objects("secret").values():
        if (secret["region"], secret["project_id"], secret["path"], secret["name"]) == (
                req.params["region"], project_id, path, name) and secret["deletion_requested_at"] is None:
            return _accessed(lab, secret, req.params["revision"])
    raise not_found("secret", name)


# --- permissions -------------------------------------------------------------------------

_ALL = {"SecretManagerFullAccess", "AllProductsFullAccess"}
_SETS = {"read": _ALL | {"SecretManagerReadOnly", "AllProductsReadOnly"},
         "access": _ALL | {"SecretManagerSecretAccess"},
         "create": _ALL | {"SecretManagerSecretCreate"},
         "update": _ALL | {"SecretManagerSecretWrite"},
         "delete": _ALL | {"SecretManagerSecretDelete"}}


def _secret_project(lab: Lab, req: Request) -> str | None:
    return _secret(lab, req)["project_id"]


def _body_project(lab: Lab, req: Request) -> str | None:
    return req.json.get("project_id")


def _query_project(lab: Lab, req: Request) -> str | None:
    return req.arg("project_id")


def _needs(action: str, resource: str, project=_secret_project) -> Permission:
    # The refusal's detail reads the payload access as a `read` (the cassettes show no
    # Secret Manager refusal; `read` is the one action they do show).
    return Permission(resource, "read" if action == "access" else action, frozenset(_SETS[action]), project)


def register(lab: Lab) -> None:
    lab.add(route("POST", SECRETS, _create_secret, _needs("create", "secret", _body_project)),
            route("GET", SECRETS, _list_secrets, _needs("read", "secret", _query_project)),
            route("GET", SECRET, lambda lab, req: (200, _secret(lab, req)), _needs("read", "secret")),
            route("PATCH", SECRET, _update_secret, _needs("update", "secret")),
            route("DELETE", SECRET, _delete_secret, _needs("delete", "secret")),
            route("POST", SECRET + "/protect", _protection(True), _needs("update", "secret")),
            route("POST", SECRET + "/unprotect", _protection(False), _needs("update", "secret")),
            route("POST", VERSIONS, _create_version, _needs("create", "secret_version")),
            route("GET", VERSIONS, _list_versions, _needs("read", "secret_version")),
            route("GET", VERSION, lambda lab, req: (200, _version(lab, req)), _needs("read", "secret_version")),
            route("PATCH", VERSION, _update_version, _needs("update", "secret_version")),
            route("DELETE", VERSION, _delete_version, _needs("delete", "secret_version")),
            route("GET", VERSION + "/access", _access, _needs("access", "secret_version")),
            route("GET", BY_PATH_ACCESS, _access_by_path, _needs("access", "secret_version", _query_project)))
