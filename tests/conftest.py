"""Four fake CPU devices for every test, so the data-parallel code runs sharded as on a GPU/TPU host, and one
compilation cache for the session, so that the end-to-end tests (in this process and in `python -m` subprocesses)
compile each train step once.

The flags must be set before JAX initialises, hence here, at import time, through the environment.
"""

import atexit
import os
import shutil
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4').strip()
_CACHE = tempfile.mkdtemp(prefix='fn2en_jax_xla_cache_')
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
