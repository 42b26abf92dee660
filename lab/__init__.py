"""A local Scaleway (`ciel lab`): an emulator that the real Terraform provider and the real
`scaleway` SDK talk to, offline, so apply, re-plan, rollouts and the cutover run here.

    api.py          the HTTP framework: routes, generic create/read/update/delete/list,
                    asynchronous statuses, the real API's error shapes
    store.py        the lab's state: in memory, persisted to a file so `lab up` resumes
    families/       one module per Scaleway API (vpc, ipam, instance, lb, rdb, ...)
    objectstorage.py Object Storage and Queues (S3, SQS) behind a local CONNECT proxy
    runner.py       `ciel lab up | down | env | status`: processes, ports, variables

The lab listens on 127.0.0.1 only and never forwards a request off this machine.
It imports nothing above `foundation`.
"""
