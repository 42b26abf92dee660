"""Per-environment configuration: the typed schema and its YAML loader."""

from infra.config.loader import known_environments, load_environment
from infra.config.schema import EnvironmentConfig

__all__ = ["EnvironmentConfig", "known_environments", "load_environment"]
