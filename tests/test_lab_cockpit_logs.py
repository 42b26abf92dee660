"""The lab's Cockpit logs: each logs data source's host answers a subset of Loki's API through
the lab's proxy (push with a write token, query with a query token), and Alloy's emulation
ships what an app machine's process writes, as the user data's configuration says. Sources
and tokens are made through the real `scaleway` SDK; Loki is spoken with plain HTTP clients."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scaleway.cockpit.v1 import CockpitV1RegionalAPI, DataSourceType, TokenScope

from infra.cloudinit.app import AppMachine, app_user_data
from infra.cloudinit.secrets import SecretSource
from lab.dataplane.apps import App, parse_cloud_init
from lab.dataplane.logs import AlloyConfigError, LogStore, parse_logql, start_shipping
from tests.lab_proxy_support import proxied_lab  # noqa: F401 (the fixture)
from tests.lab_support import wait_until

ENV = {"environment": "dev", "app": "ciel", "role": "api"}
SELECTOR = '{environment="dev", app="ciel"}'


def cockpit(lab) -> CockpitV1RegionalAPI:
    return CockpitV1RegionalAPI(lab.sdk())


def logs_source(lab, name: str = "ciel-dev-logs"):
    return cockpit(lab).create_data_source(name=name, type_=DataSourceType.LOGS, retention_days=7)


def token(lab, *scopes: TokenScope, name: str = "token", project_id: str | None = None) -> str:
    """A token's secret key (answered once, by the creation)."""
    return cockpit(lab).create_token(name=name, token_scopes=list(scopes), project_id=project_id).secret_key


def host(source) -> str:
    return source.url.removeprefix("https://")


def push(lab, source, secret: str | None, streams: list[dict], content_type: str = "application/json"):
    headers = {"Content-Type": content_type, **({"X-Token": secret} if secret else {})}
    return lab.https("POST", host(source), "/loki/api/v1/push", headers=headers, body=json.dumps(
        {"streams": streams}).encode())


def query(lab, source, secret: str, endpoint: str = "query_range", bearer: bool = True, **arguments):
    from urllib.parse import urlencode

    headers = {"Authorization": f"Bearer {secret}"} if bearer else {"X-Token": secret}
    status, headers, body = lab.https("GET", host(source), f"/loki/api/v1/{endpoint}?{urlencode(arguments)}",
                                      headers=headers)
    return status, (json.loads(body) if headers.get("content-type", "").startswith("application/json")
                    else body.decode())


def lines(labels: dict, *texts: str, at_ns: int | None = None) -> dict:
    start = at_ns or time.time_ns()
    return {"stream": labels, "values": [[str(start + index), text] for index, text in enumerate(texts)]}


def test_pushed_lines_come_back_to_a_query_token_and_count(proxied_lab):
    lab = proxied_lab
    source = logs_source(lab)
    writer = token(lab, TokenScope.WRITE_ONLY_LOGS, TokenScope.WRITE_ONLY_METRICS, name="ciel-dev-push")
    reader = token(lab, TokenScope.READ_ONLY_LOGS, TokenScope.READ_ONLY_METRICS, name="ciel-dev-verify")
    before = time.time_ns()
    status, _, body = push(lab, source, writer, [lines(ENV, "api listening", "GET /health 200"),
                                                 lines({**ENV, "role": "worker"}, "worker taking jobs"),
                                                 lines({"environment": "prod", "app": "ciel"}, "not dev")])
    assert (status, body) == (204, b"")

    status, answer = query(lab, source, reader, query=SELECTOR, start=str(before), limit="10")
    assert status == 200 and answer["status"] == "success" and answer["data"]["resultType"] == "streams"
    streams = {json.dumps(item["stream"], sort_keys=True): item["values"] for item in answer["data"]["result"]}
    assert len(streams) == 2  # prod's stream is not selected
    api = streams[json.dumps(ENV, sort_keys=True)]
    assert [line for _, line in api] == ["GET /health 200", "api listening"]  # newest first (backward)
    assert all(int(stamp) >= before for stamp, _ in api)
    status, answer = query(lab, source, reader, query=SELECTOR, start=str(before), direction="forward", limit="1")
    assert [item["values"] for item in answer["data"]["result"]] == [[[api[1][0], "api listening"]]]

    # What `ciel verify` asks: an instant count over the last 10 minutes (here with X-Token).
    status, answer = query(lab, source, reader, "query", bearer=False,
                           query=f"count_over_time({SELECTOR}[10m])")
    assert status == 200 and answer["data"]["resultType"] == "vector"
    counts = {item["metric"]["role"]: item["value"][1] for item in answer["data"]["result"]}
    assert counts == {"api": "2", "worker": "1"}
    assert sum(float(item["value"][1]) for item in answer["data"]["result"]) > 0
    # As a range query, a matrix; RFC 3339 times are accepted too.
    start, end = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before / 1e9 + seconds)) for seconds in (-60, 60))
    status, answer = query(lab, source, reader, query='count_over_time({role="api"}[5m])', start=start, end=end,
                           step="1")
    assert status == 200 and answer["data"]["resultType"] == "matrix"
    [series] = answer["data"]["result"]
    assert series["metric"] == ENV and series["values"][-1][1] == "2"

    # The lab keeps the tokens' secret keys as SHA-256 only.
    state = json.dumps(lab.lab.store.collections)
    for secret in (writer, reader):
        assert secret not in state and hashlib.sha256(secret.encode()).hexdigest() in state


