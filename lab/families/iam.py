"""IAM API (iam/v1alpha1): applications, their API keys, policies and their rules.

IAM is global: its paths carry no region or zone, so its routes are written here rather
than declared as `Kind`s. As on Scaleway:
- an API key is addressed by its access key; its secret key is answered once, by the
  create call, and never again (the lab keeps only its SHA-256: a GET answers `null`);
- an application's key acts with its policies' permission sets on the project concerned
  (`authenticate`, checked against the permissions routes declare); deleting the key or
  its application revokes it: it is then refused (401), its digest kept as revoked. A
  token the lab did not issue (the deployer's own key) acts as the organization owner;
- the deployer's own key (lab/runner.py's LAB_ACCESS_KEY) is a user's: a GET of it answers
  as Scaleway does for a user's key, with the lab owner's user ID (OWNER_USER_ID);
- a policy's rules are their own endpoint (`/rules?policy_id=`, `PUT /rules`); the
  policy's rule counters read 0 in the create response and are counted on later reads;
- permission set names are checked against a catalogue, with each set's scope type;
- deleting an application deletes its API keys.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from lab.api import Grants, Lab, Request, invalid, new_id, not_found, now, route, unauthenticated
from lab.runner import LAB_ACCESS_KEY, LAB_PROJECT_ID

API = "/iam/v1alpha1"

# Permission sets the lab knows, with their scope type (which the rules report). A name
# outside this catalogue is refused (400 `invalid_arguments`: no recording shows Scaleway's
# own refusal), so a typo fails here rather than in production; add real names as needed.
_ORGANIZATION_SETS = ("IAMManager", "IAMReadOnly", "ProjectManager", "SupportTicketManager")
_PROJECT_SETS = (
    "AllProductsFullAccess", "AllProductsReadOnly",
    "ContainerRegistryFullAccess", "ContainerRegistryReadOnly",
    "ObjectStorageFullAccess", "ObjectStorageReadOnly", "ObjectStorageBucketsRead", "ObjectStorageBucketsWrite",
    "ObjectStorageBucketsDelete", "ObjectStorageObjectsRead", "ObjectStorageObjectsWrite", "ObjectStorageObjectsDelete",
    "InstancesFullAccess", "InstancesReadOnly", "PrivateNetworksFullAccess", "PrivateNetworksReadOnly",
    "VPCFullAccess", "VPCReadOnly", "LoadBalancersFullAccess", "LoadBalancersReadOnly",
    "RelationalDatabasesFullAccess", "RelationalDatabasesReadOnly", "RedisFullAccess", "RedisReadOnly",
    "SecretManagerFullAccess", "SecretManagerReadOnly", "SecretManagerSecretAccess", "SecretManagerSecretCreate",
    "SecretManagerSecretWrite", "SecretManagerSecretDelete",
    "KubernetesFullAccess", "KubernetesReadOnly", "DomainsDNSFullAccess", "DomainsDNSReadOnly",
)
PERMISSION_SETS = {**{name: "organization" for name in _ORGANIZATION_SETS},
                   **{name: "projects" for name in _PROJECT_SETS}}

PRINCIPALS = ("user_id", "group_id", "application_id", "no_principal")

# The user the deployer's own key belongs to (the organization owner), and that key as
# IAM answers it (the shape of a user's key in the provider's recordings).
OWNER_USER_ID = "1ab1ab1a-0000-4000-8000-0000000000aa"
OWNER_KEY = {"access_key": LAB_ACCESS_KEY, "secret_key": None, "description": "lab owner",
             "created_at": "2026-01-01T00:00:00.000000Z", "updated_at": "2026-01-01T00:00:00.000000Z",
             "expires_at": None, "default_project_id": LAB_PROJECT_ID, "editable": True, "deletable": True,
             "managed": False, "creation_ip": "127.0.0.1", "user_id": OWNER_USER_ID}
ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits

Filter = Callable[[dict, list[str]], bool]


# --- helpers -----------------------------------------------------------------------------

def _found(lab: Lab, collection: str, resource: str, object_id: str) -> dict:
    found = lab.objects(collection).get(object_id)
    if found is None:
        raise not_found(resource, object_id)
    return found


def _listed(req: Request, plural: str, objects: list[dict], filters: dict[str, Filter]) -> dict:
    """A list answer: the objects every given query filter accepts, oldest first."""
    kept = [obj for obj in objects
            if all(accepts(obj, req.query[name]) for name, accepts in filters.items() if req.query.get(name))]
    kept.sort(key=lambda obj: obj["created_at"])
    return _page(req, plural, kept)


def _page(req: Request, plural: str, items: list[dict]) -> dict:
    """Every item on page 1: clients that walk pages stop at the first empty one."""
    page = int(req.arg("page", "1") or 1)
    return {plural: items if page == 1 else [], "total_count": len(items)}


def _equals(field: str) -> Filter:
    return lambda obj, values: str(obj.get(field)) in values


def _tagged(obj: dict, values: list[str]) -> bool:
    return values[0] in obj.get("tags", [])


def _changed(obj: dict, body: dict, fields: tuple[str, ...]) -> None:
    for name in fields:
        if body.get(name) is not None:
            obj[name] = body[name]
    obj["updated_at"] = now()


def _organization(req: Request) -> str:
    organization_id = req.json.get("organization_id")
    if not organization_id:
        raise invalid("organization_id", "required", reason="required")
    return organization_id


# --- applications ------------------------------------------------------------------------

def _application_view(lab: Lab, application: dict) -> dict:
    keys = sum(1 for key in lab.objects("iam_api_key").values() if key.get("application_id") == application["id"])
    return {**application, "nb_api_keys": keys}


def _create_application(lab: Lab, req: Request) -> tuple[int, dict]:
    body, stamp = req.json, now()
    application = {"id": new_id(), "name": body.get("name") or f"app-{new_id()[:8]}",
                   "description": body.get("description") or "", "created_at": stamp, "updated_at": stamp,
                   "organization_id": _organization(req), "editable": True, "deletable": True, "managed": False,
                   "tags": body.get("tags") or []}
    lab.objects("iam_application")[application["id"]] = application
    lab.store.save()
    return 200, _application_view(lab, application)


def _get_application(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _application_view(lab, _found(lab, "iam_application", "application", req.params["id"]))


def _update_application(lab: Lab, req: Request) -> tuple[int, dict]:
    application = _found(lab, "iam_application", "application", req.params["id"])
    _changed(application, req.json, ("name", "description", "tags"))
    lab.store.save()
    return 200, _application_view(lab, application)


def _delete_application(lab: Lab, req: Request) -> tuple[int, None]:
    application = _found(lab, "iam_application", "application", req.params["id"])
    keys = lab.objects("iam_api_key")
    for access_key in [key["access_key"] for key in keys.values() if key.get("application_id") == application["id"]]:
        _revoke(lab, access_key)
        del keys[access_key]
    del lab.objects("iam_application")[application["id"]]
    lab.store.save()
    return 204, None


def _list_applications(lab: Lab, req: Request) -> tuple[int, dict]:
    applications = [_application_view(lab, app) for app in lab.objects("iam_application").values()]
    return 200, _listed(req, "applications", applications, {
        "organization_id": _equals("organization_id"), "application_ids": _equals("id"), "tag": _tagged,
        "name": lambda app, values: values[0] in app["name"]})


# --- API keys ----------------------------------------------------------------------------

def _expiry(text: str | None) -> str | None:
    """Scaleway answers the expiry in UTC, to the second."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid("expires_at", f"{text} is not an RFC 3339 date", reason="format") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _create_api_key(lab: Lab, req: Request) -> tuple[int, dict]:
    body, stamp = req.json, now()
    if body.get("user_id"):  # the lab has no users but the one its own credentials stand for
        raise not_found("user", body["user_id"])
    if not body.get("application_id"):
        raise invalid("application_id", "one of application_id or user_id is required", reason="required")
    application = _found(lab, "iam_application", "application", body["application_id"])
    key = {"access_key": "SCW" + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(17)),
           "description": body.get("description") or "", "created_at": stamp, "updated_at": stamp,
           "expires_at": _expiry(body.get("expires_at")),
           # An organization's default project has the organization's ID.
           "default_project_id": body.get("default_project_id") or application["organization_id"],
           "editable": True, "deletable": True, "managed": False, "creation_ip": "127.0.0.1",
           "application_id": application["id"]}
    secret_key = new_id()
    lab.objects("iam_api_key")[key["access_key"]] = key
    lab.objects(DIGESTS)[_digest(secret_key)] = {"access_key": key["access_key"], "revoked_at": None}
    lab.store.save()
    return 200, {**key, "secret_key": secret_key}


