"""A restricted unpickler for the CIFAR "python version" batch files.

The CIFAR-10/100 archives (Krizhevsky 2009) store each batch as a Python 2 ``cPickle`` (protocol 2)
of a dict: ``data`` a uint8 numpy array, label lists of ints, str/bytes names. Plain ``pickle.load``
(and torchvision's CIFAR classes, which call it) runs any callable a crafted file names, so these
files are read with the "restricting globals" recipe of the Python ``pickle`` documentation: the
only globals a file may name are the three numpy rebuilders a protocol-2 array needs
(``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) and
``_codecs.encode`` restricted to latin-1 text (how Python 3 writes bytes at protocol 2). Anything
else (``os.system``, ``builtins.eval``, ...) is refused before it is looked up.
"""
from __future__ import annotations

import codecs
import io
import pickle

import numpy as np


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes; any other codec is refused."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1" or errors != "strict":
        raise pickle.UnpicklingError(f"refused _codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


_RECONSTRUCT = np.array(0).__reduce__()[0]   # numpy's _reconstruct, whatever module numpy keeps it in
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,   # numpy 1.x name (the archives')
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 2.x name
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def restricted_loads(data: bytes):
    """Unpickle ``data`` allowing only dicts, lists, tuples, numbers, str/bytes and numpy arrays.

    Raises whatever the unpickler raises on a malformed stream; :class:`pickle.UnpicklingError`
    for a refused global. Python 2 strings are decoded as latin-1 (as torchvision does).
    """
    return _Restricted(io.BytesIO(data), encoding="latin1").load()
