"""Edge Services API (edge-services/v1beta1): the project's plan, pipelines and their stages.

Not region-scoped: pipelines live at /edge-services/v1beta1/pipelines, each stage type
at /<type>-stages/{id} and is created under its pipeline. A stage links to the next one
(dns → tls → cache → backend); a pipeline serves once a DNS stage is its head: until
then it is `warning` with a `pipeline_missing_head_stage` error, then `pending`, then
`ready` (as recorded). Its 404 is the bare `{"message": "Not Found"}` of this API.

The data plane: the lab's proxy (lab/objectstorage.py) answers HTTPS for the hosts of the
pipelines this process serves (`cdn_route`): a DNS stage's `default_fqdn`
(<pipeline id>.svc.edge.scw.cloud) or one of its `fqdns`, followed along the stages'
links to the backend stage's bucket.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lab.api import ApiError, Handler, Kind, Lab, Request, invalid, matches, new_id, now, route

API = "/edge-services/v1beta1"
PLANS = ("starter", "professional", "advanced")
ORIGINS = ("scaleway_s3", "scaleway_lb", "scaleway_serverless_container", "scaleway_serverless_function")
MISSING_HEAD = {"code": "pipeline_missing_head_stage", "message": "first (head) stage missing",
                "severity": "critical", "stage": "unknown_stage", "type": "config"}
# Only its statuses are used: pipelines have routes of their own, not the generic ones.
# Two reads: nothing answers the head stage's setting with the pipeline, so one GET sees it pending.
PIPELINE = Kind("edge-services/v1beta1", "global", "pipelines", "pipelines", "edge_pipeline", lambda lab, req: {},
                statuses=("pending", "ready"), settle_reads=2)


# The lab this process serves: the proxy beside it serves its pipelines' hosts.
_serving: list[Lab] = []


def _not_found() -> ApiError:
    return ApiError(404, {"message": "Not Found"})


def _find(lab: Lab, collection: str, object_id: str) -> dict:
    found = lab.objects(collection).get(object_id)
    if found is None:
        raise _not_found()
    return found


def _page(req: Request, key: str, found: list[dict]) -> dict:
    page = int(req.arg("page", "1") or 1)
    return {key: found if page == 1 else [], "total_count": len(found)}


# --- plan -------------------------------------------------------------------------------------

def _select_plan(lab: Lab, req: Request) -> tuple[int, dict]:
    plan_name, project = req.json.get("plan_name"), req.json.get("project_id")
    if plan_name not in PLANS:
        raise invalid("plan_name", f"plan must be one of {', '.join(PLANS)}")
    lab.objects("edge_plan")[project] = {"plan_name": plan_name}
    lab.store.save()
    return 200, {"plan_name": plan_name}


def _current_plan(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _find(lab, "edge_plan", req.params["project_id"])


def _delete_plan(lab: Lab, req: Request) -> tuple[int, None]:
    _find(lab, "edge_plan", req.params["project_id"])
    del lab.objects("edge_plan")[req.params["project_id"]]
    lab.store.save()
    return 204, None


# --- pipelines ----------------------------------------------------------------------------------

def _heads(lab: Lab, pipeline_id: str) -> list[str]:
    return lab.store.meta.setdefault(pipeline_id, {}).setdefault("head_stage_ids", [])


def _pipeline_view(lab: Lab, pipeline: dict) -> dict:
    lab.settle(PIPELINE, pipeline)
    return {**pipeline, "errors": [] if _heads(lab, pipeline["id"]) else [MISSING_HEAD]}


def _create_pipeline(lab: Lab, req: Request) -> tuple[int, dict]:
    body, stamp = req.json, now()
    pipeline = {"id": new_id(), "name": body.get("name") or "", "description": body.get("description") or "",
                "status": "warning", "project_id": body.get("project_id"),
                "organization_id": body.get("project_id"), "created_at": stamp, "updated_at": stamp,
                "vpc_endpoint_ids": []}
    lab.objects(PIPELINE)[pipeline["id"]] = pipeline
    lab.store.save()
    return 200, _pipeline_view(lab, pipeline)


def _get_pipeline(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _pipeline_view(lab, _find(lab, PIPELINE.resource, req.params["id"]))


def _list_pipelines(lab: Lab, req: Request) -> tuple[int, dict]:
    found = [_pipeline_view(lab, pipeline) for pipeline in lab.objects(PIPELINE).values() if matches(pipeline, req)]
    return 200, _page(req, "pipelines", found)


def _update_pipeline(lab: Lab, req: Request) -> tuple[int, dict]:
    pipeline = _find(lab, PIPELINE.resource, req.params["id"])
    for key in ("name", "description"):
        if req.json.get(key) is not None:
            pipeline[key] = req.json[key]
    pipeline["updated_at"] = now()
    lab.store.save()
    return 200, _pipeline_view(lab, pipeline)


def _delete_pipeline(lab: Lab, req: Request) -> tuple[int, None]:
    pipeline = _find(lab, PIPELINE.resource, req.params["id"])
    for stage_type in STAGE_TYPES:  # its stages go with it (as recorded: they 404 afterwards)
        stages = lab.objects(stage_type.collection)
        for stage_id in [sid for sid, stage in stages.items() if stage["pipeline_id"] == pipeline["id"]]:
            del stages[stage_id]
    del lab.objects(PIPELINE)[pipeline["id"]]
    lab.store.meta.pop(pipeline["id"], None)
    lab.store.save()
    return 204, None


def _set_heads(lab: Lab, pipeline: dict, heads: list[str]) -> None:
    """A pipeline given its first head starts serving (pending, then ready); without one it warns."""
    had_heads = bool(_heads(lab, pipeline["id"]))
    lab.store.meta[pipeline["id"]]["head_stage_ids"] = heads
    if heads and not had_heads:
        lab.set_transient(PIPELINE, pipeline)
    elif not heads:
        pipeline["status"] = "warning"
        lab.store.meta[pipeline["id"]].pop("reads_left", None)
    pipeline["updated_at"] = now()


def _set_head_stage(lab: Lab, req: Request) -> tuple[int, dict]:
    pipeline = _find(lab, PIPELINE.resource, req.params["id"])
    body, heads = req.json, list(_heads(lab, pipeline["id"]))

    def own_dns_stage(argument: str, stage_id: str) -> str:
        stage = lab.objects(DNS.collection).get(stage_id)
        if stage is None or stage["pipeline_id"] != pipeline["id"]:
            raise invalid(argument, f"{stage_id!r} is not a DNS stage of pipeline {pipeline['id']}")
        return stage_id

    if body.get("add_new_head_stage"):
        new_head = own_dns_stage("add_new_head_stage.new_stage_id", body["add_new_head_stage"].get("new_stage_id"))
        heads += [] if new_head in heads else [new_head]
    elif body.get("remove_head_stage"):
        removed = body["remove_head_stage"].get("remove_stage_id")
        if removed not in heads:
            raise _not_found()
        heads.remove(removed)
    elif body.get("swap_head_stage"):
        swap = body["swap_head_stage"]
        if swap.get("current_stage_id") not in heads:
            raise _not_found()
        heads[heads.index(swap["current_stage_id"])] = own_dns_stage("swap_head_stage.new_stage_id",
                                                                     swap.get("new_stage_id"))
    else:
        raise invalid("add_new_head_stage", "one of add_new_head_stage, remove_head_stage, swap_head_stage")
    _set_heads(lab, pipeline, heads)
    lab.store.save()
    return 200, {"head_stage": {"dns_stage_id": heads[0]} if heads else {}}


def _list_head_stages(lab: Lab, req: Request) -> tuple[int, dict]:
    pipeline = _find(lab, PIPELINE.resource, req.params["id"])
    return 200, _page(req, "head_stages", [{"dns_stage_id": head} for head in _heads(lab, pipeline["id"])])


# --- stages ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageType:
    name: str  # "dns": URL segment dns-stages
    links: tuple[str, ...]  # the next stage it may point to: at most one of these
    defaults: dict
    apply: Callable[[dict, dict], None]  # the request's fields onto the stage

    @property
    def collection(self) -> str:
        return f"edge_{self.name}_stage"


def _apply_dns(stage: dict, body: dict) -> None:
    for key in ("fqdns", "wildcard_domain", "full_private"):
        if body.get(key) is not None:
            stage[key] = body[key]
    # Custom domains behind a TLS stage get managed DNS; without a custom domain, only the default one.
    stage["type"] = ("managed" if stage.get("tls_stage_id") else "custom") if stage["fqdns"] else "auto"


def _apply_tls(stage: dict, body: dict) -> None:
    secrets = body.get("secrets")
    if body.get("tls_secrets_config") is not None:
        secrets = body["tls_secrets_config"].get("tls_secrets") or []
    if secrets is not None:
        stage["secrets"] = [{"secret_id": secret.get("secret_id"), "region": secret.get("region")}
                            for secret in secrets]
    if body.get("managed_certificate") is not None:
        stage["managed_certificate"] = body["managed_certificate"]


def _duration(text: str) -> str:
    """Durations are sent as "3600.000000000s" and answered as "3600s"."""
    try:
        seconds = float(str(text).removesuffix("s"))
    except ValueError:
        raise invalid("fallback_ttl", f"{text!r} is not a duration") from None
    return f"{int(seconds)}s" if seconds.is_integer() else f"{seconds}s"


def _apply_cache(stage: dict, body: dict) -> None:
    if body.get("fallback_ttl") is not None:
        stage["fallback_ttl"] = _duration(body["fallback_ttl"])
    if body.get("include_cookies") is not None:
        stage["include_cookies"] = body["include_cookies"]


def _apply_backend(stage: dict, body: dict) -> None:
    given = [origin for origin in ORIGINS if body.get(origin) is not None]
    if len(given) > 1:
        raise invalid(given[1], "a backend stage has exactly one origin")
    if given:
        for origin in ORIGINS:
            stage.pop(origin, None)
        stage[given[0]] = body[given[0]]
    if not any(origin in stage for origin in ORIGINS):
        raise invalid("scaleway_s3", "a backend stage needs an origin")
    bucket = stage.get("scaleway_s3")
    if bucket is not None and not bucket.get("bucket_name"):
        raise invalid("scaleway_s3.bucket_name", "the origin bucket needs a name")


DNS = StageType("dns", ("tls_stage_id", "cache_stage_id", "backend_stage_id"),
                {"fqdns": [], "wildcard_domain": False, "full_private": False, "default_private_fqdn": ""}, _apply_dns)
TLS = StageType("tls", ("cache_stage_id", "backend_stage_id", "route_stage_id", "waf_stage_id"),
                {"secrets": [], "managed_certificate": False, "certificate_expires_at": None}, _apply_tls)
CACHE = StageType("cache", ("backend_stage_id", "waf_stage_id", "route_stage_id"),
                  {"fallback_ttl": "3600s", "include_cookies": False}, _apply_cache)
BACKEND = StageType("backend", (), {}, _apply_backend)
STAGE_TYPES = (DNS, TLS, CACHE, BACKEND)
LINK_TARGETS = {"tls_stage_id": TLS, "cache_stage_id": CACHE, "backend_stage_id": BACKEND}


def _stage_view(lab: Lab, stage: dict) -> dict:
    pipeline = lab.objects(PIPELINE).get(stage["pipeline_id"], {})
    return {**stage, "status": "active" if pipeline.get("status") == "ready" else "inactive"}


def _set_link(lab: Lab, stage_type: StageType, stage: dict, body: dict) -> None:
    """The stage's next stage, if the request names one (naming one unlinks the others)."""
    named = [key for key in stage_type.links if body.get(key) is not None]
    if len(named) > 1:
        raise invalid(named[1], f"a {stage_type.name} stage links to one next stage: {' or '.join(named)}")
    if not named:
        return
    key, target_id = named[0], body[named[0]]
    if target_id:
        target_type = LINK_TARGETS.get(key)
        target = lab.objects(target_type.collection).get(target_id) if target_type else None
        if target is None or target["pipeline_id"] != stage["pipeline_id"]:
            raise invalid(key, f"{target_id!r} is not a stage of pipeline {stage['pipeline_id']} the lab holds")
    for link in stage_type.links:
        stage.pop(link, None)
    if target_id:
        stage[key] = target_id


