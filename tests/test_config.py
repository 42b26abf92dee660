"""Environment configuration: valid files load, invalid ones are refused with file, key and fix."""

from __future__ import annotations

import pytest

from foundation.errors import UsageError
from infra.config import known_environments, load_environment


def test_the_three_shipped_environments_load_with_their_tiers():
    assert known_environments() == ["dev", "prod", "staging"]
    tiers = {env: load_environment(env).tier for env in known_environments()}
    assert tiers == {"dev": "mvp", "staging": "growth", "prod": "scale"}


def test_environments_do_not_share_a_private_network_range():
    ranges = [load_environment(env).private_network_cidr for env in known_environments()]
    assert len(set(ranges)) == len(ranges)


def test_unset_keys_take_safe_defaults(environments_dir):
    # Only the image tag must be set outside dev (its default, latest, is refused there).
    (environments_dir / "qa.yaml").write_text('image_tag: "1.0.0"\n')
    config = load_environment("qa")
    assert (config.tier, config.region, config.zone, config.private_network_cidr) == ("mvp", "fr-par", "fr-par-1", "10.0.0.0/24")


def test_unknown_environment_names_the_known_ones():
    with pytest.raises(UsageError) as error:
        load_environment("production")
    message = str(error.value)
    assert "unknown environment 'production'" in message
    assert "dev, prod, staging" in message


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("tier: huge\n", ["tier", "'huge'", "'mvp', 'growth' or 'scale'"]),
        ("private_network_cidr: 10.0.0.0/33\n", ["private_network_cidr", "not an IPv4 network", "10.0.0.0/24"]),
        ("private_network_cidr: 8.8.8.0/24\n", ["private_network_cidr", "not a private"]),
        ("private_network_cidr: 10.0.0.0/8\n", ["private_network_cidr", "/8 is out of range", "/16 to /28"]),
        ("private_network_cidr: 10.0.0.1/24\n", ["private_network_cidr", "host bits set"]),
        ("zone: nl-ams-1\n", ["zone 'nl-ams-1' is not in region fr-par", "fr-par-1, fr-par-2"]),
        ("region: us-east\n", ["region", "'fr-par', 'nl-ams' or 'pl-waw'"]),
        ("instance_count: 3\n", ["instance_count: unknown key", "allowed keys:", "api_instance_count"]),
        ("api_instance_count: -1\n", ["api_instance_count", "greater than or equal to 0"]),
        ("db_node_type: DB-HUGE\n", ["db_node_type", "'DB-HUGE' is not a supported database node type", "DB-DEV-S"]),
        ("lb_type: LB-GP-S\n", ["lb_type", "'LB-GP-S' is not a supported load balancer type", "LB-S, LB-GP-M"]),
        ("api_instance_type: DEV2-S\n", ["api_instance_type", "'DEV2-S' is not a supported instance type", "DEV1-S"]),
        ("enable_https: true\n", ["enable_https: a certificate needs `domain`"]),
        ("domain: Not_A_Domain\n", ["domain", "not a fully qualified domain name"]),
        ("enable_cdn: false\ncdn_custom_domain: cdn.example.com\n", ["cdn_custom_domain: set enable_cdn: true"]),
        ("receive_wait_time: 30\n", ["receive_wait_time", "less than or equal to 20"]),
        ("db_read_replica_count: 9\n", ["db_read_replica_count", "less than or equal to 3"]),
        ("cors_allowed_origins: [app.example.com]\n", ["cors_allowed_origins", "scheme://host"]),
        ("alert_email: ops-at-example\n", ["alert_email", "not an email address"]),
        ("name: other\n", ["name: do not set it"]),
        ("tier: [mvp\n", ["not valid YAML"]),
        ("- mvp\n", ["expected a mapping"]),
    ],
)
def test_invalid_values_are_refused_with_file_key_and_allowed_values(environments_dir, yaml_text, expected):
    (environments_dir / "qa.yaml").write_text(yaml_text)
    with pytest.raises(UsageError) as error:
        load_environment("qa")
    message = str(error.value)
    assert message.startswith(str(environments_dir / "qa.yaml"))
    for fragment in expected:
        assert fragment in message