def _key_view(key: dict) -> dict:
    return {**key, "secret_key": None}


def _get_api_key(lab: Lab, req: Request) -> tuple[int, dict]:
    if req.params["access_key"] == LAB_ACCESS_KEY:
        return 200, dict(OWNER_KEY)
    return 200, _key_view(_found(lab, "iam_api_key", "access_key", req.params["access_key"]))


def _update_api_key(lab: Lab, req: Request) -> tuple[int, dict]:
    key = _found(lab, "iam_api_key", "access_key", req.params["access_key"])
    _changed(key, req.json, ("description", "default_project_id"))
    lab.store.save()
    return 200, _key_view(key)


def _delete_api_key(lab: Lab, req: Request) -> tuple[int, None]:
    key = _found(lab, "iam_api_key", "access_key", req.params["access_key"])
    _revoke(lab, key["access_key"])
    del lab.objects("iam_api_key")[key["access_key"]]
    lab.store.save()
    return 204, None


def _list_api_keys(lab: Lab, req: Request) -> tuple[int, dict]:
    organization_of = {app["id"]: app["organization_id"] for app in lab.objects("iam_application").values()}
    keys = [_key_view(key) for key in lab.objects("iam_api_key").values()]
    return 200, _listed(req, "api_keys", keys, {
        "organization_id": lambda key, values: organization_of.get(key["application_id"]) in values,
        "application_id": _equals("application_id"), "bearer_id": _equals("application_id"),
        "access_keys": _equals("access_key"), "access_key": _equals("access_key"),
        "description": _equals("description")})


