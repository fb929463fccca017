"""Safe reading and writing of ``.npz`` files with a JSON header.

Files users hand us are data, never code: arrays are read with ``allow_pickle=False``, and each
array's declared shape is checked against a size limit and against the bytes actually stored
*before* anything is allocated, so a corrupt or hostile header cannot make us allocate gigabytes.
The JSON header is stored as a ``uint8`` array under the key ``__header__``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FileFormatError

__all__ = ["MAX_ARRAY_BYTES", "read_npz", "write_npz"]

#: Largest single array we agree to allocate from a user's file (2 GiB).
MAX_ARRAY_BYTES = 2 * 1024**3

_HEADER_KEY = "__header__"


def write_npz(path: str | Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and a JSON ``header`` to a compressed ``.npz`` file.

    Parameters
    ----------
    path : str or Path
        Destination; written to a temporary name first and renamed, so a crash never leaves a
        truncated file under the final name.
    header : dict
        JSON-serialisable description of the file (format name, version, ...).
    arrays : dict of str to ndarray
        Numeric arrays; object arrays are refused.
    """
    path = Path(path)
    payload = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise FileFormatError(f"array {key!r} has dtype object, which SpikeForge never writes.")
        payload[key] = arr
    payload[_HEADER_KEY] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **payload)
    tmp.replace(path)


def _check_member(zf: zipfile.ZipFile, name: str, path: Path) -> None:
    """Read the ``.npy`` header of one member and refuse absurd or inconsistent sizes."""
    info = zf.getinfo(name)
    with zf.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        except (ValueError, OSError, EOFError) as exc:
            raise FileFormatError(f"{path}: array {name!r} has a corrupt header ({exc}).") from None
    if dtype.hasobject:
        raise FileFormatError(f"{path}: array {name!r} holds Python objects; only numeric data is accepted.")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise FileFormatError(f"{path}: array {name!r} declares {nbytes} bytes, over the {MAX_ARRAY_BYTES}-byte limit.")
    if nbytes > info.file_size:
        raise FileFormatError(
            f"{path}: array {name!r} declares {nbytes} bytes but stores only {info.file_size}; "
            "the file is truncated or corrupt."
        )


def read_npz(path: str | Path, expected_format: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_npz` (or any plain numeric ``.npz``).

    Parameters
    ----------
    path : str or Path
        The file to read.
    expected_format : str, optional
        If given, the header's ``"format"`` field must equal it.

    Returns
    -------
    header : dict
        The JSON header (empty if the file has none).
    arrays : dict of str to ndarray
        Every other array in the file.

    Raises
    ------
    FileFormatError
        The file is missing, not a zip/npz archive, truncated, or holds something else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file.")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise FileFormatError(f"{path}: member {bad!r} fails its CRC check; the file is corrupt.")
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    raise FileFormatError(f"{path}: member {name!r} is not a .npy array; not an .npz file.")
                _check_member(zf, name, path)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except zipfile.BadZipFile:
        raise FileFormatError(f"{path}: not an .npz archive (corrupt or truncated).") from None
    except (ValueError, OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise FileFormatError(f"{path}: cannot be read as .npz ({exc}).") from None
    header: dict[str, Any] = {}
    if _HEADER_KEY in arrays:
        raw = arrays.pop(_HEADER_KEY)
        try:
            header = json.loads(raw.astype(np.uint8).tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise FileFormatError(f"{path}: its JSON header is corrupt.") from None
        if not isinstance(header, dict):
            raise FileFormatError(f"{path}: its JSON header is not an object.")
    if expected_format is not None and header.get("format") != expected_format:
        found = header.get("format", "no format field")
        raise FileFormatError(f"{path}: expected a {expected_format!r} file, found {found!r}.")
    return header, arrays