def _create_stage(stage_type: StageType) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        pipeline = _find(lab, PIPELINE.resource, req.params["id"])
        stamp = now()
        stage = {"id": new_id(), "pipeline_id": pipeline["id"], **stage_type.defaults, "created_at": stamp,
                 "updated_at": stamp}
        if stage_type is DNS:  # the pipeline's own host, whether or not custom domains come on top
            stage["default_fqdn"] = f"{pipeline['id']}.svc.edge.scw.cloud"
        _set_link(lab, stage_type, stage, req.json)
        stage_type.apply(stage, req.json)
        lab.objects(stage_type.collection)[stage["id"]] = stage
        lab.store.save()
        return 200, _stage_view(lab, stage)
    return handler


def _get_stage(stage_type: StageType) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        return 200, _stage_view(lab, _find(lab, stage_type.collection, req.params["id"]))
    return handler


def _list_stages(stage_type: StageType) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        pipeline = _find(lab, PIPELINE.resource, req.params["id"])
        found = [_stage_view(lab, stage) for stage in lab.objects(stage_type.collection).values()
                 if stage["pipeline_id"] == pipeline["id"]]
        return 200, _page(req, "stages", found)
    return handler


def _update_stage(stage_type: StageType) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        stage = dict(_find(lab, stage_type.collection, req.params["id"]))  # a copy: nothing changes on a 400
        _set_link(lab, stage_type, stage, req.json)
        stage_type.apply(stage, req.json)
        stage["updated_at"] = now()
        lab.objects(stage_type.collection)[stage["id"]] = stage
        lab.store.save()
        return 200, _stage_view(lab, stage)
    return handler


