"""The lab's CDN (Edge Services data plane): the proxy answers the hosts of the pipelines the
lab's API holds — a DNS stage's default_fqdn and custom domains — following the pipeline's
stages to its backend bucket, read anonymously as the bucket's policy allows. Driven as
`ciel verify` drives it: pipelines through the real `scaleway` SDK, the object uploaded
with a presigned PUT (boto3), read back with a plain HTTPS GET through the proxy."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from scaleway.edge_services.v1beta1 import (EdgeServicesV1Beta1API, PlanName, ScalewayS3BackendConfig,
                                            SetHeadStageRequestAddNewHeadStage)

from lab.objectstorage import anonymous_read
from tests.lab_proxy_support import proxied_lab  # noqa: F401 (the fixture)

CUSTOM = "cdn.ciel.example.com"


def public_read(bucket: str, prefix: str = "public/") -> str:
    """infra/constructs/storage.py's policy: the app's key reads and writes, anyone reads public/."""
    return json.dumps({"Version": "2023-04-17", "Id": "ciel-media", "Statement": [
        {"Sid": "AppObjectsReadWrite", "Effect": "Allow",
         "Principal": {"SCW": "application_id:5b1c2d3e-0000-4000-8000-00000000abcd"},
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
         "Resource": [bucket, f"{bucket}/*"]},
        {"Sid": "CdnReadsPublicPrefixOnly", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
         "Resource": [f"{bucket}/{prefix}*"]}]})


def pipeline(edge: EdgeServicesV1Beta1API, bucket: str, *, fqdns: list[str] | None = None, region: str = "fr-par"):
    """infra/constructs/cdn.py's chain: head → dns → tls → cache → backend (the bucket)."""
    edge.select_plan(plan_name=PlanName.STARTER)
    created = edge.create_pipeline(name=f"ciel-{bucket}", description="Media bucket CDN")
    backend = edge.create_backend_stage(pipeline_id=created.id, scaleway_s3=ScalewayS3BackendConfig(
        bucket_name=bucket, bucket_region=region, is_website=False))
    cache = edge.create_cache_stage(pipeline_id=created.id, backend_stage_id=backend.id, fallback_ttl="3600s")
    tls = edge.create_tls_stage(pipeline_id=created.id, cache_stage_id=cache.id, managed_certificate=True)
    dns = edge.create_dns_stage(pipeline_id=created.id, tls_stage_id=tls.id, fqdns=fqdns)
    edge.set_head_stage(pipeline_id=created.id, add_new_head_stage=SetHeadStageRequestAddNewHeadStage(
        new_stage_id=dns.id))
    return created, dns, tls, cache, backend


def upload(lab, bucket: str, key: str, body: bytes) -> None:
    """As `ciel verify` uploads: a presigned PUT, through the proxy."""
    url = lab.s3().generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key,
                                                                "ContentType": "text/plain"}, ExpiresIn=300)
    answer = requests.put(url, data=body, headers={"Content-Type": "text/plain"}, timeout=10,
                          proxies={"https": lab.proxy_url}, verify=str(lab.ca_file))
    assert answer.status_code == 200, answer.text


def new_bucket(lab) -> str:
    bucket = f"ciel-cdn-{uuid.uuid4().hex[:10]}"
    lab.s3().create_bucket(Bucket=bucket)
    return bucket


def test_the_cdn_serves_the_public_prefix_its_policy_opens_and_502s_once_its_backend_is_gone(proxied_lab):
    lab = proxied_lab
    edge = EdgeServicesV1Beta1API(lab.sdk())
    bucket = new_bucket(lab)
    created, dns, _, cache, backend = pipeline(edge, bucket, fqdns=[CUSTOM])
    host = dns.default_fqdn
    assert host == f"{created.id}.svc.edge.scw.cloud"
    key, body = f"public/verify/{uuid.uuid4().hex}.txt", b"ciel verify dev\n"
    upload(lab, bucket, key, body)
    upload(lab, bucket, "private/secret.txt", b"not for anyone")

    # No policy yet: nobody may read anonymously.
    status, headers, answer = lab.https("GET", host, f"/{key}")
    assert status == 403 and b"<Code>AccessDenied</Code>" in answer

    lab.s3().put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    for served in (host, CUSTOM):  # the default host and the custom domain, each with a lab CA certificate
        status, headers, answer = lab.https("GET", served, f"/{key}")
        assert (status, answer) == (200, body), (served, status, answer)
        assert headers["content-type"] == "text/plain" and "server" not in headers
    status, headers, answer = lab.https("HEAD", host, f"/{key}")
    assert (status, headers["content-length"], answer) == (200, str(len(body)), b"")
    status, headers, answer = lab.https("GET", host, f"/{key}", headers={"Range": "bytes=0-3"})
    assert (status, answer) == (206, body[:4])
    # Outside public/: refused; a missing object under it: 404; not a reading method: 405.
    assert lab.https("GET", host, "/private/secret.txt")[0] == 403
    assert lab.https("GET", host, "/")[0] == 403
    assert lab.https("GET", host, "/public/verify/missing.txt")[0] == 404
    assert lab.https("PUT", host, f"/{key}", body=b"x")[0] == 405

    # The route is removed: the backend stage deleted, the cache stage still points at it.
    edge.delete_backend_stage(backend_stage_id=backend.id)
    status, _, answer = lab.https("GET", host, f"/{key}")
    assert status == 502
    assert f"cache stage {cache.id} links to backend stage {backend.id}, which does not exist".encode() in answer

    # Once the pipeline is gone, its hosts are refused by name like any other.
    edge.delete_pipeline(pipeline_id=created.id)
    for gone in (host, CUSTOM):
        assert lab.connect(gone).startswith(b"403 the lab emulates only"), gone


