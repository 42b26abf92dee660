"""Cluster layer (phase 2): a Kapsule cluster on the shared private network.

Nodes have no public IPs (egress through the public gateway). The pool autoscales and
autoheals; autoscaler scale-downs give pods the worker's full grace period, so a worker
finishes its job before its node goes away.

`delete_additional_resources = false`, on purpose: deleting the cluster must never take
block volumes (data) with it. The private LB that the cloud controller creates for the
api Service is then removed explicitly when phase 2 is torn down.
"""

from __future__ import annotations

from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.networking import Networking
from infra.providers import scaleway


class Cluster(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, network: Networking) -> None:
        super().__init__(scope, id_)
        cluster = scaleway("k8s_cluster")
        pool = scaleway("k8s_pool")
        ipam_ip = scaleway("ipam_ip")
        tags = config.tags("cluster")
        grace = config.worker_termination_grace_seconds

        self.cluster = cluster.K8SCluster(
            self,
            "cluster",
            name=f"ciel-{config.name}",
            type="kapsule",
            version=config.k8s_version,
            cni=config.k8s_cni,
            region=config.region,
            private_network_id=network.private_network.id,
            delete_additional_resources=False,
            auto_upgrade=cluster.K8SClusterAutoUpgrade(enable=True, maintenance_window_day="sunday",
                                                       maintenance_window_start_hour=3),
            autoscaler_config=cluster.K8SClusterAutoscalerConfig(
                balance_similar_node_groups=True,
                estimator="binpacking",
                expander="least_waste",
                scale_down_delay_after_add="10m",
                scale_down_unneeded_time="10m",
                max_graceful_termination_sec=grace,
            ),
            tags=tags,
            # The network (and its gateway) must exist before nodes without public IPs boot.
            depends_on=[network.gateway_network],
        )
        self.pool = pool.K8SPool(
            self,
            "pool",
            cluster_id=self.cluster.id,
            name=f"ciel-{config.name}-default",
            node_type=config.k8s_node_type,
            size=config.k8s_pool_min_size,
            min_size=config.k8s_pool_min_size,
            max_size=config.k8s_pool_max_size,
            autoscaling=True,
            autohealing=True,
            public_ip_disabled=True,
            container_runtime="containerd",
            zone=config.zone,
            wait_for_pool_ready=True,
            # One node at a time, a new one first. max_unavailable stays 1 (the API's default):
            # provider 2.81.0 never sends 0 on create, so 0 would leave a change behind every
            # first apply; the PDBs keep the api and workers running through each drain.
            upgrade_policy=pool.K8SPoolUpgradePolicy(max_surge=1, max_unavailable=1),
            # No kubelet_args: Kapsule accepts only the arguments each version lists in
            # `available_kubelet_args`, and the node shutdown grace period is not one of them.
            tags=tags,
        )
        # The cluster's entry point: a reserved private address that the cloud controller
        # gives to the api Service's private LB, and that the shared LB's cluster backend
        # targets. It outlives LB re-creations, so no node IP list is ever kept by hand.
        self.ingress_address = ipam_ip.IpamIp(
            self, "ingress_address", region=config.region, tags=[*tags, "role=cluster-ingress"],
            source=[ipam_ip.IpamIpSource(private_network_id=network.private_network.id)])