# --- authentication ----------------------------------------------------------------------

DIGESTS = "iam_secret_key_digests"  # SHA-256 of each secret key issued → its access key


def _digest(secret_key: str) -> str:
    return hashlib.sha256(secret_key.encode()).hexdigest()


def _revoke(lab: Lab, access_key: str) -> None:
    for entry in lab.objects(DIGESTS).values():
        if entry["access_key"] == access_key and entry["revoked_at"] is None:
            entry["revoked_at"] = now()


def _expired(key: dict) -> bool:
    expires_at = key.get("expires_at")
    return bool(expires_at) and datetime.fromisoformat(expires_at.replace("Z", "+00:00")) <= datetime.now(timezone.utc)


def authenticate(lab: Lab, token: str | None) -> Grants | None:
    """None for a token this IAM did not issue (the organization owner's); else what the
    key's application holds: the permission sets of its policies' rules on a project
    (rules naming the project, or its organization as a whole)."""
    entry = lab.objects(DIGESTS).get(_digest(token)) if token else None
    if entry is None:
        return None
    key = lab.objects("iam_api_key").get(entry["access_key"])
    if entry["revoked_at"] is not None or key is None:
        raise unauthenticated("not_found")
    if _expired(key):
        raise unauthenticated("expired")
    application_id = key["application_id"]

    def grants(project_id: str | None) -> set[str]:
        application = lab.objects("iam_application").get(application_id) or {}
        return {name for policy in lab.objects("iam_policy").values() if policy.get("application_id") == application_id
                for rule in _rules(lab, policy["id"])
                if project_id in (rule.get("project_ids") or [])
                or (rule.get("organization_id") and rule["organization_id"] == application.get("organization_id"))
                for name in rule["permission_set_names"]}
    return grants


# --- policies and rules ------------------------------------------------------------------

def _rules(lab: Lab, policy_id: str) -> list[dict]:
    return lab.objects("iam_rules").get(policy_id, {}).get("rules", [])


def _rule(spec: dict, position: int) -> dict:
    names = spec.get("permission_set_names") or []
    where = f"rules.{position}"
    if not names:
        raise invalid(f"{where}.permission_set_names", "at least one permission set is required", reason="required")
    unknown = [name for name in names if name not in PERMISSION_SETS]
    if unknown:
        raise invalid(f"{where}.permission_set_names", f"unknown permission set(s): {', '.join(unknown)}")
    scope_types = {PERMISSION_SETS[name] for name in names}
    if len(scope_types) > 1:
        raise invalid(f"{where}.permission_set_names", "a rule cannot mix organization and project permission sets")
    scope_type = scope_types.pop()
    project_ids, organization_id = spec.get("project_ids"), spec.get("organization_id")
    if bool(project_ids) == bool(organization_id):
        raise invalid(f"{where}.project_ids", "exactly one of project_ids and organization_id is required")
    if project_ids and scope_type == "organization":
        raise invalid(f"{where}.project_ids", "organization permission sets apply to the organization only")
    scope = {"project_ids": list(project_ids)} if project_ids else {"organization_id": organization_id}
    return {"id": new_id(), "permission_set_names": list(names), "permission_sets_scope_type": scope_type,
            "condition": spec.get("condition") or "", **scope}


def _set_rules(lab: Lab, policy_id: str, specs: list[dict]) -> list[dict]:
    rules = [_rule(spec, position) for position, spec in enumerate(specs or [])]
    lab.objects("iam_rules")[policy_id] = {"rules": rules}
    return rules


def _policy_view(lab: Lab, policy: dict) -> dict:
    rules = _rules(lab, policy["id"])
    scopes = {scope for rule in rules for scope in rule.get("project_ids") or [rule.get("organization_id")]}
    names = {name for rule in rules for name in rule["permission_set_names"]}
    return {**policy, "nb_rules": len(rules), "nb_scopes": len(scopes), "nb_permission_sets": len(names)}


