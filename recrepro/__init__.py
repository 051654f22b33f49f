"""recrepro: a reproducibility benchmark harness for LLM-enhanced recommendation.

Importing the package sets the process's runtime defaults before any heavy library is imported (see
:mod:`recrepro.runtime`): LiteLLM uses its bundled model-cost map (its import otherwise makes a network
request), DGL uses the PyTorch backend without writing a config file, OpenMP threads sleep when idle, and freed
memory is kept for reuse.
"""

from recrepro.runtime import configure_environment, keep_freed_memory

configure_environment()
keep_freed_memory()

__version__ = "0.1.0"
