"""Four fake CPU devices for every test, so the data-parallel code runs sharded as on a GPU/TPU host.

The flag must be set before JAX initialises its backend, hence here, at import time.
"""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4').strip()
