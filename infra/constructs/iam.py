"""A scoped IAM application: one principal, one policy naming only the permission sets it
needs on this project, and an API key. Used for the media bucket and the registry pull."""

from __future__ import annotations

from constructs import Construct

from infra.providers import scaleway


class ScopedApplication(Construct):
    def __init__(self, scope: Construct, id_: str, *, name: str, description: str, project_id: str,
                 permission_sets: list[str], tags: list[str]) -> None:
        super().__init__(scope, id_)
        application = scaleway("iam_application")
        policy = scaleway("iam_policy")
        api_key = scaleway("iam_api_key")
        self.permission_sets = list(permission_sets)
        self.application = application.IamApplication(self, "application", name=name, description=description, tags=tags)
        self.policy = policy.IamPolicy(
            self,
            "policy",
            name=name,
            description=f"{description}: {', '.join(permission_sets)} on this project only",
            application_id=self.application.id,
            rule=[policy.IamPolicyRule(project_ids=[project_id], permission_set_names=self.permission_sets)],
            tags=tags,
        )
        self.api_key = api_key.IamApiKey(
            self,
            "api_key",
            application_id=self.application.id,
            default_project_id=project_id,
            description=description,
        )
