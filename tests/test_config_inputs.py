"""Adversarial configuration and CLI input (issue 9): every bad input is refused before any
engine run, with exit code 2, no traceback, and a bounded message naming file, key and
what is allowed; the cross-field rules that protect production each give their message."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest

from foundation.errors import CielWarning, UsageError
from infra.config import load_environment
from tests.conftest import REPO_ROOT, run_ciel

MAX_MESSAGE = 600  # longer than any of these messages should ever be (the unknown-key list aside)
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


def refused(directory: Path, content: str | bytes, name: str = "qa") -> str:
    path = directory / f"{name}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.monotonic()
    with pytest.raises(UsageError) as error:
        load_environment(name)
    message = str(error.value)
    assert time.monotonic() - started < 2, "refusing must be quick, whatever the file"
    assert message.startswith(str(path)), message
    assert len(message) <= MAX_MESSAGE, message
    return message


# --- reading the file -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("tier: mvp\nregion: fr-par\ntier: scale\n", ["line 3: tier: duplicate key", "first on line 1", "keep one"]),
        ("enable_cdn: yes\n", ["line 1: enable_cdn: 'yes' is a boolean in YAML 1.1", "write true or false"]),
        ("enable_cdn: On\n", ["enable_cdn: 'On'", "write true or false"]),
        ("enable_cdn: y\n", ["enable_cdn: 'y'", "write true or false"]),
        ("cors_allowed_origins: [off]\n", ["cors_allowed_origins: 'off'", "write true or false"]),
        ("api_instance_count: 014\n", ["api_instance_count: '014' is octal (12)", "write 14, or quote it"]),
        ("api_instance_count: 0x1f\n", ["api_instance_count: '0x1f'", "write a plain decimal number"]),
        ("api_instance_count: 1:30\n", ["api_instance_count: '1:30'", "write a plain decimal number"]),
        ("db_volume_size_in_gb: 1_000\n", ["db_volume_size_in_gb: '1_000'", "write a plain decimal number"]),
        ("image_tag: 2026-01-01\n", ["image_tag: '2026-01-01' is read as a date", "quote it"]),
        ("yes: 1\n", ["line 1: key 'yes' is read as a boolean", "keys are setting names"]),
        ("3: 1\n", ["key '3' is read as a number"]),
        ("tier: mvp\n<<: {region: fr-par}\n", ["key '<<' is read as a merge key"]),
        ("a: &x 1\nb: *x\n", ["line 1: anchors and aliases", "write each value out"]),
        (ALIAS_BOMB, ["anchors and aliases"]),
        ("tier: " + "[" * 5000 + "]" * 5000 + "\n", ["nested too deeply"]),
        ("".join(f"key_{i}: {i}\n" for i in range(3000)), ["more than", "keys", "is this the right file"]),
        ("tier: mvp\n# " + "x" * 70_000 + "\n", ["larger than 64 KiB"]),
        ("", ["empty: set at least `tier:`"]),
        ("# nothing but comments\n\n", ["empty: set at least `tier:`"]),
        (b"tier: mvp\nregion: fr-p\xe9r\n", ["not UTF-8 text: byte 0xe9 at offset 22 (line 2)"]),
        ("tier: mvp\x00\n", ["control character U+0000"]),
        ("tier: mvp\n---\ntier: scale\n", ["not valid YAML: line 2", "single document"]),
        ("tier: !!python/object/apply:os.system [id]\n", ["not valid YAML", "could not determine a constructor"]),
    ],
    ids=["duplicate-key", "yes", "On", "y", "off-in-list", "octal", "hex", "sexagesimal", "underscore", "date",
         "bool-key", "number-key", "merge-key", "alias", "alias-bomb", "deep-nesting", "thousands-of-keys",
         "too-large", "empty", "only-comments", "not-utf8", "control-character", "two-documents", "python-tag"],
)
def test_the_file_is_read_strictly(environments_dir, content, expected):
    message = refused(environments_dir, content)
    for fragment in expected:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('api_instance_count: "3"\n', "api_instance_count: '3' is quoted text; write a whole number without quotes"),
        ('enable_cdn: "true"\n', "enable_cdn: 'true' is quoted text; write true or false without quotes"),
        ('phase: "2"\n', "phase: '2' is not allowed; input should be 1 or 2"),
        ("image_tag: 1.10\n", "image_tag: YAML read 1.1 as float; quote the value to keep it as text"),
        ("api_instance_count:\n", "api_instance_count: empty; write a whole number"),
    ],
)
def test_values_are_not_coerced_from_another_type(environments_dir, content, expected):
    assert expected in refused(environments_dir, content)


def test_an_integer_is_still_accepted_for_a_decimal_setting(environments_dir):
    (environments_dir / "qa.yaml").write_text('tier: mvp\nimage_tag: "1.0.0"\ncutover_min_success_ratio: 1\n')
    assert load_environment("qa").cutover_min_success_ratio == 1.0


def test_unknown_keys_are_named_together_in_one_bounded_message(environments_dir):
    from infra.config.schema import EnvironmentConfig

    path = environments_dir / "qa.yaml"
    path.write_text("".join(f"typo_{i}: 1\n" for i in range(40)))
    with pytest.raises(UsageError) as error:
        load_environment("qa")
    message = str(error.value)
    assert message.startswith(f"{path}: typo_0, typo_1, typo_2, typo_3, typo_4 and 35 more: unknown keys; "
                              "allowed keys: alert_email, ")
    # The allowed keys are listed once, whatever the number of typos.
    assert len(message) < len(str(path)) + len(", ".join(EnvironmentConfig.model_fields)) + 100


# --- values that only Scaleway would have refused -----------------------------------------

@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("private_network_cidr: 127.0.0.0/24\n", "127.0.0.0/24 is not a private (RFC 1918) range"),
        ("private_network_cidr: 169.254.0.0/24\n", "169.254.0.0/24 is not a private (RFC 1918) range"),
        ("private_network_cidr: 100.64.0.0/24\n", "100.64.0.0/24 is not a private (RFC 1918) range"),
        ("private_network_cidr: 192.0.2.0/24\n", "192.0.2.0/24 is not a private (RFC 1918) range"),
        ('domain: "ciel.example.com\\n"\n', "domain: 'ciel.example.com\\n' is not a fully qualified domain name"),
        ('domain: ciel.example.com\ncutover_preview_host: "p.example.com\\n"\n',
         "cutover_preview_host: 'p.example.com\\n' is not a fully qualified domain name"),
        ('domain: ciel.example.com\ncutover_preview_host: "-[/]-"\n', "cutover_preview_host: '-[/]-' is not a fully"),
        ('alert_email: "ops@example.com\\n"\n', "alert_email: 'ops@example.com\\n' is not an email address"),
        ("alert_email: ops@exa_mple.com\n", "alert_email: 'ops@exa_mple.com' is not an email address"),
        ('cors_allowed_origins: ["https://app.example.com\\n"]\n', "'https://app.example.com\\n' is not an origin"),
        ('k8s_version: "1.29"\n', "k8s_version: '1.29' is not a supported Kapsule Kubernetes version; choose one of 1.32"),
        ('k8s_version: "1.99"\n', "k8s_version: '1.99' is not a supported Kapsule Kubernetes version"),
        ("preconfigured_alert_ids: [cpu-high]\n", "preconfigured_alert_ids: 'cpu-high' is not an alert rule id"),
        ('use_managed_redis: true\nmanaged_redis_version: "7.\u0662.1"\n', "managed_redis_version: '7.\u0662.1' does not match"),
    ],
)
def test_values_scaleway_would_refuse_at_apply_are_refused_offline(environments_dir, content, expected):
    assert expected in refused(environments_dir, content)


def test_a_long_value_is_echoed_cut_short(environments_dir):
    message = refused(environments_dir, f"domain: {'a' * 5000}.example.com\n")
    assert "aaaa…" in message and len(message) < 300


def test_pattern_fields_refuse_a_trailing_newline(environments_dir):
    """Pydantic's `pattern` uses Rust's regex, where `$` is the end of the text (with
    Python's `re`, `^...$` lets "v1\\n" through): checked, so nobody "fixes" it back."""
    for key in ("image_tag", "image_name", "api_subdomain"):
        assert f"{key}: 'v1\\n' does not match the allowed pattern" in refused(environments_dir, f'{key}: "v1\\n"\n')


def test_real_uuid_alert_ids_load(environments_dir):
    (environments_dir / "qa.yaml").write_text('tier: mvp\nimage_tag: "1.0.0"\n'
                                              "preconfigured_alert_ids: [09396fbe-bddc-47a3-8072-c4246bef03c1]\n")
    assert load_environment("qa").preconfigured_alert_ids == ["09396fbe-bddc-47a3-8072-c4246bef03c1"]


# --- rules across keys: each with the message the README's table shows -----------------

CROSS_FIELD_RULES = [
    ("zone: nl-ams-1\n", "zone 'nl-ams-1' is not in region fr-par: choose one of fr-par-1, fr-par-2"),
    ("enable_https: true\n", "enable_https: a certificate needs `domain` (Let's Encrypt validates a name that points at "
                             "the LB); set domain or enable_https: false"),
    ("domain: ciel.example.com\nenable_https: true\nenable_load_balancer: false\n",
     "enable_https: needs enable_load_balancer: true (the certificate lives on the LB)"),
    ("enable_cdn: false\ncdn_custom_domain: cdn.example.com\n", "cdn_custom_domain: set enable_cdn: true to use it"),
    ("traffic: cluster\n", "traffic: cluster needs phase: 2 (run `ciel deploy phase2` first)"),
    ("instances_retired: true\n", "instances_retired: only after the cutover moved traffic to the cluster"),
    ("k8s_pool_min_size: 4\nk8s_pool_max_size: 2\n", "k8s_pool_max_size: must be at least k8s_pool_min_size"),
    ("worker_replicas: 5\nworker_max_replicas: 2\n",
     "api_max_replicas / worker_max_replicas: must be at least the matching *_replicas"),
    ("domain: ciel.example.com\ncutover_preview_host: api.ciel.example.com\n",
     "cutover_preview_host: must differ from the API host api.ciel.example.com: the preview route would send all "
     "production traffic to the cluster; remove it (default: preview-api.ciel.example.com) or choose another host"),
    ("api_instance_count: 0\n", "api_instance_count: 0 leaves the load balancer without a server while it sends "
                                "production to the instances (traffic: instances); set at least 1"),
    # No image_tag: the default, latest, is refused outside dev too.
    ("", "image_tag: 'latest' is a moving tag, refused outside dev (a replaced instance or pod would run whatever "
         "it points at by then); pin a version: `ciel deploy phase1 --image-tag 1.4.2`, or image_tag: \"1.4.2\" in "
         "the environment file (or another tag you never move, such as the commit SHA)"),
]


@pytest.mark.parametrize(("content", "message"), CROSS_FIELD_RULES,
                         ids=[message.split(":")[0].split(" ")[0] + f"-{i}" for i, (_, message) in enumerate(CROSS_FIELD_RULES)])
def test_each_cross_field_rule_gives_the_message_of_the_readme_table(environments_dir, content, message):
    assert refused(environments_dir, "tier: mvp\n" + content) == f"{environments_dir / 'qa.yaml'}: {message}"
    table = (REPO_ROOT / "README.md").read_text().split("## Configuration", 1)[1]
    assert f"| {message} |" in table


def test_the_readme_table_lists_every_cross_field_rule():
    import inspect

    from infra.config.schema import EnvironmentConfig

    rules = inspect.getsource(EnvironmentConfig._consistent).count("raise ValueError")
    assert rules == len(CROSS_FIELD_RULES)


def test_the_preview_host_and_zero_instances_are_fine_where_they_cannot_hurt(environments_dir):
    (environments_dir / "qa.yaml").write_text(
        'tier: mvp\nimage_tag: "1.0.0"\ndomain: ciel.example.com\ncutover_preview_host: preview.ciel.example.com\n')
    (environments_dir / "nolb.yaml").write_text('tier: mvp\nimage_tag: "1.0.0"\nenable_load_balancer: false\n'
                                                "api_instance_count: 0\n")
    assert load_environment("qa").preview_host == "preview.ciel.example.com"
    assert load_environment("nolb").api_instance_count == 0


# --- settings another setting switches off -------------------------------------------------

def test_a_setting_switched_off_by_another_is_named_in_a_warning(environments_dir):
    (environments_dir / "qa.yaml").write_text(
        'tier: mvp\nimage_tag: "1.0.0"\nbastion_port: 2222\nuse_managed_redis: true\nredis_instance_type: DEV1-M\n'
        "enable_dlq: false\ndlq_max_receive_count: 3\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_environment("qa")
    path = environments_dir / "qa.yaml"
    assert [str(w.message) for w in caught if w.category is CielWarning] == [
        f"{path}: bastion_port is ignored because enable_bastion is false",
        f"{path}: redis_instance_type is ignored because use_managed_redis is true (no Redis instance)",
        f"{path}: dlq_max_receive_count is ignored because enable_dlq is false",
    ]


def test_tier_presets_and_the_shipped_files_cause_no_warning(environments_dir):
    # growth's preset sets redis_instance_type; the file switches to managed Redis: not the file's doing.
    (environments_dir / "qa.yaml").write_text('tier: growth\nimage_tag: "1.0.0"\nuse_managed_redis: true\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_environment("qa")
        for env in ("dev", "staging", "prod"):
            load_environment(env, REPO_ROOT / "infra" / "environments")
    assert [w for w in caught if w.category is CielWarning] == []


# --- names, paths and the cutover record ------------------------------------------------

@pytest.mark.parametrize("name", ["../dev", "/etc/passwd", "dev/../prod", "Prod", "dev\n", "a" * 30, "[/]", ""])
def test_only_an_environment_name_ever_becomes_a_path(environments_dir, name):
    from infra.config.loader import record_settings
    from migrate.store import CutoverStore

    for attempt in (lambda: load_environment(name), lambda: CutoverStore(name),
                    lambda: record_settings(name, phase=2)):
        with pytest.raises(UsageError, match="is not an environment name"):
            attempt()


def test_an_environment_file_linked_from_outside_the_folder_is_not_read(environments_dir, tmp_path):
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("tier: mvp\n")
    (environments_dir / "qa.yaml").symlink_to(outside)
    with pytest.raises(UsageError, match="not a regular file inside"):
        load_environment("qa")


def _record(**changes) -> dict:
    from dataclasses import asdict

    from ciel.migration import placeholder_target, thresholds_for

    config = load_environment("dev", REPO_ROOT / "infra" / "environments")
    record = {"env": "dev", "target": asdict(placeholder_target(config)), "thresholds": asdict(thresholds_for(config)),
              "status": "in_progress", "completed": ["preflight"], "current": "preview", "switched_at": None,
              "rollback_reason": None, "history": [{"at": 1.0, "event": "preflight done"}]}
    return {**record, **changes}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"env": "dev", "target": {', "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"env": "dev"}).encode(), "the record has missing fields target, thresholds"),
        (json.dumps(_record(completed=5)).encode(), "`completed` is not a list of steps"),
        (json.dumps(_record(status="exploded")).encode(), "unknown status 'exploded'"),
        (json.dumps(_record(history=["x"])).encode(), "`history` is not a list of events"),
        (json.dumps(_record(env="prod")).encode(), "it is the record of 'prod'"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b" " * (2 * 1024 * 1024), "larger than 1024 KiB"),
    ],
    ids=["truncated", "not-utf8", "array", "missing-fields", "completed-not-list", "bad-status", "bad-history",
         "other-env", "deep", "huge"],
)
def test_a_corrupt_cutover_record_is_a_clear_error(tmp_path, content, reason):
    from migrate.store import CutoverStore

    (tmp_path / "dev.json").write_bytes(content)
    with pytest.raises(UsageError) as error:
        CutoverStore("dev", tmp_path).load()
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'dev.json'}: not a readable cutover record of dev: {reason}")
    assert "move the file aside" in message and len(message) < MAX_MESSAGE


def test_a_sound_cutover_record_still_loads(tmp_path):
    from migrate.model import Record
    from migrate.store import CutoverStore

    store = CutoverStore("dev", tmp_path)
    store.save(Record.from_dict(_record()))
    assert store.load() == Record.from_dict(_record())


# --- through the real command ------------------------------------------------------------

@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('image_tag: "[/]"\n', "qa.yaml: image_tag: '[/]' does not match the allowed pattern ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"),
        ("tier: mvp\ntier: mvp\n", "qa.yaml: line 2: tier: duplicate key"),
        (ALIAS_BOMB, "qa.yaml: line 1: anchors and aliases"),
        ("tier: [/]\n", "qa.yaml: tier: ['/'] is not allowed"),
        (b"tier: \xff\n", "qa.yaml: not UTF-8 text"),
    ],
    ids=["markup-in-value", "duplicate", "alias-bomb", "markup-list", "not-utf8"],
)
def test_bad_files_stop_the_command_with_exit_2_and_one_plain_line(environments_dir, tmp_path, content, expected):
    (environments_dir / "qa.yaml").write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_ciel("deploy", "phase1", "--env", "qa", env={"CIEL_CACHE_DIR": str(tmp_path / "empty-cache")})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert len(result.stderr) < MAX_MESSAGE


