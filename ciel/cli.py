"""The `ciel` command."""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from foundation.errors import CielError, CielWarning, UsageError, shown
from foundation.paths import environment_name

HELP = """Deploy the Ciel backend to Scaleway and move it from instances to Kubernetes.

\b
Typical use:
  ciel deploy phase1 --env dev     instances behind a load balancer
  ciel deploy phase2 --env dev     a Kapsule cluster beside them
  ciel migrate cutover --env dev   move traffic and workers to the cluster

Without Scaleway credentials (SCW_ACCESS_KEY, SCW_SECRET_KEY, SCW_DEFAULT_PROJECT_ID or
a `scw` profile) the deploy and plan commands work offline: they synthesize, validate and
plan with the real engine and provider, and apply nothing. The commands that change a
live environment (migrate cutover and rollback, state bootstrap) need credentials; their
dry runs (`migrate plan`, `state bootstrap --dry-run`) do not. Run `ciel doctor` to see
what this machine has.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                  pretty_exceptions_enable=False)
deploy_app = typer.Typer(help="Plan, then (with credentials and confirmation) apply an environment.", no_args_is_help=True)
migrate_app = typer.Typer(help="Move traffic and workers from the instances to the cluster.", no_args_is_help=True)
state_app = typer.Typer(help="Terraform state storage (Scaleway Object Storage).", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")
app.add_typer(migrate_app, name="migrate")
app.add_typer(state_app, name="state")
secrets_app = typer.Typer(help="The app's secrets in Scaleway Secret Manager.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
db_app = typer.Typer(help="The app's PostgreSQL schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

def _environment_name(value: str) -> str:
    """--env names a file; checked here, for every command, before anything is read."""
    try:
        return environment_name(value)
    except UsageError as error:
        raise typer.BadParameter(str(error)) from None


EnvOption = typer.Option(..., "--env", "-e", callback=_environment_name,
                         help="Environment: a file name in infra/environments/ (dev, staging, prod).")
EngineOption = typer.Option(None, "--engine", help="terraform, tofu or auto (default: auto, or $CIEL_ENGINE).")
OfflineOption = typer.Option(False, "--offline", help="Plan offline even if Scaleway credentials are present.")
ProviderSourceOption = typer.Option(
    "mirror", "--provider-source",
    help="mirror: providers built locally by setup (works offline); registry: the public registry (needs internet).",
)


NoVerifyOption = typer.Option(False, "--no-verify", help="Skip `ciel verify` after a live apply.")


def _verify_after_deploy(env: str, engine: Optional[str], skip: bool) -> None:
    """`ciel verify` after every live apply: the deploy is done when the environment works."""
    if skip:
        out.print(f"Not verified (--no-verify): `ciel verify --env {env}` checks it.")
        return
    from ciel.verify import verify as run_verify

    verification = run_verify(env, engine_choice=engine)
    _print_verification(verification, as_json=False)
    if not verification.ok:
        failed = [result.name for result in verification.results if result.status == "fail"]
        raise CielError(f"applied, but the verification failed ({', '.join(failed)}): see the table above; "
                        f"`ciel verify --env {env}` runs it again")


def _print_plan(outcome) -> None:
    table = Table(title=f"Plan for {outcome.env} ({outcome.stack})", show_lines=False)
    table.add_column("action")
    table.add_column("resource")
    for change in outcome.plan.changes:
        table.add_row("/".join(change.actions), change.address)
    out.print(table)
    plan = outcome.plan
    out.print(f"{plan.count('create')} to add, {plan.count('update')} to change, {plan.count('delete')} to destroy.")


@deploy_app.command("phase1")
def deploy_phase1(
    env: str = EnvOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking for confirmation (live mode only)."),
    offline: bool = OfflineOption,
    engine: Optional[str] = EngineOption,
    provider_source: str = ProviderSourceOption,
    image_tag: Optional[str] = typer.Option(None, "--image-tag", help="Run this image tag (overrides image_tag of the "
                                            "environment file); changed instances are replaced one at a time."),
    force_phase1: bool = typer.Option(False, "--force-phase1", help="Apply even though the environment is in "
                                      "phase 2 (the plan shows what would change in the shared layers)."),
    delete_instance: list[str] = typer.Option([], "--delete-instance", metavar="NAME", help="Agree that the plan "
                                              "deletes this instance (e.g. ciel-dev-api-1 after lowering "
                                              "api_instance_count); repeat for each. Without it a plan that "
                                              "deletes an instance is refused."),
    no_verify: bool = NoVerifyOption,
) -> None:
    """Phase 1: the Ciel image on instances behind the shared load balancer.

    The shared layers (network, load balancer, registry, database, cache, storage + CDN,
    queues, secrets, observability, DNS) and the API and worker instances. A plan that
    would destroy a data layer is refused; one that deletes an instance is refused unless
    --delete-instance names it. Replaced instances (a new image) roll one at a time.

    Loads and validates infra/environments/ENV.yaml, synthesizes the stack, then runs
    init, validate and plan with the real engine and provider. With credentials it then
    asks before applying; without, it stops after the plan and applies nothing.
    """
    from ciel.deploy import deploy_phase1 as run_deploy

    outcome = run_deploy(env, force_offline=offline, engine_choice=engine, provider_source=provider_source,
                         image_tag=image_tag, force_phase1=force_phase1, auto_approve=yes,
                         confirm=lambda q: typer.confirm(q, default=False), delete_instances=delete_instance)
    _print_plan(outcome)
    if outcome.applied:
        from ciel.deploy import verification_steps

        out.print(f"[green]Applied[/green] {env}.")
        _verify_after_deploy(env, engine, no_verify)
        out.print("Next:")
        for step in verification_steps(outcome):
            out.print(f"  • {step}", highlight=False)
    elif outcome.credentials.live:
        out.print("Nothing to apply: the environment matches the configuration.")
    else:
        out.print(f"[bold yellow]OFFLINE: nothing was applied.[/bold yellow] This plan used placeholder credentials "
                  f"and an empty local state; set Scaleway credentials to plan against {env} for real.")


@deploy_app.command("phase2")
def deploy_phase2(
    env: str = EnvOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply both steps without asking (live mode only)."),
    offline: bool = OfflineOption,
    engine: Optional[str] = EngineOption,
    provider_source: str = ProviderSourceOption,
    cluster_only: bool = typer.Option(False, "--cluster-only", help="Plan (and apply) the cluster step only; the "
                                      "workloads follow with a later run, which then records `phase: 2`."),
    image_tag: Optional[str] = typer.Option(None, "--image-tag", help="Run this image tag in the cluster "
                                            "(overrides image_tag of the environment file). While instances "
                                            "still run, roll them first with `deploy phase1 --image-tag`."),
    no_verify: bool = NoVerifyOption,
) -> None:
    """Phase 2: a Kapsule cluster beside the instances, sharing their data layers and LB.

    Step 1 plans the core stack with the cluster added and refuses if anything of phase 1
    or the shared layers would change. Step 2 plans the workloads (k8s/) through the
    kubernetes provider. With credentials each step asks, applies and waits (pool ready,
    rollouts done), then infra/environments/ENV.yaml records `phase: 2`. Production
    traffic stays on the instances: `ciel migrate cutover` moves it.
    """
    from ciel.phase2 import deploy_phase2 as run_phase2

    outcome = run_phase2(env, force_offline=offline, engine_choice=engine, provider_source=provider_source,
                         auto_approve=yes, confirm=lambda q: typer.confirm(q, default=False), cluster_only=cluster_only,
                         image_tag=image_tag)
    for title, plan in (("cluster step", outcome.cluster_plan), ("workloads step", outcome.workloads_plan)):
        if plan is None:
            continue
        out.print(f"{title}: {plan.count('create')} to add, {plan.count('update')} to change, "
                  f"{plan.count('delete')} to destroy")
    if outcome.untouched_checked:
        out.print(f"{outcome.untouched_checked} phase-1 and shared resources checked: unchanged by phase 2.")
    if outcome.applied:
        out.print(f"[green]Applied[/green] phase 2 to {env}; recorded `phase: 2`. Traffic is still on the instances.")
        _verify_after_deploy(env, engine, no_verify)
    elif outcome.cluster_applied and outcome.workloads_plan is None:
        out.print(f"Applied the cluster step to {env}; the workloads step and `phase: 2` wait for a run without "
                  "--cluster-only.", highlight=False, markup=False)
    elif outcome.cluster_applied:
        out.print(f"Applied the cluster step to {env}; the workloads already matched.", highlight=False, markup=False)
    elif outcome.credentials.live:
        steps = "the cluster step" if outcome.workloads_plan is None else "either step"
        out.print(f"Nothing to apply in {steps} of {env}: it matches the configuration.", highlight=False,
                  markup=False)
    else:
        out.print("[bold yellow]OFFLINE: nothing was applied[/bold yellow] and the environment's phase is unchanged.")


def _live_cutover(env: str, engine: Optional[str], *, confirm_retire):
    """The cutover wired to the live APIs, logging its progress line by line on stderr."""
    from ciel.migration import live_cutover

    return live_cutover(env, engine_choice=engine, confirm_retire=confirm_retire,
                        log=lambda line: err.print(line, highlight=False, markup=False))


@migrate_app.command("plan")
def migrate_plan(env: str = EnvOption) -> None:
    """Print every API call and check of ENV's cutover, in order, with its thresholds.
    Calls nothing; needs no credentials."""
    from ciel.migration import plan_lines

    for line in plan_lines(env):
        out.print(line, highlight=False, markup=False)


@migrate_app.command("cutover")
def migrate_cutover(
    env: str = EnvOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Retire (delete) the instances at the end without asking."),
    engine: Optional[str] = EngineOption,
    stop_after: Optional[str] = typer.Option(None, "--stop-after", metavar="STEP", help="Stop once STEP is done "
                                             "(preflight, preview, switch, bake or drain); a later run resumes "
                                             "from there, `ciel migrate rollback` goes back."),
) -> None:
    """Move traffic and workers from the instances to the cluster, step by step.

    preflight → preview (test traffic on a preview host) → switch (production to the
    cluster) → bake (watched; a failed check rolls back by itself) → drain (cluster
    workers up, instance workers stopped gracefully, API instances stopped) → retire
    (asks, then deletes the instances). Progress is saved after each step: rerun to
    resume after a crash. `ciel migrate rollback` goes back from any step before retire.
    """
    from migrate.model import FORWARD, Step

    stoppable = [step.value for step in FORWARD if step is not Step.RETIRE]
    if stop_after is not None and stop_after not in stoppable:
        raise UsageError(f"--stop-after {shown(stop_after)}: choose one of {', '.join(stoppable)}")
    cutover, target, thresholds = _live_cutover(env, engine, confirm_retire=lambda q: yes or typer.confirm(q))
    record = cutover.run(env, target, thresholds, stop_after=stop_after)
    out.print(f"{env}: cutover {record.state}" + (f", stopped after {stop_after} as asked." if stop_after else "."))


@migrate_app.command("status")
def migrate_status(env: str = EnvOption) -> None:
    """Where ENV's cutover stands, and its recent history."""
    from ciel.migration import status_lines

    for line in status_lines(env):
        out.print(line, highlight=False, markup=False)