def test_tokens_are_let_in_by_scope_project_and_existence(proxied_lab):
    lab = proxied_lab
    source = logs_source(lab)
    writer = token(lab, TokenScope.WRITE_ONLY_LOGS)
    reader = token(lab, TokenScope.READ_ONLY_LOGS)
    metrics_only = token(lab, TokenScope.WRITE_ONLY_METRICS, TokenScope.READ_ONLY_METRICS)
    elsewhere = token(lab, TokenScope.WRITE_ONLY_LOGS, TokenScope.READ_ONLY_LOGS,
                      project_id="11111111-1111-4111-8111-111111111111")
    entry = [lines(ENV, "x")]
    assert push(lab, source, reader, entry)[0] == 403  # a query token cannot write
    assert push(lab, source, metrics_only, entry)[0] == 403
    status, _, body = push(lab, source, elsewhere, entry)
    assert status == 403 and b"project 11111111" in body
    assert push(lab, source, "not-a-token", entry)[0] == 401
    assert push(lab, source, None, entry)[0] == 401
    assert query(lab, source, writer, query=SELECTOR)[0] == 403  # a push token cannot read
    assert query(lab, source, "not-a-token", query=SELECTOR)[0] == 401
    assert push(lab, source, writer, entry)[0] == 204

    # A deleted token is refused at once.
    api = cockpit(lab)
    [listed] = [item for item in api.list_tokens().tokens if item.scopes == [TokenScope.READ_ONLY_LOGS]]
    assert query(lab, source, reader, query=SELECTOR)[0] == 200
    api.delete_token(token_id=listed.id)
    assert query(lab, source, reader, query=SELECTOR)[0] == 401


def test_what_the_lab_does_not_serve_is_refused_with_lokis_shapes(proxied_lab):
    lab = proxied_lab
    source = logs_source(lab)
    writer, reader = token(lab, TokenScope.WRITE_ONLY_LOGS), token(lab, TokenScope.READ_ONLY_LOGS)
    # Alloy's own format (snappy protobuf) is not emulated.
    status, headers, body = push(lab, source, writer, [lines(ENV, "x")], content_type="application/x-protobuf")
    assert status == 415 and headers["content-type"].startswith("text/plain")
    status, _, _ = lab.https("POST", host(source), "/loki/api/v1/push", body=b"{}",
                             headers={"X-Token": writer, "Content-Type": "application/json",
                                      "Content-Encoding": "snappy"})
    assert status == 415
    assert push(lab, source, writer, [{"stream": {}, "values": [["1", "x"]]}])[0] == 400
    assert push(lab, source, writer, [{"stream": ENV, "values": [[1, "x"]]}])[0] == 400
    # Wrong path (a push URL with the path twice, say): 404, as Loki.
    status, _, body = lab.https("POST", host(source), "/loki/api/v1/push/loki/api/v1/push",
                                headers={"X-Token": writer, "Content-Type": "application/json"}, body=b"{}")
    assert (status, body) == (404, b"404 page not found\n")

    for text, message in ((f"{SELECTOR} |= \"error\"", "no line filter"), ('{app=~"ci.*"}', "=~"),
                          ('sum(count_over_time({app="ciel"}[5m]))', "not sum"), ('{app=""}', "empty-compatible"),
                          ("{app=ciel}", "parse error at line 1, col 6")):
        status, body = query(lab, source, reader, query=text)
        assert status == 400 and message in body, (text, body)
    status, body = query(lab, source, reader, "query", query=SELECTOR)  # Loki 3: log queries are range queries
    assert status == 400 and "log queries are not supported as an instant query type" in body
    status, body = query(lab, source, reader, query=SELECTOR, limit="5001")
    assert status == 400 and "max entries limit" in body