def _principal(lab: Lab, body: dict) -> dict:
    given = [name for name in PRINCIPALS if body.get(name)]
    if len(given) != 1:
        raise invalid("principal", "exactly one of user_id, group_id, application_id and no_principal is required")
    principal = given[0]
    if principal == "application_id":
        _found(lab, "iam_application", "application", body[principal])
    elif principal != "no_principal":  # the lab has no users nor groups
        raise not_found(principal.removesuffix("_id"), body[principal])
    return {principal: body[principal]}


def _create_policy(lab: Lab, req: Request) -> tuple[int, dict]:
    body, stamp = req.json, now()
    policy = {"id": new_id(), "name": body.get("name") or f"policy-{new_id()[:8]}",
              "description": body.get("description") or "", "organization_id": _organization(req),
              "created_at": stamp, "updated_at": stamp, "editable": True, "deletable": True, "managed": False,
              "tags": body.get("tags") or [], **_principal(lab, body)}
    _set_rules(lab, policy["id"], body.get("rules"))
    lab.objects("iam_policy")[policy["id"]] = policy
    lab.store.save()
    # Scaleway counts a policy's rules after answering its creation.
    return 200, {**policy, "nb_rules": 0, "nb_scopes": 0, "nb_permission_sets": 0}


def _get_policy(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _policy_view(lab, _found(lab, "iam_policy", "policy", req.params["id"]))


def _update_policy(lab: Lab, req: Request) -> tuple[int, dict]:
    policy = _found(lab, "iam_policy", "policy", req.params["id"])
    body = req.json
    if any(body.get(name) for name in PRINCIPALS):
        principal = _principal(lab, body)
        for name in PRINCIPALS:
            policy.pop(name, None)
        policy.update(principal)
    _changed(policy, body, ("name", "description", "tags"))
    lab.store.save()
    return 200, _policy_view(lab, policy)


def _delete_policy(lab: Lab, req: Request) -> tuple[int, None]:
    policy = _found(lab, "iam_policy", "policy", req.params["id"])
    del lab.objects("iam_policy")[policy["id"]]
    lab.objects("iam_rules").pop(policy["id"], None)
    lab.store.save()
    return 204, None


def _list_policies(lab: Lab, req: Request) -> tuple[int, dict]:
    policies = [_policy_view(lab, policy) for policy in lab.objects("iam_policy").values()]
    return 200, _listed(req, "policies", policies, {
        "organization_id": _equals("organization_id"), "application_ids": _equals("application_id"),
        "policy_ids": _equals("id"), "tag": _tagged, "policy_name": lambda policy, values: values[0] in policy["name"]})


def _list_rules(lab: Lab, req: Request) -> tuple[int, dict]:
    policy_id = req.arg("policy_id")
    if not policy_id:
        raise invalid("policy_id", "required", reason="required")
    return 200, _page(req, "rules", _rules(lab, _found(lab, "iam_policy", "policy", policy_id)["id"]))


def _put_rules(lab: Lab, req: Request) -> tuple[int, dict]:
    policy = _found(lab, "iam_policy", "policy", req.json.get("policy_id") or "")
    rules = _set_rules(lab, policy["id"], req.json.get("rules"))
    policy["updated_at"] = now()
    lab.store.save()
    return 200, {"rules": rules}


def _list_permission_sets(lab: Lab, req: Request) -> tuple[int, dict]:
    # Stable IDs: a permission set is the same object on every call.
    sets = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"scaleway-permission-set:{name}")), "name": name,
             "scope_type": scope_type, "description": name, "categories": None}
            for name, scope_type in sorted(PERMISSION_SETS.items())]
    return 200, _page(req, "permission_sets", sets)


def register(lab: Lab) -> None:
    lab.authenticate = authenticate
    lab.add(route("POST", f"{API}/applications", _create_application),
            route("GET", f"{API}/applications", _list_applications),
            route("GET", f"{API}/applications/{{id}}", _get_application),
            route("PATCH", f"{API}/applications/{{id}}", _update_application),
            route("DELETE", f"{API}/applications/{{id}}", _delete_application),
            route("POST", f"{API}/api-keys", _create_api_key),
            route("GET", f"{API}/api-keys", _list_api_keys),
            route("GET", f"{API}/api-keys/{{access_key}}", _get_api_key),
            route("PATCH", f"{API}/api-keys/{{access_key}}", _update_api_key),
            route("DELETE", f"{API}/api-keys/{{access_key}}", _delete_api_key),
            route("POST", f"{API}/policies", _create_policy),
            route("GET", f"{API}/policies", _list_policies),
            route("GET", f"{API}/policies/{{id}}", _get_policy),
            route("PATCH", f"{API}/policies/{{id}}", _update_policy),
            route("DELETE", f"{API}/policies/{{id}}", _delete_policy),
            route("GET", f"{API}/rules", _list_rules),
            route("PUT", f"{API}/rules", _put_rules),
            route("GET", f"{API}/permission-sets", _list_permission_sets))
