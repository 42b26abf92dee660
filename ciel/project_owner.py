"""One environment per Scaleway project, checked on the project itself.

Some resources exist once per project (and region): the Queues (SQS) activation, the
Cockpit alert manager, the Edge Services plan. Declared by two environments' stacks,
the second apply fails (`409 MnqSQSNamespace already exists`) and destroying one
environment would switch off the other's queues. And Scaleway IAM scopes a rule to a
project, not to a secret: the machines' secret reader key reads every secret of its
project. So an environment owns its project alone, and ciel refuses a second one.

The mark of ownership is where every operator (and the console) sees it: the
environment's Secret Manager folder, /ciel/<env>, in the project.
"""

from __future__ import annotations

from foundation.errors import UsageError
from foundation.process import say
from infra.config import EnvironmentConfig

SECRETS_ROOT = "/ciel/"
PROJECT_WIDE = "the Queues (SQS) activation, the Cockpit alert manager and the Edge Services plan"


def environments_in_project(client, project_id: str, region: str) -> dict[str, str]:
    """{environment: its Secret Manager folder} of every Ciel environment found in the project."""
    from scaleway.secret.v1beta1 import SecretV1Beta1API

    found: dict[str, str] = {}
    for secret in SecretV1Beta1API(client).list_secrets_all(region=region, project_id=project_id,
                                                             scheduled_for_deletion=False):
        path = secret.path or ""
        if path.startswith(SECRETS_ROOT) and path.count("/") == 2:
            found.setdefault(path[len(SECRETS_ROOT):], path)
    return found


def refuse_a_second_environment(config: EnvironmentConfig, client, project_id: str) -> None:
    """Before any plan: the project holds no other Ciel environment. Says what this one owns."""
    others = {env: path for env, path in environments_in_project(client, project_id, config.region).items()
              if env != config.name}
    if others:
        listed = ", ".join(f"'{env}' (Secret Manager folder {path})" for env, path in sorted(others.items()))
        raise UsageError(
            f"project {project_id} already holds the environment {listed} in {config.region}; ciel gives each "
            f"environment a Scaleway project of its own: {PROJECT_WIDE} exist once per project, and the machines' "
            f"secret reader key reaches every secret of its project. Create a project for {config.name} "
            f"(`scw account project create name=ciel-{config.name}`) and set SCW_DEFAULT_PROJECT_ID to its ID. "
            "Nothing was planned or applied")
    say(f"  project {project_id}: environment {config.name} owns it, including {PROJECT_WIDE} in {config.region}")
