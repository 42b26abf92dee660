"""The lab's Instance API: the real provider applies our compute construct's servers against
it (re-plan empty, a change of user data replaces the machine, destroy leaves nothing), and
the cutover's SDK path powers a lab server off and on through the real transient states."""

from __future__ import annotations

import json

import pytest
from scaleway import Client
from scaleway.instance.v1.custom_api import InstanceUtilsV1API
from scaleway.marketplace.v2 import LocalImageType, MarketplaceV2API
from scaleway_core.api import ScalewayException

from infra.cloudinit.app import AppMachine, app_user_data
from infra.cloudinit.secrets import SecretSource
from migrate.instances import Instances
from tests.lab_support import apply_then_replan, engine, lab_json, outputs, running_lab

pytestmark = pytest.mark.engine

ZONE = "fr-par-1"


def _user_data(image_tag: str) -> str:
    """The API machine's cloud-init, as our compute construct renders it."""
    return app_user_data(AppMachine(
        role="api", environment="dev", registry_host="rg.fr-par.scw.cloud",
        image=f"rg.fr-par.scw.cloud/ciel/ciel:{image_tag}", settings={"S3_BUCKET": "media"},
        secret_env={"DATABASE_URL": "database-url"}, registry_password_secret="registry-pull-key",
        secrets=SecretSource(region="fr-par", project_id="11111111-1111-4111-8111-111111111111", path="/ciel/dev",
                             reader_key="lab-reader-key"), stop_timeout_seconds=30))


def _hcl_string(text: str) -> str:
    """A quoted HCL string holding `text` literally (JSON escapes, template sequences doubled)."""
    return json.dumps(text).replace("${", "$${").replace("%{", "%%{")


def _compute(user_data: str) -> str:
    """The arguments `ciel synth --env dev` gives the API machine (infra/constructs/compute.py)."""
    tags = '["app=ciel", "environment=dev", "layer=compute"]'
    return f"""
resource "scaleway_vpc_private_network" "main" {{
  name = "ciel-dev"
  ipv4_subnet {{ subnet = "10.0.0.0/24" }}
}}
resource "scaleway_instance_placement_group" "api" {{
  name        = "ciel-dev-api"
  zone        = "{ZONE}"
  policy_type = "max_availability"
  tags        = {tags}
}}
resource "scaleway_instance_security_group" "api" {{
  name                    = "ciel-dev-api"
  zone                    = "{ZONE}"
  inbound_default_policy  = "drop"
  outbound_default_policy = "accept"
  stateful                = true
  inbound_rule {{
    action   = "accept"
    protocol = "TCP"
    port     = 8080
    ip_range = "10.0.0.0/24"
  }}
  tags = {tags}
}}
resource "scaleway_instance_security_group" "worker" {{
  name                    = "ciel-dev-worker"
  zone                    = "{ZONE}"
  inbound_default_policy  = "drop"
  outbound_default_policy = "accept"
  stateful                = true
  tags                    = {tags}
}}
resource "scaleway_ipam_ip" "api_0_address" {{
  region = "fr-par"
  tags   = ["app=ciel", "environment=dev", "layer=compute", "role=api"]
  source {{ private_network_id = scaleway_vpc_private_network.main.id }}
}}
resource "terraform_data" "api_0_boot_config" {{
  input = {{ cloud_init = {_hcl_string(user_data)} }}
}}
resource "scaleway_instance_server" "api_0" {{
  name               = "ciel-dev-api-0"
  type               = "DEV1-S"
  image              = "debian_bookworm"
  zone               = "{ZONE}"
  security_group_id  = scaleway_instance_security_group.api.id
  placement_group_id = scaleway_instance_placement_group.api.id
  enable_dynamic_ip  = false
  user_data          = {{ "cloud-init" = {_hcl_string(user_data)} }}
  tags               = ["app=ciel", "environment=dev", "layer=compute", "role=api"]
  lifecycle {{ replace_triggered_by = [terraform_data.api_0_boot_config] }}
}}
resource "scaleway_instance_private_nic" "api_0_nic" {{
  server_id          = scaleway_instance_server.api_0.id
  private_network_id = scaleway_vpc_private_network.main.id
  ipam_ip_ids        = [scaleway_ipam_ip.api_0_address.id]
  zone               = "{ZONE}"
}}
output "server_id" {{ value = scaleway_instance_server.api_0.id }}
output "nic_address" {{ value = scaleway_instance_private_nic.api_0_nic.private_ips[0].address }}
output "reserved_address" {{ value = scaleway_ipam_ip.api_0_address.address }}
"""


