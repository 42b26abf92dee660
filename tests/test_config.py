"""Environment configuration: valid files load, invalid ones are refused with file, key and fix."""

from __future__ import annotations

import pytest

from ciel.errors import UsageError
from infra.config import known_environments, load_environment


def test_the_three_shipped_environments_load_with_their_tiers():
    assert known_environments() == ["dev", "prod", "staging"]
    tiers = {env: load_environment(env).tier for env in known_environments()}
    assert tiers == {"dev": "mvp", "staging": "growth", "prod": "scale"}


def test_environments_do_not_share_a_private_network_range():
    ranges = [load_environment(env).private_network_cidr for env in known_environments()]
    assert len(set(ranges)) == len(ranges)


def test_unset_keys_take_safe_defaults(environments_dir):
    (environments_dir / "qa.yaml").write_text("{}\n")
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
        ("instance_count: 3\n", ["instance_count: unknown key", "allowed keys:", "private_network_cidr"]),
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


def test_tags_name_app_environment_and_layer():
    assert load_environment("dev").tags("networking") == ["app=ciel", "environment=dev", "layer=networking"]
