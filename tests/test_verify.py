"""`ciel verify`: offline it says exactly what each check would do and calls nothing; on the
local Scaleway (tests/test_lab_verify.py) it runs them."""

from __future__ import annotations

import json

import pytest

from ciel.verify import checks
from tests.conftest import run_ciel

CHECKS = ["health", "database", "redis", "storage", "cdn", "queue", "dns", "logs"]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_offline_it_lists_what_each_check_would_do_and_calls_nothing(env, tmp_path):
    # Any call would go to these closed addresses and fail: none is made.
    closed = {"SCW_API_URL": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "CIEL_WORK_DIR": str(tmp_path)}
    result = run_ciel("verify", "--env", env, "--json", env=closed)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["live"] is False and report["ok"] is True
    assert [check["name"] for check in report["checks"]] == CHECKS
    assert all(check["status"] == "skip" and check["detail"] == "offline: nothing was called"
               for check in report["checks"])
    what = {check["name"]: check["what"] for check in report["checks"]}
    if env == "prod":
        assert what["health"].startswith("GET https://api.ciel.example.com/health at the LB <lb_ip>:443, "
                                         "certificate checked for api.ciel.example.com")
        assert "public/verify/" in what["storage"] and "zone ciel.example.com" in what["dns"]
    else:
        assert what["health"].startswith("GET http://<lb_ip>/health") and what["dns"].startswith("nothing")
    assert "<probe_queue_url>" in what["queue"] and f'{{environment="{env}"}}' in what["logs"]
    assert not (tmp_path / "offline").exists()  # not even a synthesis


def test_the_checks_are_named_once_and_the_cli_refuses_an_unknown_one():
    assert [check.name for check in checks(None)] == CHECKS
    result = run_ciel("verify", "--env", "dev", "--check", "nope")
    assert result.returncode == 2 and "--check 'nope': choose from health, database" in result.stderr
    help_text = " ".join(run_ciel("verify", "--help").stdout.split())
    assert "--json" in help_text and "--wait" in help_text and "calls nothing" in help_text


def test_without_a_cdn_the_cdn_check_is_skipped_saying_why_before_any_request():
    from ciel import verify
    from tests.conftest import config_for

    target = verify.Target(config=config_for("dev", enable_cdn=False), outputs={})
    (cdn,) = [check for check in checks(None) if check.name == "cdn"]
    with pytest.raises(verify.Skipped, match=r"^no CDN in this environment"):
        cdn.run(target)
