"""The JAX test job: these tests run only in a process on the JAX backend.

`tests/test_jax_backend_job.py` starts that process (``KERAS_BACKEND=jax``
with the runtime's model-side-only flag) from the normal test run; on any
other backend this folder is not collected.
"""

import keras

if keras.backend.backend() != "jax":
    collect_ignore_glob = ["test_*.py"]
