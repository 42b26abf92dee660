"""The cutover state machine: persisted after every step, locked, resumable, reversible.

    planned → preflight → preview → switch → bake → drain → retire → done
                 ↘──────────↘─────────↘────────↘───────↘→ rolling_back → rolled_back

A run resumes after the last completed step (steps converge, so a step interrupted
half-way is simply run again). The invariant — every public frontend routes to a backend
with a passing server — is checked after every step. Once production is on the cluster,
a failed check rolls back by itself; before that, a failed check only stops the run.
Retire (deleting the instances) is the one step that cannot be undone: it asks first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from foundation.errors import CielError
from migrate import steps
from migrate.model import FORWARD, Record, Status, Step, Target, Thresholds

STEP_FUNCTIONS = {Step.PREFLIGHT: steps.preflight, Step.PREVIEW: steps.preview, Step.SWITCH: steps.switch,
                  Step.BAKE: steps.bake, Step.DRAIN: steps.drain}


class Cutover:
    def __init__(self, store, *, lb, instances, cluster, prober, log: Callable[[str], None],
                 confirm_retire: Callable[[str], bool], retire: Callable[[], None],
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 after_step: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.sides = {"lb": lb, "instances": instances, "cluster": cluster, "prober": prober}
        self.log, self.confirm_retire, self.retire_apply = log, confirm_retire, retire
        self.clock, self.sleep = clock, sleep
        self.after_step = after_step or (lambda step: None)

    # --- persistence ---------------------------------------------------------------------

    def _event(self, record: Record, event: str) -> None:
        record.history.append({"at": round(self.clock(), 3), "event": event})
        self.store.save(record)
        self.log(f"[{record.env}] {event}")

    def _context(self, record: Record) -> steps.Context:
        return steps.Context(record=record, target=Target.from_dict(record.target),
                             thresholds=Thresholds.from_dict(record.thresholds), log=self.log, clock=self.clock,
                             sleep=self.sleep, **self.sides)

    def plan(self, env: str, target: Target, thresholds: Thresholds) -> Record:
        """Start a cutover (state `planned`), or return the one in progress."""
        existing = self.store.load()
        if existing and existing.status in (Status.IN_PROGRESS.value, Status.ROLLING_BACK.value, Status.DONE.value):
            return existing
        record = Record(env=env, target=vars(target).copy(), thresholds=vars(thresholds).copy())
        self._event(record, "planned")
        return record

    # --- forward -------------------------------------------------------------------------

    def run(self, env: str, target: Target, thresholds: Thresholds, *, stop_after: str | None = None) -> Record:
        with self.store.lock():
            record = self.plan(env, target, thresholds)
            if record.status == Status.ROLLING_BACK.value:
                raise CielError("a rollback was interrupted: run `ciel migrate rollback` to finish it first")
            if record.status == Status.DONE.value:
                self.log(f"[{env}] the cutover is already done")
                return record
            for step in FORWARD:
                if step.value in record.completed:
                    continue
                record.current = step.value
                self._event(record, f"{step.value}: started")
                ctx = self._context(record)
                try:
                    if step is Step.RETIRE:
                        self._retire(record)
                    else:
                        STEP_FUNCTIONS[step](ctx)
                        steps.invariant(ctx)
                except steps.RollBack as reason:
                    self._event(record, f"{step.value}: abort check failed — {reason}")
                    self._rollback(record, str(reason))
                    raise CielError(f"rolled back during {step.value}: {reason}") from None
                except CielError as error:
                    self._event(record, f"{step.value}: stopped — {error}")
                    raise
                record.completed.append(step.value)
                record.current = None
                self._event(record, f"{step.value}: done")
                self.after_step(step.value)
                if stop_after == step.value:
                    return record
            record.status = Status.DONE.value
            self._event(record, "done: traffic and workers are on the cluster, the instances are retired")
            return record

    def _retire(self, record: Record) -> None:
        target = Target.from_dict(record.target)
        servers = target.api_server_ids + target.worker_server_ids
        question = (f"Retire the phase-1 instances of {record.env} — delete {len(servers)} instance(s) "
                    f"({', '.join(servers)}) with their NICs, addresses and security groups? The environment file "
                    "will then record that traffic is on the cluster. This cannot be rolled back.")
        if not self.confirm_retire(question):
            raise CielError("retire not confirmed: traffic and workers are on the cluster and the instances are "
                            "stopped but kept; rerun to retire (or `ciel migrate rollback`)")
        self.retire_apply()

    # --- backward ------------------------------------------------------------------------

    def rollback(self, reason: str = "requested") -> Record:
        with self.store.lock():
            record = self.store.load()
            if record is None:
                raise CielError("no cutover to roll back")
            if record.status == Status.ROLLED_BACK.value:
                return record
            self._rollback(record, reason)
            return record

    def _rollback(self, record: Record, reason: str) -> None:
        if Step.RETIRE.value in record.completed:
            raise CielError("the instances are retired: there is nothing to roll back to; deploy phase 1 again instead")
        record.status = Status.ROLLING_BACK.value
        record.rollback_reason = reason
        self._event(record, f"rolling back ({reason})")
        steps.restore_instances(self._context(record))
        record.status = Status.ROLLED_BACK.value
        record.current = None
        self._event(record, "rolled back: traffic and workers on the instances, preview route removed")