def test_hosts_of_no_pipeline_are_refused_by_name(proxied_lab):
    lab = proxied_lab
    for host in (f"{uuid.uuid4()}.svc.edge.scw.cloud", "cdn.other.example.com", "svc.edge.scw.cloud",
                 "example.com"):
        assert lab.connect(host).startswith(b"403 the lab emulates only"), host
    with pytest.raises(requests.exceptions.ProxyError):
        lab.https("GET", f"{uuid.uuid4()}.svc.edge.scw.cloud", "/public/x")


def test_a_broken_chain_answers_502_naming_the_broken_link(proxied_lab):
    lab = proxied_lab
    edge = EdgeServicesV1Beta1API(lab.sdk())
    bucket = new_bucket(lab)
    upload(lab, bucket, "public/a.txt", b"a")
    lab.s3().put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    created, dns, tls, cache, backend = pipeline(edge, bucket, fqdns=[CUSTOM])
    host = dns.default_fqdn

    # The cache stage unlinked from the backend (a link naming no stage clears it).
    edge.update_cache_stage(cache_stage_id=cache.id, backend_stage_id="")
    status, _, answer = lab.https("GET", host, "/public/a.txt")
    assert status == 502 and f"cache stage {cache.id} links to no next stage".encode() in answer
    edge.update_cache_stage(cache_stage_id=cache.id, backend_stage_id=backend.id)
    assert lab.https("GET", host, "/public/a.txt")[0] == 200

    # The DNS stage straight to the backend: the default host serves, the custom domain
    # (no TLS stage, no certificate for it) does not.
    edge.update_dns_stage(dns_stage_id=dns.id, backend_stage_id=backend.id)
    status, _, answer = lab.https("GET", host, "/public/a.txt")
    assert (status, answer) == (200, b"a")
    status, _, answer = lab.https("GET", CUSTOM, "/public/a.txt")
    assert status == 502 and b"no TLS stage" in answer

    # Without its head stage, the pipeline serves nothing.
    from scaleway.edge_services.v1beta1 import SetHeadStageRequestRemoveHeadStage

    edge.set_head_stage(pipeline_id=created.id,
                        remove_head_stage=SetHeadStageRequestRemoveHeadStage(remove_stage_id=dns.id))
    status, _, answer = lab.https("GET", host, "/public/a.txt")
    assert status == 502 and f"pipeline {created.id} has no head (DNS) stage".encode() in answer

    # A backend bucket that does not exist (or not in the backend's region).
    _, other_dns, _, _, _ = pipeline(edge, "ciel-no-such-bucket-here")
    status, _, answer = lab.https("GET", other_dns.default_fqdn, "/public/a.txt")
    assert status == 502 and b"bucket ciel-no-such-bucket-here does not exist in fr-par" in answer
    _, elsewhere, _, _, _ = pipeline(edge, bucket, region="nl-ams")
    status, _, answer = lab.https("GET", elsewhere.default_fqdn, "/public/a.txt")
    assert status == 502 and f"bucket {bucket} is in fr-par, not nl-ams".encode() in answer


@pytest.mark.parametrize("statement, key, allowed", [
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "b/public/*"}, "public/x", True),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "b/public/*"}, "private/x", False),
    ({"Effect": "Allow", "Principal": "*", "Action": ["s3:*"], "Resource": ["b/*"]}, "any/key", True),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:Get*", "Resource": "b/*"}, "k", True),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": "b/*"}, "k", False),
    ({"Effect": "Allow", "Principal": {"SCW": "application_id:x"}, "Action": "s3:*", "Resource": "b/*"}, "k", False),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "other/*"}, "k", False),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "b/*",
      "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}, "k", False),
])
def test_the_anonymous_read_of_a_policy(statement, key, allowed):
    assert anonymous_read(json.dumps({"Version": "2023-04-17", "Statement": [statement]}), "b", key) is allowed


def test_a_deny_wins_and_no_policy_allows_nothing():
    allow = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "b/*"}
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "b/public/secret/*"}
    policy = json.dumps({"Statement": [allow, deny]})
    assert anonymous_read(policy, "b", "public/a") and not anonymous_read(policy, "b", "public/secret/a")
    assert not anonymous_read(None, "b", "k") and not anonymous_read("not json", "b", "k")