def test_only_logs_sources_the_lab_holds_are_served(proxied_lab):
    lab = proxied_lab
    source = logs_source(lab)
    metrics = cockpit(lab).create_data_source(name="m", type_=DataSourceType.METRICS)
    assert lab.connect(host(source)).startswith(b"200")
    assert lab.connect(host(metrics)).startswith(b"403 the lab emulates only")
    assert lab.connect(host(source).replace(source.id, "00000000-0000-4000-8000-000000000000")).startswith(b"403")
    assert lab.connect(host(source).replace("fr-par", "nl-ams")).startswith(b"403")
    cockpit(lab).delete_data_source(data_source_id=source.id)
    assert lab.connect(host(source)).startswith(b"403 the lab emulates only")


def test_a_source_keeps_its_newest_lines_only(proxied_lab):
    lab = proxied_lab
    source = logs_source(lab)
    writer, reader = token(lab, TokenScope.WRITE_ONLY_LOGS), token(lab, TokenScope.READ_ONLY_LOGS)
    first = time.time_ns() - 60 * 10**9
    texts = [f"line {index}" for index in range(10_050)]
    assert push(lab, source, writer, [lines(ENV, *texts, at_ns=first)])[0] == 204
    status, answer = query(lab, source, reader, "query", query=f"count_over_time({SELECTOR}[1h])")
    assert [item["value"][1] for item in answer["data"]["result"]] == ["10000"]
    status, answer = query(lab, source, reader, query=SELECTOR, direction="forward", limit="1",
                           start=str(first - 1))
    assert answer["data"]["result"][0]["values"][0][1] == "line 50"  # the oldest 50 went


def test_logql_subset():
    assert parse_logql('{environment="dev", app="ciel"}').matchers == (("environment", "dev"), ("app", "ciel"))
    assert parse_logql('count_over_time({app="ciel"}[1h30m])').range_ns == 5400 * 10**9
    assert parse_logql('{app=`raw\\string`}').matchers == (("app", "raw\\string"),)
    store = LogStore(max_lines=2)
    store.append("s", [(1, (("a", "b"),), "one"), (2, (("a", "b"),), "two"), (3, (("a", "b"),), "three")])
    assert [line for _, _, line in store.entries("s", 0, 10)] == ["two", "three"]


# --- Alloy ------------------------------------------------------------------------------------------

SECRETS = SecretSource(region="fr-par", project_id="11111111-1111-4111-8111-111111111111", path="/ciel/dev",
                       reader_key="lab-reader-key")
# What Alloy needs to load and ship: the token file's content (a secret, with ciel-secrets'
# newline) as a string header, and the push URL once.
FIXED_HEADER = "string.trim_space(convert.nonsensitive(local.file.cockpit_token.content))"


def machine(push_url: str, role: str = "api") -> AppMachine:
    return AppMachine(role=role, environment="dev", registry_host="rg.fr-par.scw.cloud",
                      image="rg.fr-par.scw.cloud/ciel-dev/ciel:2.3.4", settings={"S3_BUCKET": "media"},
                      secret_env={"DATABASE_URL": "database-url"}, secrets=SECRETS,
                      registry_password_secret="registry-pull-key", stop_timeout_seconds=5,
                      logs_push_url=push_url, logs_token_secret="cockpit-push-token")


def user_data(source_url: str, *, fixed: bool, monkeypatch) -> str:
    """The app machine's user data as ciel renders it (pushing to the source's Loki push
    endpoint); not `fixed`: with the header as it was before Alloy's rules were met."""
    text = app_user_data(machine(source_url + "/loki/api/v1/push"))
    assert FIXED_HEADER in text
    return text if fixed else text.replace(FIXED_HEADER, "local.file.cockpit_token.content")


def app_of(text: str, name: str = "ciel-dev-api-0") -> App:
    return App(server_id="5e7e7e7e-0000-4000-8000-000000000001", name=name, spec=parse_cloud_init(text),
               private_address="10.0.0.10", bind="127.100.0.10", argv=())


def machine_root(tmp_path: Path, secret: str) -> Path:
    """What the machine's ciel-secrets leaves: the token file (value + newline), secrets.json."""
    root = tmp_path / "machine"
    (root / "etc/ciel").mkdir(parents=True)
    (root / "etc/ciel/cockpit-token").write_text(secret + "\n")
    (root / "etc/ciel/secrets.json").write_text(json.dumps({"unit": "ciel.service"}))
    return root


def wait_for(check, seconds: float, what: str):
    return wait_until(check, seconds, what, pause=0.1)


