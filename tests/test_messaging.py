"""Messaging construct: the jobs queue with its settings, its DLQ, least-privilege credentials."""

from __future__ import annotations

from tests.conftest import of_type, synth_core


def _queues(stack) -> dict[str, dict]:
    return {q["name"]: q for q in of_type(stack, "scaleway_mnq_sqs_queue")}


def test_jobs_queue_has_the_configured_retention_visibility_and_long_polling():
    queue = _queues(synth_core("dev"))["ciel-media-jobs"]
    assert (queue["message_max_age"], queue["visibility_timeout_seconds"], queue["receive_wait_time_seconds"]) == (
        345600, 300, 10)


def test_failed_jobs_go_to_the_dead_letter_queue_after_the_configured_receives():
    queues = _queues(synth_core("dev", dlq_max_receive_count=3))
    dead_letter = queues["ciel-media-jobs"]["dead_letter_queue"]
    assert dead_letter["max_receive_count"] == 3 and "messaging_dead_letter_queue" in dead_letter["id"]
    assert "ciel-media-jobs-dlq" in queues


def test_no_dead_letter_queue_when_disabled():
    queues = _queues(synth_core("dev", enable_dlq=False))
    assert set(queues) == {"ciel-media-jobs", "ciel-verify-probe"}
    assert "dead_letter_queue" not in queues["ciel-media-jobs"]


def test_the_verify_probe_has_a_queue_of_its_own_that_forgets_within_a_minute():
    probe = _queues(synth_core("dev"))["ciel-verify-probe"]
    assert probe["message_max_age"] == 60 and "dead_letter_queue" not in probe


def test_the_app_can_publish_and_receive_but_not_manage_and_terraform_only_manages():
    permissions = {c["name"]: c["permissions"] for c in of_type(synth_core("dev"), "scaleway_mnq_sqs_credentials")}
    assert permissions["ciel-dev-app"] == {"can_manage": False, "can_publish": True, "can_receive": True}
    assert permissions["ciel-dev-queue-manager"] == {"can_manage": True, "can_publish": False, "can_receive": False}
    for queue in _queues(synth_core("dev")).values():
        assert "manager_credentials" in queue["access_key"]
