"""Messaging layer: Scaleway Queues (SQS protocol) with the media jobs queue, its
dead-letter queue, and the probe queue of `ciel verify`.

Two credentials: one that can only manage queues (used by Terraform itself to create
them) and one that can only publish and receive (the application's).
"""

from __future__ import annotations

from constructs import Construct

from infra.config import EnvironmentConfig
from infra.contract import DLQ_NAME, PROBE_QUEUE_NAME, QUEUE_NAME
from infra.providers import scaleway

DLQ_RETENTION_SECONDS = 1209600  # the maximum: failed jobs wait 14 days for a human
PROBE_RETENTION_SECONDS = 60  # the minimum: a probe nobody took back is gone within a minute


class Messaging(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id_)
        sqs = scaleway("mnq_sqs")
        credentials = scaleway("mnq_sqs_credentials")
        queue = scaleway("mnq_sqs_queue")

        self.sqs = sqs.MnqSqs(self, "sqs", region=config.region)
        self.manager = credentials.MnqSqsCredentials(
            self, "manager_credentials", name=f"ciel-{config.name}-queue-manager", region=config.region,
            permissions=credentials.MnqSqsCredentialsPermissions(can_manage=True, can_publish=False, can_receive=False),
            depends_on=[self.sqs])
        self.app_credentials = credentials.MnqSqsCredentials(
            self, "app_credentials", name=f"ciel-{config.name}-app", region=config.region,
            permissions=credentials.MnqSqsCredentialsPermissions(can_manage=False, can_publish=True, can_receive=True),
            depends_on=[self.sqs])

        def make_queue(id_: str, name: str, **settings) -> object:
            return queue.MnqSqsQueue(self, id_, name=name, region=config.region, sqs_endpoint=self.sqs.endpoint,
                                     access_key=self.manager.access_key, secret_key=self.manager.secret_key, **settings)

        self.dead_letter_queue = None
        dead_letter = None
        if config.enable_dlq:
            self.dead_letter_queue = make_queue("dead_letter_queue", DLQ_NAME, message_max_age=DLQ_RETENTION_SECONDS)
            dead_letter = queue.MnqSqsQueueDeadLetterQueue(id=self.dead_letter_queue.id,
                                                           max_receive_count=config.dlq_max_receive_count)
        self.queue = make_queue(
            "media_jobs",
            QUEUE_NAME,
            message_max_age=config.message_retention_seconds,
            visibility_timeout_seconds=config.visibility_timeout,
            receive_wait_time_seconds=config.receive_wait_time,
            dead_letter_queue=dead_letter,
        )
        # `ciel verify` sends and takes back one message here, with the app's credentials.
        self.probe_queue = make_queue("probe_queue", PROBE_QUEUE_NAME, message_max_age=PROBE_RETENTION_SECONDS,
                                      visibility_timeout_seconds=5, receive_wait_time_seconds=0)
        self.endpoint = self.sqs.endpoint