def test_tier_presets_fill_scaling_variables_and_the_file_wins(environments_dir):
    (environments_dir / "big.yaml").write_text('tier: scale\nimage_tag: "1.0.0"\n')
    (environments_dir / "tuned.yaml").write_text('tier: scale\nimage_tag: "1.0.0"\ndb_read_replica_count: 2\n'
                                                 'use_managed_redis: false\n')
    big, tuned = load_environment("big"), load_environment("tuned")
    assert (big.db_enable_ha, big.db_read_replica_count, big.use_managed_redis, big.lb_type) == (True, 1, True, "LB-GP-M")
    assert (tuned.db_read_replica_count, tuned.use_managed_redis, tuned.db_enable_ha) == (2, False, True)


def test_mvp_defaults_are_the_cheap_ones_with_the_plans_cdn(environments_dir):
    (environments_dir / "small.yaml").write_text('tier: mvp\nimage_tag: "1.0.0"\n')
    config = load_environment("small")
    assert (config.api_instance_count, config.api_instance_type, config.db_node_type, config.db_enable_ha,
            config.use_managed_redis, config.enable_cdn, config.lb_type) == (1, "DEV1-S", "DB-DEV-S", False, False, True, "LB-S")
    assert (config.message_retention_seconds, config.visibility_timeout, config.receive_wait_time, config.enable_dlq) == (
        345600, 300, 10, True)
    assert (config.db_work_mem_mb, config.db_max_connections, config.db_effective_cache_size_mb) == (4, 100, 768)


def test_every_preset_value_is_itself_valid():
    from infra.config.schema import EnvironmentConfig
    from infra.config.tiers import TIER_PRESETS

    for tier, values in TIER_PRESETS.items():
        EnvironmentConfig(name="check", tier=tier, image_tag="1.0.0", **values)  # raises if a preset is wrong


def test_tags_name_app_environment_and_layer():
    assert load_environment("dev").tags("networking") == ["app=ciel", "environment=dev", "layer=networking"]


@pytest.mark.parametrize("tag", ["latest", "main", "master", "stable", "edge", "dev", "nightly", "Latest", "MAIN"])
def test_a_moving_image_tag_is_refused_outside_dev_and_says_what_to_pin(environments_dir, tag):
    (environments_dir / "qa.yaml").write_text(f"tier: mvp\nimage_tag: {tag}\n")
    with pytest.raises(UsageError) as error:
        load_environment("qa")
    assert f"image_tag: '{tag}' is a moving tag, refused outside dev" in str(error.value)
    assert "--image-tag 1.4.2" in str(error.value) and 'image_tag: "1.4.2"' in str(error.value)
    (environments_dir / "dev.yaml").write_text(f"tier: mvp\nimage_tag: {tag}\n")
    assert load_environment("dev").image_tag == tag  # dev may follow a moving tag
    (environments_dir / "qa.yaml").write_text('tier: mvp\nimage_tag: "latest-1.4.2"\n')
    assert load_environment("qa").image_tag == "latest-1.4.2"  # only the exact names move


def test_the_default_tag_latest_is_refused_outside_dev_and_the_shipped_files_pin_theirs(environments_dir):
    (environments_dir / "qa.yaml").write_text("tier: growth\n")
    with pytest.raises(UsageError, match="image_tag: 'latest' is a moving tag"):
        load_environment("qa")
    from tests.conftest import REPO_ROOT

    for env in ("staging", "prod"):
        config = load_environment(env, REPO_ROOT / "infra" / "environments")
        assert not config.image_tag_is_mutable, env


@pytest.mark.parametrize(("env", "tag"), [("prod", "latest"), ("staging", "Nightly")])
def test_the_image_tag_option_is_held_to_the_same_rule(env, tag):
    from ciel.deploy import load_config

    with pytest.raises(UsageError) as error:
        load_config(env, tag)
    assert str(error.value).startswith(f"--image-tag '{tag}' is a moving tag, refused outside dev")
    assert "pin a version" in str(error.value)
    assert load_config(env, "1.4.2").image_tag == "1.4.2"
    assert load_config("dev", tag).image_tag == tag