def _delete_stage(stage_type: StageType) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, None]:
        stage = _find(lab, stage_type.collection, req.params["id"])
        pipeline = lab.objects(PIPELINE).get(stage["pipeline_id"])
        if pipeline and stage["id"] in _heads(lab, pipeline["id"]):
            _set_heads(lab, pipeline, [head for head in _heads(lab, pipeline["id"]) if head != stage["id"]])
        del lab.objects(stage_type.collection)[stage["id"]]
        lab.store.save()
        return 204, None
    return handler


# --- the data plane's view ----------------------------------------------------------------------

DEFAULT_HOST = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.svc\.edge\.scw\.cloud$")
MAX_HOPS = 8  # dns → tls → cache → backend is four; more is a loop


@dataclass(frozen=True)
class CdnRoute:
    """Where a request to a pipeline's host goes: the backend stage's bucket, or why nowhere."""

    pipeline_id: str
    bucket: str = ""
    region: str = ""
    broken: str = ""  # the broken link, when the chain reaches no bucket (the proxy answers 502)


def _names(host: str, stage: dict) -> bool:
    """The DNS stage serves this custom domain (a wildcard stage: its subdomains too)."""
    for fqdn in stage.get("fqdns") or []:
        fqdn = fqdn.lower().rstrip(".")
        if host == fqdn or (stage.get("wildcard_domain") and host.endswith("." + fqdn)
                            and "." not in host[:-len(fqdn) - 1]):
            return True
    return False


