"""Data parallelism over every device of every process: one mesh axis, ``data``.

Parameters are replicated; batches are split along their first axis over ``data``. The same code runs
on one CPU, on 8 fake CPU devices (the tests), on a host with several GPUs and on many TPU hosts:
each process hands in its own share of the global batch and
``jax.make_array_from_process_local_data`` assembles the global array. (No ``jax.pmap``.)
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "maybe_initialize_distributed",
    "data_mesh",
    "data_sharding",
    "replicated_sharding",
    "replicate",
    "global_batch",
    "local_batch_size",
]

DATA_AXIS = "data"
log = logging.getLogger(__name__)

# Environment variables that mean "this process is one of several": a coordinator given explicitly,
# a SLURM job step with more than one task, or a multi-host Cloud TPU slice.
_DISTRIBUTED_HINTS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def maybe_initialize_distributed(force: bool | None = None) -> bool:
    """Call ``jax.distributed.initialize()`` when this process was launched as one of several.

    ``force=True`` always initialises (arguments come from the cluster environment: SLURM, Cloud TPU,
    or ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``); ``False`` never does;
    ``None`` decides from the environment. Returns whether it initialised.
    """
    if force is None:
        slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
        force = any(os.environ.get(k) for k in _DISTRIBUTED_HINTS) or slurm_tasks > 1
    if not force:
        return False
    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs = {
            "coordinator_address": os.environ["JAX_COORDINATOR_ADDRESS"],
            "num_processes": int(os.environ["JAX_NUM_PROCESSES"]),
            "process_id": int(os.environ["JAX_PROCESS_ID"]),
        }
    jax.distributed.initialize(**kwargs)
    log.info(
        "jax.distributed: process %d of %d, %d devices in all",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
    )
    return True


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) axis over ``data``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
    """Put a pytree (e.g. the train state) on every device of the mesh."""
    return jax.device_put(tree, replicated_sharding(mesh))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This process's share of a global batch; the global batch must split evenly over the devices."""
    n_dev = mesh.devices.size
    if global_batch_size % n_dev:
        raise ValueError(
            f"global batch {global_batch_size} does not split over {n_dev} devices; use a multiple of {n_dev}"
        )
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    return global_batch_size // n_dev * local_devices


def global_batch(local, mesh: Mesh):
    """Assemble the global batch from this process's share (a pytree of arrays, leading axis = batch)."""
    sharding = data_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local)
