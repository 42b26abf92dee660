"""How traffic and work move from the instances to the cluster: the cutover.

engine.py     the state machine: plan → preflight → preview → switch → bake → drain →
              retire → done, with rollback from every state, resumable after a crash
steps.py      what each step does and checks (and where the cutover decides to roll back)
store.py      the persisted, locked record of a cutover
loadbalancer.py, instances.py, cluster.py   the Scaleway and Kubernetes sides, idempotent
probes.py     HTTP probes through the load balancer
planning.py   `ciel migrate plan`: the same steps against recorders, printing every call
"""
