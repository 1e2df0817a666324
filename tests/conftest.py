"""Settings for the whole suite."""

import os

from hypothesis import HealthCheck, settings

# No per-example deadline: the machines are shared 2-core boxes and a slow example is not a
# bug. In CI the search is derandomised, so a run is repeatable; locally it explores.
settings.register_profile(
    "teledrive",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile("teledrive")
