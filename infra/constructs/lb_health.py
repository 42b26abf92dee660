"""The load balancer backends' health check, in one place: the edge construct declares it,
and the cutover computes its worst case from it (`ciel migrate plan`). No imports: reading
these numbers must not start the CDK runtime."""

HEALTH_CHECK_DELAY_SECONDS = 5  # between two checks of a server (also the bake watch's default cadence)
HEALTH_CHECK_TIMEOUT_SECONDS = 3  # a check that has not answered by then failed
HEALTH_CHECK_MAX_RETRIES = 2  # failed checks in a row before the LB marks the server down (its fall count)
LB_CONNECT_RETRIES = 3  # a request whose connection fails is retried (the provider's default), on another server
