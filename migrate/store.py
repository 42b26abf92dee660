"""The cutover's record and lock.

Live, they sit beside the Terraform state in Object Storage (`SharedCutoverStore`): one
record per environment, and a lock taken with a conditional write (If-None-Match), so an
operator on another checkout or machine sees the cutover and cannot start a second one.
Offline and in tests of the engine, a file per environment in the checkout
(`CutoverStore`), locked with flock."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from foundation import paths
from foundation.errors import CielError, UsageError
from migrate.model import FORWARD, Record, Status, Target, Thresholds

MAX_RECORD_BYTES = 1024 * 1024  # a record is a few KiB; anything near this is not one


def _check_fields(part: str, data: object, kind: type) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{part} is not a JSON object")
    fields = dataclasses.fields(kind)
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing, unknown = sorted(required - data.keys()), sorted(str(k)[:40] for k in data.keys() - {f.name for f in fields})
    if missing or unknown:
        raise ValueError(f"{part} has {'missing fields ' + ', '.join(missing) if missing else ''}"
                         f"{' and ' if missing and unknown else ''}{'unknown fields ' + ', '.join(unknown[:5]) if unknown else ''}")


def _parse(data: bytes) -> Record:
    """A record from the file's bytes, or ValueError saying what is wrong with it. Checked
    field by field: a half-written or hand-edited record must stop the cutover here, not
    steer it (or crash it) from a later step."""
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"larger than {MAX_RECORD_BYTES // 1024} KiB")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"not JSON ({str(error)[:120]})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    _check_fields("the record", raw, Record)
    record = Record.from_dict(raw)
    _check_fields("`target`", record.target, Target)
    _check_fields("`thresholds`", record.thresholds, Thresholds)
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in record.thresholds.values()):
        raise ValueError("`thresholds` holds a value that is not a number")
    if not all(value is None or isinstance(value, str) or (isinstance(value, list) and all(
            isinstance(item, str) for item in value)) for value in record.target.values()):
        raise ValueError("`target` holds a value that is not text or a list of text")
    if not isinstance(record.env, str) or not (record.switched_at is None or isinstance(record.switched_at, (int, float))) \
            or not (record.rollback_reason is None or isinstance(record.rollback_reason, str)):
        raise ValueError("`env`, `switched_at` or `rollback_reason` has the wrong type")
    steps = {step.value for step in FORWARD}
    if record.status not in {status.value for status in Status}:
        raise ValueError(f"unknown status {str(record.status)[:40]!r}")
    if not isinstance(record.completed, list) or not all(step in steps for step in record.completed):
        raise ValueError("`completed` is not a list of steps")
    if record.current is not None and record.current not in steps:
        raise ValueError(f"unknown current step {str(record.current)[:40]!r}")
    if not isinstance(record.history, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("event"), str) for entry in record.history):
        raise ValueError("`history` is not a list of events")
    return record


class CutoverStore:
    def __init__(self, env: str, directory: Path | None = None) -> None:
        self.env = paths.environment_name(env)  # it names files below: never a path
        self.directory = directory or paths.work_dir() / "cutover"
        self.path = self.directory / f"{env}.json"
        self.lock_path = self.directory / f"{env}.lock"

    @contextmanager
    def lock(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise CielError(f"another cutover run of {self.env} holds the lock ({holder}); wait for it to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def holder(self) -> None:
        """A file lock goes with its process: a run that died holds nothing."""
        return None

    def load(self) -> Record | None:
        if not self.path.exists():
            return None
        try:
            with open(self.path, "rb") as handle:
                record = _parse(handle.read(MAX_RECORD_BYTES + 1))
            if record.env != self.env:
                raise ValueError(f"it is the record of {str(record.env)[:40]!r}")
        except (OSError, ValueError) as error:
            raise UsageError(
                f"{self.path}: not a readable cutover record of {self.env}: {error}. Nothing was changed. Check where "
                f"{self.env}'s traffic is (load balancer in the console), then move the file aside "
                f"(mv {self.path} {self.path}.corrupt) and run the cutover or rollback again") from None
        return record

    def save(self, record: Record) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w") as handle:
            json.dump(record.to_dict(), handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class SharedCutoverStore:
    """The record and lock in the state bucket: `<env>/cutover.json`, `<env>/cutover.lock`.

    The lock is an object created only if absent; a run that dies keeps it (unlike a file
    lock), so it names its holder and `ciel migrate unlock` removes it after asking."""

    def __init__(self, env: str, client, bucket: str) -> None:
        self.env = paths.environment_name(env)
        self.client, self.bucket = client, bucket
        self.key, self.lock_key = f"{self.env}/cutover.json", f"{self.env}/cutover.lock"

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def _error_code(self, error) -> str:
        return str(error.response.get("Error", {}).get("Code", ""))

    def holder(self) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.lock_key)["Body"].read(512).decode(
                "utf-8", errors="replace")
        except ClientError as error:
            if self._error_code(error) in ("NoSuchKey", "404"):
                return None
            raise

    @contextmanager
    def lock(self):
        from botocore.exceptions import ClientError

        me = f"{os.environ.get('USER', 'someone')}@{socket.gethostname()} pid {os.getpid()} since " \
             f"{time.strftime('%Y-%m-%dT%H:%M:%S')}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.lock_key, Body=me.encode(), IfNoneMatch="*")
        except ClientError as error:
            if self._error_code(error) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise
            raise CielError(f"another cutover run of {self.env} holds the lock ({self.holder() or 'unknown'}); wait "
                            f"for it to finish. If that run is dead: `ciel migrate unlock --env {self.env}`") from None
        try:
            yield
        finally:
            self.unlock()

    def unlock(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.lock_key)

    def load(self) -> Record | None:
        from botocore.exceptions import ClientError

        try:
            data = self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read(MAX_RECORD_BYTES + 1)
        except ClientError as error:
            if self._error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            record = _parse(data)
            if record.env != self.env:
                raise ValueError(f"it is the record of {str(record.env)[:40]!r}")
        except ValueError as error:
            raise UsageError(f"{self.location}: not a readable cutover record of {self.env}: {error}. Nothing was "
                             "changed. The bucket is versioned: restore the previous version of the object") from None
        return record

    def save(self, record: Record) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key, ContentType="application/json",
                               Body=json.dumps(record.to_dict(), indent=2, sort_keys=True).encode())

    def clear(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key)


class MemoryStore:
    """For the dry run: the same interface, nothing written."""

    def __init__(self, env: str) -> None:
        self.env = env
        self.record: Record | None = None

    @contextmanager
    def lock(self):
        yield

    def load(self) -> Record | None:
        return self.record

    def save(self, record: Record) -> None:
        self.record = record

    def clear(self) -> None:
        self.record = None


def refuse_if_cutover_in_progress(store) -> None:
    """Deploys must not fight a cutover in flight (they would move the frontends back)."""
    env, record = store.env, store.load()
    retiring = record is not None and record.current == "retire"  # retire itself applies the core stack
    if record and record.status in (Status.IN_PROGRESS.value, Status.ROLLING_BACK.value) and record.completed \
            and not retiring:
        raise CielError(f"a cutover of {env} is in progress (state {record.state}): finish it "
                        f"(`ciel migrate cutover --env {env}`) or roll it back (`ciel migrate rollback --env {env}`)")