def shipped(lab, source, reader) -> list[tuple[dict, str]]:
    status, answer = query(lab, source, reader, query='{app="ciel"}', direction="forward", limit="1000",
                           start=str(time.time_ns() - 600 * 10**9))
    assert status == 200, answer
    return [(item["stream"], line) for item in answer["data"]["result"] for _, line in item["values"]]


WRITER = """
import sys, time
print("api ciel-dev-api-0 listening", flush=True)
for line in sys.stdin:  # one line per line given, until the test closes stdin
    print(line.strip(), flush=True)
print("drained; exiting", end="", flush=True)  # no newline: the last line is still shipped
"""


def test_the_shipper_ships_what_a_process_writes_with_the_configured_labels(proxied_lab, tmp_path, monkeypatch):
    lab = proxied_lab
    source = logs_source(lab)
    writer, reader = token(lab, TokenScope.WRITE_ONLY_LOGS), token(lab, TokenScope.READ_ONLY_LOGS)
    app = app_of(user_data(source.url, fixed=True, monkeypatch=monkeypatch))
    root = machine_root(tmp_path, writer)
    log_file = tmp_path / "logs" / "app_x.log"  # as the Supervisor names a process's log
    log_file.parent.mkdir()
    with open(log_file, "ab") as output:
        process = subprocess.Popen([sys.executable, "-c", WRITER], stdin=subprocess.PIPE, text=True, stdout=output,
                                   stderr=subprocess.STDOUT)
    said: list[str] = []
    shipper = start_shipping(app, root, log_file, lab.proxy_url, lab.ca_file, log=said.append)
    try:
        wait_for(lambda: shipped(lab, source, reader), 10, "the first line shipped")
        process.stdin.write("GET /health 200\nGET /v1/photos 200\n")
        process.stdin.flush()
        wait_for(lambda: len(shipped(lab, source, reader)) == 3, 10, "three lines shipped")
        process.stdin.close()
        process.wait(5)
    finally:
        shipper.stop()
    got = shipped(lab, source, reader)
    assert [line for _, line in got] == ["api ciel-dev-api-0 listening", "GET /health 200", "GET /v1/photos 200",
                                         "drained; exiting"]
    assert all(labels == ENV for labels, _ in got)
    assert said == [] and not shipper.thread.is_alive()

    # Alloy's position survives it: a new run ships only what is new.
    with open(log_file, "a") as log:
        log.write("\nrestarted\n")
    again = start_shipping(app, root, log_file, lab.proxy_url, lab.ca_file, log=said.append)
    again.stop()
    assert [line for _, line in shipped(lab, source, reader)][-2:] == ["drained; exiting", "restarted"]


def test_the_shipper_says_why_cockpit_refuses_and_ships_nothing(proxied_lab, tmp_path, monkeypatch):
    lab = proxied_lab
    source = logs_source(lab)
    reader = token(lab, TokenScope.READ_ONLY_LOGS)
    app = app_of(user_data(source.url, fixed=True, monkeypatch=monkeypatch))
    log_file = tmp_path / "app.log"
    log_file.write_text("a line\n")
    said: list[str] = []
    start_shipping(app, machine_root(tmp_path, reader), log_file, lab.proxy_url, lab.ca_file,
                   log=said.append).stop()  # the query token cannot push
    assert said and "HTTP status 403" in said[0] and "write_only_logs" in said[0]
    assert shipped(lab, source, reader) == []


def test_the_alloy_config_as_rendered_is_checked_as_alloy_checks_it(proxied_lab, tmp_path, monkeypatch):
    """Alloy refuses a secret (local.file with is_secret = true) as a string header, and Go's
    HTTP client a header value ending in the newline ciel-secrets writes."""
    lab = proxied_lab
    source = logs_source(lab)
    root = machine_root(tmp_path, "secret")
    with pytest.raises(AlloyConfigError, match="secrets may not be converted into strings"):
        start_shipping(app_of(user_data(source.url, fixed=False, monkeypatch=monkeypatch)), root,
                       tmp_path / "a.log", lab.proxy_url, lab.ca_file)
    log_file = tmp_path / "a.log"
    log_file.write_text("a line\n")
    said: list[str] = []
    untrimmed = user_data(source.url, fixed=False, monkeypatch=monkeypatch).replace(
        "local.file.cockpit_token.content", "nonsensitive(local.file.cockpit_token.content)")
    start_shipping(app_of(untrimmed), root, log_file, lab.proxy_url, lab.ca_file, log=said.append).stop()
    assert said == [f'Post "{source.url}/loki/api/v1/push": net/http: invalid header field value for "X-Token"']


