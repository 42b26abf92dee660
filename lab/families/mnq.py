"""Messaging and Queuing API (mnq/v1beta1): Queues (SQS) activation per project and region,
and the credentials that sign SQS calls.

The queues themselves live in moto, behind the lab's proxy (lab/objectstorage.py), which
asks `sqs_credentials` whose keys sign each SQS request.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid

from lab.api import ApiError, Kind, Lab, Request, invalid, now, route

PERMISSIONS = ("can_publish", "can_receive", "can_manage")

# The lab this process serves: the proxy runs beside it and checks SQS keys against it.
_serving: list[Lab] = []


def _endpoint(region: str) -> str:
    return f"https://sqs.mnq.{region}.scaleway.com"


def _info(lab: Lab, region: str, project_id: str) -> dict:
    """A project's Queues in a region; never activated reads as disabled, as on Scaleway."""
    found = lab.objects("sqs_info").get(f"{region}/{project_id}")
    return found or {"project_id": project_id, "region": region, "status": "disabled", "created_at": None,
                     "updated_at": None, "sqs_endpoint_url": _endpoint(region)}


def _namespace_error(status: int, project_id: str, **extra) -> ApiError:
    return ApiError(status, {"message": "resource already exists" if status == 409 else "resource is not found",
                             "resource": "MnqSQSNamespace", "resource_id": project_id,
                             "type": "already_exists" if status == 409 else "not_found", **extra})


def _project(req: Request) -> str:
    project_id = req.json.get("project_id") or req.arg("project_id")
    if not project_id:
        raise invalid("project_id", "required")
    return project_id


def _activate(lab: Lab, req: Request) -> tuple[int, dict]:
    region, project_id = req.params["region"], _project(req)
    if _info(lab, region, project_id)["status"] == "enabled":
        raise _namespace_error(409, project_id, help_message="SQS is already enabled on this project")
    stamp = now()
    info = {**_info(lab, region, project_id), "status": "enabled", "created_at": stamp, "updated_at": stamp}
    lab.objects("sqs_info")[f"{region}/{project_id}"] = info
    lab.store.save()
    return 200, info


def _deactivate(lab: Lab, req: Request) -> tuple[int, dict]:
    region, project_id = req.params["region"], _project(req)
    if _info(lab, region, project_id)["status"] != "enabled":
        raise _namespace_error(404, project_id)
    del lab.objects("sqs_info")[f"{region}/{project_id}"]
    lab.store.save()
    return 200, _info(lab, region, project_id)


def _credentials(lab: Lab, req: Request) -> dict:
    body, region = req.json, req.params["region"]
    project_id = _project(req)
    if _info(lab, region, project_id)["status"] != "enabled":
        raise invalid("project_id", f"Queues is not activated for project {project_id} in {region}",
                      reason="precondition_failed")
    sent = body.get("permissions") or {}
    alphabet = string.ascii_letters + string.digits
    return {"name": body.get("name") or f"sqs-credentials-{uuid.uuid4().hex[:8]}", "project_id": project_id,
            "access_key": "".join(secrets.choice(alphabet) for _ in range(20)),
            "permissions": {name: bool(sent.get(name)) for name in PERMISSIONS}}


def _create_credentials(kind: Kind):
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        stored = lab.create(kind, req)
        # The secret exists once, in this answer: the lab keeps only its checksum, as Scaleway does.
        secret = str(uuid.uuid4())
        stored["secret_checksum"] = hashlib.sha1(secret.encode()).hexdigest()
        stored["secret_key"] = "00000000-0000-0000-0000-000000000000"  # what later reads show, as recorded
        lab.store.save()
        return 200, {**stored, "secret_key": secret}
    return handler


def _merge_permissions(lab: Lab, credentials: dict, req: Request) -> None:
    """An update names only the permissions it changes (the others are null)."""
    for name, value in (req.json.get("permissions") or {}).items():
        if name in PERMISSIONS and value is not None:
            credentials["permissions"][name] = bool(value)


def sqs_credentials(access_key: str, region: str) -> dict | None:
    """The credentials with this access key in `region`, if their project's Queues are on there."""
    for lab in _serving:
        with lab.store.lock:
            for credentials in lab.objects("sqs_credentials").values():
                if credentials["access_key"] == access_key and credentials["region"] == region:
                    enabled = _info(lab, region, credentials["project_id"])["status"] == "enabled"
                    return dict(credentials) if enabled else None
    return None


def register(lab: Lab) -> None:
    _serving[:] = [lab]
    base = "/mnq/v1beta1/regions/{region}"
    lab.add(route("POST", base + "/activate-sqs", _activate),
            route("POST", base + "/deactivate-sqs", _deactivate),
            route("GET", base + "/sqs-info",
                  lambda lab, req: (200, _info(lab, req.params["region"], _project(req)))))
    credentials = Kind("mnq/v1beta1", "regions", "sqs-credentials", "sqs_credentials", "sqs_credentials",
                       _credentials, updatable=("name",), on_update=_merge_permissions)
    # Before the kind's own routes, so creation answers the secret, once.
    lab.add(route("POST", credentials.base, _create_credentials(credentials)))
    lab.add_kind(credentials)
