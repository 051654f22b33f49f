"""Loading pickles from the internet without running their code.

A pickle can name any importable callable and have it called while loading. The published RLMRec/IRLLRec
files hold only scipy sparse matrices and numpy arrays, so the loader admits exactly the classes those need
and refuses everything else before it is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

# (module, name) pairs that scipy.sparse coo/csr matrices and numpy arrays need, under the module paths
# of the numpy and scipy versions that wrote the published files and of the ones we run.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    ]
    + [
        (module, cls)
        for cls in ("coo_matrix", "csr_matrix", "csc_matrix")
        for module in (f"scipy.sparse._{cls[:3]}", f"scipy.sparse.{cls[:3]}", "scipy.sparse")
    ]
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refusing to load {module}.{name} from a pickle: only numpy arrays and scipy sparse "
                "matrices are allowed in dataset files"
            )
        return super().find_class(module, name)


def safe_load(source: Path | bytes) -> Any:
    """Unpickle a file (or bytes) that may only contain numpy arrays and scipy sparse matrices.

    Raises:
        UnsafePickleError: the pickle references any other global (it is never called).
    """
    data = Path(source).read_bytes() if not isinstance(source, bytes) else source
    return _RestrictedUnpickler(io.BytesIO(data)).load()