@migrate_app.command("unlock")
def migrate_unlock(
    env: str = EnvOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove the lock of ENV's cutover left by a run that died (a lock in Object Storage
    outlives its process). Shows who holds it and asks first; the record is kept, so the
    next `migrate cutover` resumes and `migrate rollback` still works."""
    from ciel.state_bucket import cutover_store

    store = cutover_store(env)
    holder = store.holder()
    if holder is None:
        out.print(f"{env}: no cutover lock held.", highlight=False, markup=False)
        return
    if not yes and not typer.confirm(f"Remove the lock held by {holder}? Only if that run is dead.", default=False):
        raise CielError("not unlocked: confirmation declined")
    store.unlock()
    out.print(f"{env}: lock of {holder} removed.", highlight=False, markup=False)


@migrate_app.command("rollback")
def migrate_rollback(
    env: str = EnvOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    engine: Optional[str] = EngineOption,
) -> None:
    """Put production and workers back on the instances, from any step before retire."""
    if not yes and not typer.confirm(f"Move {env}'s traffic back to the instances?", default=False):
        raise CielError("rollback not confirmed: nothing changed")
    cutover, _, _ = _live_cutover(env, engine, confirm_retire=lambda question: False)
    record = cutover.rollback("requested by the operator")
    out.print(f"{env}: {record.state}.")


@state_app.command("bootstrap")
def state_bootstrap(
    env: str = EnvOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the S3 calls it would make and call none (with credentials, IAM is asked whose key it is)."),
) -> None:
    """Create the private, versioned state bucket of ENV's project (idempotent; deletes nothing).

    Needs Scaleway credentials, except --dry-run (the project ID then shows as a
    placeholder). The bucket is `ciel-tfstate-<project id>` in ENV's region;
    each environment and stack keeps its own key in it, locked with a lock file.
    """
    from ciel.state_bucket import bootstrap

    remote, done = bootstrap(env, dry_run=dry_run)
    for line in done:
        out.print(f"  {line}", highlight=False)
    out.print(f"State bucket: {remote.bucket} at {remote.endpoint}" + (" (dry run: nothing called)" if dry_run else ""),
              highlight=False, markup=False)


@secrets_app.command("rotate")
def secrets_rotate(
    env: str = EnvOption,
    name: str = typer.Argument(..., metavar="NAME", help="paseto-access-key, paseto-refresh-key or admin-token."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking for confirmation (live mode only)."),
    allow_downtime: bool = typer.Option(False, "--allow-downtime", help="Rotate even with a single API instance, "
                                        "whose restart is a short outage."),
    offline: bool = OfflineOption,
    engine: Optional[str] = EngineOption,
    provider_source: str = ProviderSourceOption,
) -> None:
    """Give a generated secret a new value; every app process reads it; no machine is replaced.

    Plans the core stack with the secret's rotation count raised by one (the plan must
    replace that value and its Secret Manager version, nothing else), asks, applies, and
    records the count in infra/environments/ENV.yaml. Then each app instance is rebooted
    through the Instance API, one at a time, API first: the app reads its secrets at every
    start, and each API reboot waits until the LB holds every API server up again.
    Without credentials it shows the plan and applies nothing.
    """
    from ciel.secrets_rotation import rotate

    result = rotate(env, name, force_offline=offline, engine_choice=engine, provider_source=provider_source,
                    auto_approve=yes, confirm=lambda q: typer.confirm(q, default=False), allow_downtime=allow_downtime)
    _print_plan(result.deploy)
    if result.deploy.applied:
        out.print(f"[green]Rotated[/green] {name} of {env} (rotation {result.generation}); restarted "
                  f"{len(result.restarted)} instance(s), replaced none.")
    elif not result.deploy.credentials.live:
        out.print(f"[bold yellow]OFFLINE: nothing was applied.[/bold yellow] With credentials this plan would give "
                  f"{name} a new value, then restart the app instances one at a time.")


@db_app.command("migrate")
def db_migrate(
    env: str = EnvOption,
    image_tag: Optional[str] = typer.Option(None, "--image-tag", help="The image whose migrations run (default: "
                                            "image_tag of the environment file); moving tags are refused outside "
                                            "dev, as for deploys."),
    timeout: float = typer.Option(900, "--timeout", min=30, max=7200, metavar="SECONDS", help="How long the run may "
                                  "take to report its end; also how long an unfinished run blocks the next one."),
    on: Optional[str] = typer.Option(None, "--on", metavar="instances|cluster", help="Where it runs (default: on the "
                                     "instances while they exist, then on the cluster)."),
    offline: bool = OfflineOption,
    engine: Optional[str] = EngineOption,
) -> None:
    """Run the image's schema migrations once, as the migrator, before the new version serves.

    On the instances: ciel writes a request (image, machine) to ENV's Secret Manager
    secret `migration-request`; the first running API instance's `ciel-migrate` timer
    runs the image once with APP_MODE=migrate and the migrator's database URL, on the
    private network; ciel prints its output as Cockpit receives it. On the cluster: a
    Kubernetes Job does the same with the `ciel-migrator` Secret, and ciel prints its
    pod's log. Idempotent (the image applies only what is pending), one run at a time
    per environment, and a failed migration fails the command, so a release stops
    before `ciel deploy`. Without credentials it prints these steps and calls nothing.
    """
    from ciel.db_migrate import MigrationFailed, check_place, migrate
    from ciel.deploy import load_config
    from ciel import credentials as creds

    config = load_config(env, image_tag)
    check_place(config, on)
    found = creds.detect(offline)
    outputs = None
    if found.live:
        from ciel.outputs import core_outputs

        outputs = core_outputs(env, found, engine, include_sensitive=True)
    try:
        outcome = migrate(config, found=found, outputs=outputs, timeout=timeout, place=on)
    except MigrationFailed as failure:
        err.print(f"[bold red]Migration failed:[/bold red] {failure}", highlight=False)
        raise typer.Exit(1) from None
    if not outcome.live:
        out.print(f"ciel db migrate --env {env} would, with credentials:", highlight=False, markup=False)
        for number, step in enumerate(outcome.steps, 1):
            out.print(f"  {number}. {step}", highlight=False, markup=False)
        out.print("[bold yellow]OFFLINE: nothing was called.[/bold yellow]")
        return
    out.print(f"[green]Migrated[/green] {env} to {config.image_tag} (migration {outcome.request.id} on "
              f"{outcome.request.server}, exit 0).", highlight=False)


@app.command()
def verify(
    env: str = EnvOption,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (what CI keeps)."),
    check: list[str] = typer.Option([], "--check", metavar="NAME", help="Run only this check (repeat for "
                                    "several): health, database, redis, storage, cdn, queue, dns, logs."),
    wait: float = typer.Option(120, "--wait", min=0, max=1800, metavar="SECONDS", help="How long to wait for the LB "
                               "to hold a server up and for the first log lines (a deploy just ended)."),
    offline: bool = OfflineOption,
    engine: Optional[str] = EngineOption,
) -> None:
    """Check a deployed environment from outside, each check with pass/fail and why.

    health (/health through the LB, certificate checked), database and redis (as /health
    reports them), storage (a presigned upload read back and deleted), cdn (that object
    through the CDN host), queue (a round trip on the probe queue), dns (zone records and
    resolution), logs (this environment's lines in Cockpit). Reads the core stack's
    outputs with credentials; without them, prints what each check would do and calls
    nothing. Exit status 1 if a check fails. `ciel deploy` runs it after every apply.
    """
    from ciel.verify import checks as all_checks, verify as run_verify

    known = [c.name for c in all_checks(None)]
    unknown = [name for name in check if name not in known]
    if unknown:
        raise UsageError(f"--check {unknown[0]!r}: choose from {', '.join(known)}")
    verification = run_verify(env, force_offline=offline, engine_choice=engine, only=tuple(check), wait=wait)
    _print_verification(verification, as_json)
    if not verification.ok:
        raise typer.Exit(1)


def _print_verification(verification, as_json: bool) -> None:
    if as_json:
        print(json.dumps(verification.as_json(), indent=1))
        return
    table = Table(title=f"Verification of {verification.env}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    colours = {"pass": "green", "fail": "red", "warn": "yellow", "skip": "dim"}
    for result in verification.results:
        detail = result.detail if verification.live else result.what
        table.add_row(result.name, f"[{colours[result.status]}]{result.status}[/]", detail)
    out.print(table)
    if not verification.live:
        out.print("[bold yellow]OFFLINE: nothing was called.[/bold yellow] With credentials each check runs "
                  "against the deployed environment.")


@app.command("env")
def env_contract(env: str = EnvOption) -> None:
    """Print the app's environment-variable contract for ENV: each variable and where its
    value comes from. Secrets are never printed, only where they are kept."""
    from infra.config import load_environment
    from infra.contract import app_contract

    table = Table(title=f"Ciel environment contract — {env}")
    table.add_column("variable")
    table.add_column("value")
    table.add_column("source")
    for item in app_contract(load_environment(env)):
        table.add_row(item.name, "(secret)" if item.secret else item.value, item.source)
    out.print(table)


@app.command()
def cost(
    env: str = EnvOption,
    refresh: bool = typer.Option(False, "--refresh", help="First re-read the prices of our offers from Scaleway's "
                                 "public product catalog (network needed); the dated table is the fallback."),
) -> None:
    """Monthly cost of what ENV's stack creates, line by line, and the plan's tier targets
    beside our figures for each tier. Offline: prices come from infra/pricing/prices.yaml."""
    from ciel import cost as costs
    from infra.pricing import USAGE_PRICED, total

    if refresh:
        found, message = costs.refresh(env)
        (out if found is not None else err).print(message, highlight=False, markup=False)
    config, table, lines = costs.environment_cost(env)
    origins = sorted({line.origin for line in lines})
    listing = Table(title=f"Monthly cost — {env} (tier {config.tier})")
    for column, justify in (("item", "left"), ("offer", "left"), ("qty", "right"), ("unit €", "right"),
                            ("€/month", "right"), ("price from", "right")):
        listing.add_column(column, justify=justify)
    for line in lines:
        unit = f"{line.unit_price:.2f}" if line.unit_price >= 1 else f"{line.unit_price:.3f}"
        listing.add_row(line.item, line.offer, f"{line.quantity:g}", unit, f"{line.monthly:.2f}",
                        f"[{origins.index(line.origin) + 1}]")
    listing.add_row("total", "", "", "", f"{total(lines):.2f}", "", style="bold")
    out.print(listing)
    if config.phase == 1:
        _, _, both = costs.both_phases_cost(env)
        listed = {(line.item, line.offer) for line in lines}
        added = Table(title="Added by phase 2 (the cluster beside the instances)")
        for column in ("item", "offer", "qty", "€/month"):
            added.add_column(column)
        for line in both:
            if (line.item, line.offer) not in listed:
                added.add_row(line.item, line.offer, f"{line.quantity:g}", f"{line.monthly:.2f}")
        out.print(added)
        out.print(f"While both phases run: {total(both):.2f} €/month (phase 1 alone: {total(lines):.2f}).")
    out.print("Usage-priced, not included: " + "; ".join(f"{name} ({unit})" for name, unit in USAGE_PRICED))
    for number, origin in enumerate(origins, 1):
        out.print(f"[{number}] {origin}", highlight=False, markup=False)
    tiers = Table(title="The plan's tiers beside our figures (a bare environment at each tier)")
    for column in ("tier", "plan's target €/month", "ours €/month", "difference"):
        tiers.add_column(column)
    figures = costs.tier_figures(env)
    for figure in figures:
        tiers.add_row(figure.tier, figure.target, f"{figure.ours:.2f}", f"{figure.difference:+.2f}")
    out.print(tiers)
    for figure in figures:
        if figure.departures:
            out.print(f"Where {figure.tier} departs from the plan's figure ({figure.difference:+.2f} €/month), "
                      "line by line:", highlight=False, markup=False)
            for item, monthly, why in figure.departures:
                out.print(f"  {item} ({monthly:.2f} €/month): {why}", highlight=False, markup=False)


lab_app = typer.Typer(help="A local Scaleway on 127.0.0.1 that the real provider and SDK apply against "
                       "(`eval \"$(ciel lab env)\"` points ciel at it).", no_args_is_help=True)
app.add_typer(lab_app, name="lab")
LabPorts = {
    "api": typer.Option(46180, "--api-port", min=1024, max=65535, help="Port of the emulated Scaleway API."),
    "s3": typer.Option(46181, "--s3-port", min=1024, max=65535, help="Port of the emulated Object Storage (S3)."),
    "proxy": typer.Option(46182, "--proxy-port", min=1024, max=65535,
                          help="Port of the HTTPS proxy that answers *.scw.cloud Object Storage and Queues hosts."),
}


@lab_app.command("up")
def lab_up(api_port: int = LabPorts["api"], s3_port: int = LabPorts["s3"], proxy_port: int = LabPorts["proxy"]) -> None:
    """Start the local Scaleway in the background (harmless when it already runs); its
    state is kept in .ciel/lab/ across restarts. Listens on 127.0.0.1 only."""
    from lab import runner

    ports, started = runner.up(runner.Ports(api_port, s3_port, proxy_port))
    err.print(f"lab {'started' if started else 'already running'}: API http://127.0.0.1:{ports.api}. "
              'Point ciel at it with: eval "$(ciel lab env)"', highlight=False, markup=False, soft_wrap=True)


@lab_app.command("down")
def lab_down() -> None:
    """Stop the local Scaleway; no process or port is left. Its state stays for the next `up`."""
    from lab import runner

    err.print("lab stopped" if runner.down() else "lab was not running", highlight=False, markup=False)


@lab_app.command("env")
def lab_env() -> None:
    """Print the shell exports that point ciel, the engine, the provider and the SDK at the
    running lab (credentials the lab accepts: no secret)."""
    import shlex

    from lab import runner

    ports = runner.running_ports()
    if ports is None:
        raise CielError("the lab is not running: `ciel lab up` first")
    for name, value in runner.environment(ports).items():
        out.print(f"export {name}={shlex.quote(value)}", highlight=False, markup=False, soft_wrap=True)


@lab_app.command("rehearse")
def lab_rehearse(
    env: str = EnvOption,
    rps: int = typer.Option(100, "--rps", min=1, max=1000, help="Requests per second sent through the load "
                            "balancer from its first 200 to the end of each scenario (loopback only)."),
    bake_seconds: int = typer.Option(60, "--bake-seconds", min=0, help="The cutover's bake in the rehearsal "
                                       "(the only setting changed from the environment file, whose bake is "
                                       "often ten minutes)."),
    scenario: list[str] = typer.Option([], "--scenario", metavar="NAME", help="cutover, rollback (default: "
                                       "both), rollout (phase 1 redeployed with a new image tag under "
                                       "traffic) or rotate-secret (`ciel secrets rotate` under traffic); repeat "
                                       "for several."),
    fault: list[str] = typer.Option([], "--fault", metavar="NAME", help="Inject a fault into the cutover scenario "
                                    "(which then runs alone unless --scenario says otherwise): cluster-health "
                                    "(alone), lb-api-errors, kill-after-switch; repeat for several."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object on stdout."),
) -> None:
    """Rehearse ENV's migration on fresh local Scaleways, under real traffic.

    Scenario cutover: deploy phase1 → deploy phase2 → migrate cutover through retire (the
    retire apply deletes the instances) → re-plan of every stack. Scenario rollback: the
    same to the switch, rollback, again to the end of the bake, rollback, re-plan. Each
    on a lab of its own, with a copy of infra/environments/ENV.yaml (never changed). From
    the LB's first answer, vegeta sends --rps requests per second through it; the report
    gives per step its duration, requests, failures by kind and p50/p99 latency, the time
    from the switch call until every answer comes from the cluster and from the rollback
    call until every answer comes from the instances. Exit status 1 if any request
    failed, a plan was not empty or a command failed. Needs ./setup.sh --test-tools.
    """
    from ciel.rehearsal import EXTRA_SCENARIOS, SCENARIOS, rehearse

    unknown = [name for name in scenario if name not in SCENARIOS + EXTRA_SCENARIOS]
    if unknown:
        raise UsageError(f"--scenario {shown(unknown[0])}: choose from {', '.join(SCENARIOS + EXTRA_SCENARIOS)}")
    chosen = tuple(scenario) or (("cutover",) if fault else SCENARIOS)
    report = rehearse(env, rps=rps, bake_seconds=bake_seconds, scenarios=chosen, faults=tuple(fault),
                      log=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True))
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_rehearsal(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_rehearsal(report) -> None:
    from ciel.rehearsal import FAULTS
    def ms(value) -> str:
        return "" if value is None else f"{value:.1f}"

    for scenario in report.scenarios:
        table = Table(title=f"Rehearsal of {report.env}: {scenario.name} ({report.rps} req/s)")
        for column in ("step", "seconds", "requests", "failed", "failures", "p50 ms", "p99 ms"):
            table.add_column(column, justify="left" if column in ("step", "failures") else "right")
        for step in scenario.steps:
            kinds = ", ".join(f"{kind}: {count}" for kind, count in step.failures.items())
            table.add_row(("" if step.ok else "✗ ") + step.step, f"{step.seconds:.1f}", str(step.requests),
                          str(step.failed), kinds, ms(step.p50_ms), ms(step.p99_ms))
        out.print(table)
        moved = f"switch → 100 % cluster: {scenario.switch_seconds:.1f}s; " if scenario.switch_seconds is not None else ""
        rolled = "".join(f"rollback → 100 % instances: {s:.1f}s; " for s in scenario.rollback_seconds)
        out.print(f"{scenario.name}: {scenario.requests} requests, {scenario.failed} failed; {moved}{rolled}"
                  f"re-plan changes: {scenario.replan_changes}; final backend: {scenario.final_backend}"
                  + (f"; instances left: {scenario.servers_left}" if scenario.servers_left is not None else ""),
                  highlight=False, markup=False)
        for fault in scenario.faults:
            out.print(f"fault {fault}: {FAULTS[fault]}", highlight=False, markup=False)
        if scenario.failed_outside_window is not None:
            out.print(f"failed requests outside the documented worst-case window: {scenario.failed_outside_window}",
                      highlight=False, markup=False)
        if scenario.error:
            out.print(Text.assemble(("error: ", "bold red"), scenario.error))
    verdict = "[green]passed[/green]" if report.ok else "[bold red]FAILED[/bold red]"
    out.print(f"Rehearsal {verdict}.")


k8s_app = typer.Typer(help="The phase-2 workloads as Kubernetes objects.", no_args_is_help=True)
app.add_typer(k8s_app, name="k8s")


@k8s_app.command("render")
def k8s_render(
    env: str = EnvOption,
    out_dir: Optional[str] = typer.Option(None, "--out", help="Folder to write to (default: k8s/rendered/ENV)."),
    offline: bool = typer.Option(False, "--offline", help="Do not read the core stack's outputs even if Scaleway "
                                 "credentials are present: IDs and endpoints stay marked placeholders."),
    engine: Optional[str] = EngineOption,
) -> None:
    """Write ENV's workloads as plain YAML, one file per object, in apply order.

    The same objects, from the same inputs, as `deploy phase2` applies. With credentials
    the IDs and endpoints come from the core stack's outputs (its remote state); without,
    each is marked REPLACE-with-terraform-output-<name>. Secrets come without values
    (annotated with where the values live).
    """
    from pathlib import Path

    from ciel import credentials as creds
    from foundation.paths import REPO_ROOT
    from infra.config import load_environment
    from k8s.render import render

    config = load_environment(env)
    found = creds.detect(offline)
    outputs = None
    if found.live:
        from ciel.outputs import core_outputs

        outputs = core_outputs(env, found, engine, include_sensitive=False)
    directory = Path(out_dir) if out_dir else REPO_ROOT / "k8s" / "rendered" / env
    written = render(config, directory, outputs)
    for path in written:
        out.print(str(path), highlight=False, markup=False)
    out.print(f"{len(written)} objects written to {directory}", highlight=False, markup=False)
    if outputs is None:
        out.print("No credentials (or --offline): values known only after the core stack's apply are marked "
                  "REPLACE-with-terraform-output-<name>.", highlight=False, markup=False)


@app.command()
def dashboard(
    env: str = EnvOption,
    out_file: Optional[str] = typer.Option(None, "--out", help="File to write (default: "
                                           ".ciel/dashboards/ENV.json); `-` prints it."),
) -> None:
    """Write ENV's Cockpit Grafana dashboard as JSON, for review and import.

    One panel per alerted signal, plotting what its alert measures with the limit it fires
    at, then the counts that drive the bill and the app's logs (infra/dashboards.py). Calls
    nothing: import the file in Cockpit's Grafana (Dashboards > New > Import); importing
    it again replaces it (same uid, ciel-ENV).
    """
    from pathlib import Path

    from foundation import paths
    from infra.config import load_environment
    from infra.dashboards import dashboard, dashboard_json

    model = dashboard(load_environment(env))
    rendered = dashboard_json(model)
    if out_file == "-":
        typer.echo(rendered, nl=False)
        return
    path = Path(out_file) if out_file else paths.work_dir() / "dashboards" / f"{env}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered)
    row_count = sum(panel["type"] == "row" for panel in model["panels"])
    out.print(f"{path}: dashboard ciel-{env}, {len(model['panels']) - row_count} panels in {row_count} rows",
              highlight=False, markup=False)


@app.command()
def synth(
    env: str = EnvOption,
    offline: bool = typer.Option(False, "--offline", help="Use the throw-away local state backend (and the offline "
                                 "output folder) even if Scaleway credentials are present."),
    phase: Optional[int] = typer.Option(None, "--phase", min=1, max=2, help="Synthesize ENV as in this phase "
                                        "(default: the phase its file records); 2 adds the cluster and the "
                                        "workloads stack."),
) -> None:
    """Synthesize ENV's stacks to Terraform JSON; runs no engine, calls no API.

    The core stack and, in phase 2, the workloads stack (KEDA objects included when
    enable_keda). With Scaleway credentials the stacks use the remote state backend and
    go to cdktf.out/; without (or with --offline), the local throw-away backend and
    .ciel/offline/cdktf.out/.
    """
    from ciel import credentials as creds
    from infra.config import EnvironmentConfig, load_environment
    from toolchain import bindings

    config = load_environment(env)
    if phase is not None and phase != config.phase:
        from pydantic import ValidationError

        try:
            config = EnvironmentConfig(**{**config.model_dump(), "phase": phase})
        except ValidationError as error:
            raise UsageError(f"--phase {phase}: {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    found = creds.detect(offline)
    bindings.ensure_importable()
    from infra.app import synthesize, synthesize_workloads
    from infra.state import RemoteState

    remote = RemoteState.for_project(found.project_id, config.region) if found.live else None
    results = [synthesize(config, remote_state=remote)]
    if config.phase == 2:
        results.append(synthesize_workloads(config, remote_state=remote, include_untyped=config.enable_keda))
    for result in results:
        out.print(f"{result.stack}: {result.directory / 'cdk.tf.json'}", highlight=False, markup=False)


@app.command()
def plan(
    env: str = EnvOption,
    offline: bool = OfflineOption,
    engine: Optional[str] = EngineOption,
    provider_source: str = ProviderSourceOption,
) -> None:
    """Synthesize, validate and plan ENV's core stack (with the cluster in phase 2);
    never applies, even with credentials. `deploy phase2` also plans the workloads."""
    from ciel.deploy import deploy_phase1 as run_deploy

    outcome = run_deploy(env, force_offline=offline, engine_choice=engine, provider_source=provider_source,
                         confirm=lambda q: False, plan_only=True, force_phase1=True)
    _print_plan(outcome)
    out.print("Plan only: nothing was applied.")


@app.command()
def doctor(engine: Optional[str] = EngineOption) -> None:
    """Report the engine, providers, bindings, Node and credentials this machine has."""
    from ciel.doctor import checks

    results = checks(engine)
    table = Table(title="ciel doctor")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail")
    table.add_column("fix")
    for check in results:
        status = "[green]ok[/green]" if check.ok else "[red]missing[/red]"
        table.add_row(check.component, status, check.detail, "" if check.ok else check.fix)
    out.print(table)
    if not all(check.ok for check in results):
        raise typer.Exit(1)


@app.command()
def setup(
    engine: Optional[str] = EngineOption,
    all_engines: bool = typer.Option(False, "--all-engines", help="Also build OpenTofu when Terraform is present (the tests use both)."),
    lab_tools: bool = typer.Option(False, "--lab-tools", help="Also build the local Scaleway's tools from the Go "
                                   "module proxy: kube-apiserver and etcd (about 4 min and 2 GiB of RAM the first "
                                   "time), vegeta, and the tests' secret scanner gitleaks and workflow linter actionlint. "
                                   "`ciel lab rehearse` and the lab, secret-scan and workflow tests need them."),
) -> None:
    """Install the toolchain into the per-machine cache; idempotent, seconds when warm.

    Engine (terraform on PATH, else OpenTofu built from the Go module proxy), the
    providers built from the Go module proxy into a local mirror, the engine CLI config
    that points at it, Node 22 + the cdktn CLI from npm, and the generated Scaleway
    bindings. Cache: $CIEL_CACHE_DIR or ~/.cache/ciel-infra.
    """
    from toolchain.setup import run_setup

    for step in run_setup(engine, all_engines=all_engines, lab_tools=lab_tools):
        err.print(f"  [green]ok[/green] {step.name:<30} {step.seconds:6.1f}s  {step.detail}", highlight=False, soft_wrap=True)


_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings (a setting that has no effect) are one line for the user, as text."""
    if issubclass(category, CielWarning):
        err.print(Text.assemble(("warning:", "bold yellow"), " ", str(message)), highlight=False, soft_wrap=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main() -> None:
    """Entry point: our own errors become one readable line and a meaningful exit code."""
    from toolchain import node

    os.environ.update(node.runtime_env())  # any jsii runtime started below uses our Node
    warnings.simplefilter("default", CielWarning)  # each distinct warning once, never an exception
    warnings.showwarning = _show_warning
    try:
        app()
    except CielError as error:
        # The message echoes user values ("[/]", patterns like ^[a-z]...): text, never markup.
        err.print(Text.assemble(("error:", "bold red"), " ", str(error)), highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