@pytest.mark.parametrize("command", [["deploy", "phase1"], ["deploy", "phase2"], ["plan"], ["synth"], ["env"],
                                     ["cost"], ["k8s", "render"], ["state", "bootstrap"], ["migrate", "plan"],
                                     ["migrate", "status"], ["migrate", "cutover"], ["migrate", "rollback", "--yes"]])
def test_every_command_takes_only_an_environment_name(command):
    result = run_ciel(*command, "--env", "../../etc/[/]passwd")
    assert result.returncode == 2
    assert "'../../etc/[/]passwd' is not an environment name" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_corrupt_cutover_record_stops_migrate_status_with_exit_2(tmp_path):
    (tmp_path / "cutover").mkdir()
    (tmp_path / "cutover" / "dev.json").write_text('{"env": "dev", ')
    result = run_ciel("migrate", "status", "--env", "dev", env={"CIEL_WORK_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "dev.json: not a readable cutover record of dev: not JSON" in result.stderr


def test_the_command_prints_ignored_settings_as_warnings(environments_dir):
    (environments_dir / "qa.yaml").write_text('tier: mvp\nimage_tag: "1.0.0"\nkeda_messages_per_worker: 20\n')
    result = run_ciel("env", "--env", "qa")
    assert result.returncode == 0, result.stderr
    assert f"warning: {environments_dir / 'qa.yaml'}: keda_messages_per_worker is ignored because enable_keda is false" \
           in result.stderr


@pytest.mark.parametrize("tag", ["2", "1.10", "1.4.2", "sha-0a1b2c3"])
def test_a_recorded_image_tag_reads_back_as_the_same_text_and_keeps_the_rest_of_the_file(environments_dir, tag):
    from infra.config.loader import record_image_tag

    original = '# staging-like\ntier: growth\nimage_tag: "1.0.0"  # the release\nregion: fr-par\n'
    (environments_dir / "qa.yaml").write_text(original)
    path = record_image_tag("qa", tag)
    assert path == environments_dir / "qa.yaml"
    assert load_environment("qa").image_tag == tag
    lines = path.read_text().splitlines()
    assert lines[0] == "# staging-like" and lines[-1] == "region: fr-par"
    assert f'image_tag: "{tag}"  # recorded by ciel' in lines
    assert record_image_tag("qa", tag) is None  # already says so: the file is left alone
