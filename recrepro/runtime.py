"""The CPU runtime of every job: how many threads torch, DGL and OpenMP use, idle threads that sleep instead of
spinning, and a heap that keeps freed memory for reuse.

- ``OMP_WAIT_POLICY=PASSIVE``: OpenMP worker threads sleep when idle. With the default policy they spin, and on a
  busy machine (Snakemake running jobs side by side, a shared server) spinning threads steal the cores the other
  jobs need: ``benchmarks/thread_policy.py`` measures the difference. A job that has its CPUs to itself
  (``--exclusive``, which the workflow passes to a job whose threads are all of its cores) keeps OpenMP's own
  default instead: idle threads spin briefly, then sleep, which is faster between the many small parallel
  regions of a training step.
- Thread counts come from the job (``--threads``, which the workflow sets from each rule's ``threads``) and apply
  to torch, MKL and both OpenMP runtimes (torch's and DGL's).
- glibc returns large freed blocks to the system at once, so every training step pays page faults to get them
  back; keeping them (no mmap for large blocks, no trimming) removes that cost. A training step's buffers come
  back every step, so the heap stays at the peak it reaches in the first steps. With trimming above 1 GB (an
  earlier setting), LightGCN +IRLLRec on amazon still gave back and faulted in 0.3-1.6 GB in most steps, at
  0.3-4.6 s of system time each on a 2-core virtual machine.

Environment variables are defaults: a value the user set wins.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


_WAIT_POLICY = "OMP_WAIT_POLICY"
# set next to the harness's PASSIVE default, so that a child process (a Snakemake job) can tell it from a user's choice
_WAIT_POLICY_IS_DEFAULT = "RECREPRO_DEFAULT_OMP_WAIT_POLICY"


def configure_environment() -> None:
    """Defaults that must be in place before torch, DGL or LiteLLM are imported."""
    if _WAIT_POLICY not in os.environ:
        os.environ[_WAIT_POLICY] = "PASSIVE"
        os.environ[_WAIT_POLICY_IS_DEFAULT] = "1"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network request on import
    os.environ.setdefault("DGLBACKEND", "pytorch")  # no backend guess, no config file written on first import


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory in the process (no-op elsewhere, or if RECREPRO_MALLOC=system)."""
    if not sys.platform.startswith("linux") or os.environ.get("RECREPRO_MALLOC") == "system":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, -1)  # -1: never trim


def use_cpus_alone() -> None:
    """This process has its CPUs to itself: OpenMP's own wait policy instead of the harness's ``PASSIVE`` default
    (a policy the user set is kept). Call before torch and DGL are imported: OpenMP reads it once, when it loads."""
    if os.environ.get(_WAIT_POLICY_IS_DEFAULT) == "1" and os.environ.get(_WAIT_POLICY) == "PASSIVE":
        del os.environ[_WAIT_POLICY]


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in torch, MKL and OpenMP (call before heavy imports for OpenMP to see it)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "dgl" in sys.modules:
        sys.modules["dgl"].utils.set_num_threads(threads)


def configure_job(threads: int | None, exclusive: bool) -> None:
    """Apply a job's process options (``--threads``, ``--exclusive``). Call before torch and DGL are imported:
    OpenMP reads its settings once, when it loads."""
    if exclusive:
        use_cpus_alone()
    if threads:
        set_threads(threads)


def settings() -> dict[str, object]:
    """The settings that a run's speed depends on, as this process runs with them (for its provenance)."""
    torch = sys.modules.get("torch")
    return {
        "cpu_threads": torch.get_num_threads() if torch else None,
        "omp_wait_policy": os.environ.get(_WAIT_POLICY, "OpenMP's default"),
    }