def test_compute_servers_apply_replan_empty_replace_on_new_user_data_and_destroy(tmp_path):
    directory = tmp_path / "tf"
    with running_lab(tmp_path / "work") as lab_env:
        applied, replan, output = apply_then_replan(directory, lab_env, _compute(_user_data("1.0.0")))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "8 added" in applied.stdout
        assert replan == 0, output
        first = outputs(directory, lab_env)
        assert first["nic_address"] == first["reserved_address"].split("/")[0]

        # A new image tag changes the user data: the machine is replaced, its address stays.
        applied, replan, output = apply_then_replan(directory, lab_env, _compute(_user_data("1.0.1")))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "2 destroyed" in applied.stdout  # the server and its NIC
        assert replan == 0, output
        second = outputs(directory, lab_env)
        assert second["server_id"] != first["server_id"]
        assert second["nic_address"] == first["nic_address"]

        destroyed = engine(directory, lab_env, "destroy", "-auto-approve", "-input=false")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        assert "8 destroyed" in destroyed.stdout
        # Nothing left behind, the servers' root volumes included.
        assert lab_json(lab_env, f"/instance/v1/zones/{ZONE}/servers")["servers"] == []
        assert lab_json(lab_env, f"/block/v1/zones/{ZONE}/volumes")["volumes"] == []


def _states_until(instances: Instances, server_id: str, settled: str) -> list[str]:
    seen = [instances.state(server_id)]
    while seen[-1] != settled and len(seen) < 5:
        seen.append(instances.state(server_id))
    return seen


def test_the_cutover_sdk_path_powers_a_lab_server_off_and_on(tmp_path):
    with running_lab(tmp_path / "work") as lab_env:
        client = Client(access_key=lab_env["SCW_ACCESS_KEY"], secret_key=lab_env["SCW_SECRET_KEY"],
                        default_project_id=lab_env["SCW_DEFAULT_PROJECT_ID"], default_region="fr-par",
                        default_zone=ZONE, api_url=lab_env["SCW_API_URL"])
        image = MarketplaceV2API(client).list_local_images(zone=ZONE, image_label="debian_bookworm",
                                                           type_=LocalImageType.INSTANCE_SBS).local_images[0]
        api = InstanceUtilsV1API(client)  # the SDK's create_server lives there
        server = api.create_server(zone=ZONE, commercial_type="DEV1-S", image=image.id, name="ciel-dev-api-0",
                                   project=lab_env["SCW_DEFAULT_PROJECT_ID"], dynamic_ip_required=False).server
        assert server.state == "stopped"
        calls: list[str] = []
        instances = Instances(client, ZONE, log=calls.append, poll_seconds=0)

        instances.power_on(server.id)
        assert _states_until(instances, server.id, "running") == ["starting", "running"]
        with pytest.raises(ScalewayException) as refused:  # as the real API: stop it first
            api.delete_server(zone=ZONE, server_id=server.id)
        assert refused.value.status_code == 400

        instances.power_off(server.id)
        assert _states_until(instances, server.id, "stopped") == ["stopping", "stopped"]
        instances.power_off(server.id)  # already off: no second action
        assert sum("action=poweroff" in line for line in calls) == 1

        api.delete_server(zone=ZONE, server_id=server.id)
        with pytest.raises(ScalewayException) as gone:
            api.get_server(zone=ZONE, server_id=server.id)
        assert gone.value.status_code == 404