def test_the_alloy_config_ciel_renders_ships_the_app_log(proxied_lab, tmp_path):
    lab = proxied_lab
    source = logs_source(lab)
    writer, reader = token(lab, TokenScope.WRITE_ONLY_LOGS), token(lab, TokenScope.READ_ONLY_LOGS)
    provider_push_url = source.url + "/loki/api/v1/push"  # the provider's push_url, what the stack passes
    log_file = tmp_path / "a.log"
    log_file.write_text("api listening\n")
    start_shipping(app_of(app_user_data(machine(provider_push_url))), machine_root(tmp_path, writer), log_file,
                   lab.proxy_url, lab.ca_file).stop()
    assert [line for _, line in shipped(lab, source, reader)] == ["api listening"]


# --- Alloy on the lab's app machines ----------------------------------------------------------------

def test_an_app_machine_ships_its_stand_ins_log_until_it_stops(proxied_lab, tmp_path, monkeypatch):
    """A server whose user data configures Alloy: AppPlane starts its stand-in, then its Alloy,
    which pushes the stand-in's output with the token ciel-secrets wrote; a poweroff drains the
    stand-in and its last lines still arrive."""
    from lab.dataplane.apps import AppPlane
    from lab.runtime import Runtime
    from tests.test_lab_standin import ZONE, _call, _network, _secret, _server, _states

    lab = proxied_lab
    source = logs_source(lab)
    writer, reader = token(lab, TokenScope.WRITE_ONLY_LOGS), token(lab, TokenScope.READ_ONLY_LOGS)
    runtime = Runtime(tmp_path / "runtime")
    logged: list[str] = []
    runtime.apps = AppPlane(runtime.supervisor, tmp_path / "runtime" / "apps", api_url=lab.api_url, log=logged.append,
                            proxy_url=lab.proxy_url, ca_file=lab.ca_file)
    lab.lab.runtime = runtime
    for name, value in (("database-url", "postgres://ciel:lab@10.0.0.3:5432/ciel"),
                        ("registry-pull-key", "lab-password"), ("cockpit-push-token", writer)):
        _secret(lab.lab, name, value)
    try:
        server_id, _ = _server(lab.lab, _network(lab.lab), "ciel-dev-api-0",
                               user_data(source.url, fixed=True, monkeypatch=monkeypatch), nic_first=True)
        got = wait_for(lambda: shipped(lab, source, reader), 20, "the stand-in's first line in Cockpit")
        assert any("standin: api ciel-dev-api-0 2.3.4 listening on" in line for _, line in got), got
        assert all(labels == ENV for labels, _ in got)
        assert runtime.apps.shippers[server_id] is not None

        _call(lab.lab, "POST", f"/instance/v1/zones/{ZONE}/servers/{server_id}/action", {"action": "poweroff"},
              expect=202)
        _states(lab.lab, server_id, "stopped", seconds=20)
        assert server_id not in runtime.apps.shippers
        assert any("drained" in line for _, line in shipped(lab, source, reader)), shipped(lab, source, reader)
        assert not any("alloy:" in line for line in logged), logged
    finally:
        runtime.stop()


def test_an_app_machine_whose_alloy_config_does_not_load_says_so(proxied_lab, tmp_path):
    from lab.dataplane.apps import AppPlane
    from lab.runtime import Runtime
    from tests.test_lab_standin import _network, _secret, _server

    lab = proxied_lab
    source = logs_source(lab)
    runtime = Runtime(tmp_path / "runtime")
    logged: list[str] = []
    runtime.apps = AppPlane(runtime.supervisor, tmp_path / "runtime" / "apps", api_url=lab.api_url, log=logged.append,
                            proxy_url=lab.proxy_url, ca_file=lab.ca_file)
    lab.lab.runtime = runtime
    for name in ("database-url", "registry-pull-key", "cockpit-push-token"):
        _secret(lab.lab, name, "value")
    try:
        broken = user_data(source.url, fixed=False, monkeypatch=None)  # the header Alloy refuses
        server_id, _ = _server(lab.lab, _network(lab.lab), "ciel-dev-api-0", broken, nic_first=True)
        wait_for(lambda: any("alloy:" in line for line in logged), 20, "the plane's word on Alloy")
        assert any("the configuration does not load, nothing is shipped" in line
                   and "secrets may not be converted into strings" in line for line in logged), logged
        assert runtime.apps.process(server_id) is not None and runtime.apps.shippers[server_id] is None
    finally:
        runtime.stop()