def _entry(lab: Lab, host: str) -> tuple[dict, dict | None, str, bool] | None:
    """(pipeline, its DNS stage serving `host` or None, why not, custom domain?) — None for a
    host no pipeline of the lab has."""
    found = DEFAULT_HOST.match(host)
    if found:
        pipeline = lab.objects(PIPELINE).get(found.group(1))
        if pipeline is None:
            return None
        stages = lab.objects(DNS.collection)
        heads = [stages[head] for head in _heads(lab, pipeline["id"]) if head in stages]
        if not heads:
            return pipeline, None, f"pipeline {pipeline['id']} has no head (DNS) stage", False
        return pipeline, heads[0], "", False
    for stage in lab.objects(DNS.collection).values():
        if _names(host, stage):
            pipeline = lab.objects(PIPELINE).get(stage["pipeline_id"])
            if pipeline is None:
                continue
            if stage["id"] not in _heads(lab, pipeline["id"]):
                return pipeline, None, (f"DNS stage {stage['id']} (for {host}) is not a head stage of pipeline "
                                        f"{pipeline['id']}"), True
            return pipeline, stage, "", True
    return None


def _follow(lab: Lab, dns_stage: dict, custom_domain: bool) -> tuple[dict | None, str]:
    """The backend stage the DNS stage's links lead to, or why none."""
    stage_type, stage, through_tls = DNS, dns_stage, False
    for _ in range(MAX_HOPS):
        if stage_type is BACKEND:
            if custom_domain and not through_tls:
                return None, f"no TLS stage between DNS stage {dns_stage['id']} and the backend: no certificate"
            return stage, ""
        through_tls = through_tls or stage_type is TLS
        links = [key for key in stage_type.links if stage.get(key)]
        if not links:
            return None, f"{stage_type.name} stage {stage['id']} links to no next stage"
        next_type = LINK_TARGETS.get(links[0])
        if next_type is None:
            return None, (f"{stage_type.name} stage {stage['id']} links to a {links[0].removesuffix('_stage_id')} "
                          "stage, which the lab does not serve")
        next_stage = lab.objects(next_type.collection).get(stage[links[0]])
        if next_stage is None:
            return None, (f"{stage_type.name} stage {stage['id']} links to {next_type.name} stage {stage[links[0]]}, "
                          "which does not exist")
        stage_type, stage = next_type, next_stage
    return None, f"the stages from DNS stage {dns_stage['id']} loop"


