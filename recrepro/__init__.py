"""recrepro: a reproducibility benchmark harness for LLM-enhanced recommendation.

Importing the package sets two environment defaults before any heavy library is imported:
LiteLLM must use its bundled model-cost map (its import otherwise makes a network request), and DGL
must use the PyTorch backend without writing a config file into the home directory.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"