def cdn_route(host: str) -> CdnRoute | None:
    """Where the lab's pipelines send a request for `host`; None if no pipeline has that host
    (the proxy then refuses it, as for any other name)."""
    host = host.lower().rstrip(".")
    for lab in _serving:
        with lab.store.lock:
            entry = _entry(lab, host)
            if entry is None:
                continue
            pipeline, dns_stage, why_not, custom_domain = entry
            if dns_stage is None:
                return CdnRoute(pipeline["id"], broken=why_not)
            backend, why_not = _follow(lab, dns_stage, custom_domain)
            if backend is None:
                return CdnRoute(pipeline["id"], broken=why_not)
            bucket = backend.get("scaleway_s3")
            if not bucket:
                origin = next((origin for origin in ORIGINS if origin in backend), "none")
                return CdnRoute(pipeline["id"], broken=f"backend stage {backend['id']}'s origin ({origin}) is no "
                                                       "bucket: the lab serves Object Storage origins only")
            return CdnRoute(pipeline["id"], bucket=bucket["bucket_name"],
                            region=bucket.get("bucket_region") or "fr-par")
    return None


def register(lab: Lab) -> None:
    _serving[:] = [lab]
    lab.add_kind(PIPELINE, with_routes=False)
    lab.add(route("PATCH", API + "/current-plan", _select_plan),
            route("GET", API + "/current-plan/{project_id}", _current_plan),
            route("DELETE", API + "/current-plan/{project_id}", _delete_plan),
            route("POST", API + "/pipelines", _create_pipeline),
            route("GET", API + "/pipelines", _list_pipelines),
            route("GET", API + "/pipelines/{id}", _get_pipeline),
            route("PATCH", API + "/pipelines/{id}", _update_pipeline),
            route("DELETE", API + "/pipelines/{id}", _delete_pipeline),
            route("POST", API + "/pipelines/{id}/set-head-stage", _set_head_stage),
            route("GET", API + "/pipelines/{id}/head-stages", _list_head_stages))
    for stage_type in STAGE_TYPES:
        segment = f"{stage_type.name}-stages"
        lab.add(route("POST", f"{API}/pipelines/{{id}}/{segment}", _create_stage(stage_type)),
                route("GET", f"{API}/pipelines/{{id}}/{segment}", _list_stages(stage_type)),
                route("GET", f"{API}/{segment}/{{id}}", _get_stage(stage_type)),
                route("PATCH", f"{API}/{segment}/{{id}}", _update_stage(stage_type)),
                route("DELETE", f"{API}/{segment}/{{id}}", _delete_stage(stage_type)))
