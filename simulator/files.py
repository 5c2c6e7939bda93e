"""Reading and writing the user's files: one place that turns OS, decoding and format errors into a
clear :class:`CapsimError`, and writes every output file whole or not at all.

Readers: :func:`read_text` (any text file: missing, a folder, unreadable, not UTF-8), :func:`read_yaml`
(plus bad YAML and documents that expand past :data:`MAX_YAML_NODES` values, the YAML alias bomb),
:func:`read_json_object` (a JSON object, e.g. a Hugging Face config.json). Writers:
:func:`check_writable` (before a long run, so a bad ``--out`` loses nothing) and :func:`write_atomic`
(a temporary file in the same folder, then a rename: a full disk leaves the old file as it was).
:func:`safe_name` makes a file name from a user's string (a scenario's ``name``, a model reference).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import reprlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

from .errors import CapsimError

# A scenario or profile has a few hundred values; a YAML alias bomb (nested anchors, each repeating
# the previous several times) expands to billions. Past this many values a document is refused.
MAX_YAML_NODES = 1_000_000
EXCERPT_CHARS = 80   # the longest excerpt of the user's input an error message quotes

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxtuple = 3, 6, 6, 6
_repr.maxstring, _repr.maxother = EXCERPT_CHARS, EXCERPT_CHARS


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short repr of ``value`` for an error message: never longer than ``limit`` characters, and
    cheap on huge or deeply nested values (it never renders the whole value)."""
    text = _repr.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text(path: str | Path, what: str) -> str:
    """The text of ``path`` as UTF-8 (``what`` names it in errors, e.g. 'scenario file')."""
    p = Path(path)
    name = excerpt(str(p))
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise CapsimError(f"{what} {name} does not exist") from None
    except IsADirectoryError:
        raise CapsimError(f"{what} {name} is a folder, not a file") from None
    except PermissionError:
        raise CapsimError(f"{what} {name} cannot be read (permission denied)") from None
    except OSError as e:
        raise CapsimError(f"{what} {name} cannot be read: {e.strerror or e}") from None
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CapsimError(f"{what} {name} is a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        kind = "UTF-16 text" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "not UTF-8 text"
        raise CapsimError(f"{what} {name} is {kind} (byte {data[e.start]:#04x} at offset {e.start}); "
                          "save it as UTF-8") from None


def _count_nodes(doc: Any, limit: int) -> int:
    """Values in ``doc`` counting every reference (an alias counts each time it is used), stopping
    past ``limit``."""
    seen, stack = 0, [doc]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return seen
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return seen


_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, parsed by libyaml where PyYAML has it (about 10x faster on the catalog
    and price files; the same Python constructor builds the values, so the document is the same). On
    any error the pure-Python parser runs again, so error messages are PyYAML's usual ones."""
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in ``path`` (``what`` names it in errors, e.g. 'scenario file')."""
    text = read_text(path, what)
    name = excerpt(str(path))
    try:
        doc = parse_yaml(text)
    except yaml.YAMLError as e:
        msg = str(e)
        raise CapsimError(f"{what} {name} is not valid YAML: {msg if len(msg) <= 400 else msg[:397] + '...'}") from None
    if _count_nodes(doc, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise CapsimError(f"{what} {name} expands to more than {MAX_YAML_NODES:,} values (nested YAML aliases?); "
                          "a scenario has a few hundred")
    return doc


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object (a mapping) in ``path``."""
    text = read_text(path, what)
    name = excerpt(str(path))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CapsimError(f"{what} {name} is not valid JSON: {e}") from None
    except RecursionError:
        raise CapsimError(f"{what} {name} is nested too deeply to be a {what}") from None
    if not isinstance(doc, dict):
        raise CapsimError(f"{what} {name} must hold a JSON object {{...}}, not a {type(doc).__name__}")
    return doc


# ---- writing ------------------------------------------------------------------------------------
def check_writable(path: str | Path, what: str, *, suffixes: tuple[str, ...] = (), make_folder: bool = False) -> Path:
    """Check, before a long run, that ``path`` can be written: its folder exists (or, with
    ``make_folder``, can be made) and is writable, it is not a folder, and (with ``suffixes``) it ends
    in one of them."""
    p = Path(path)
    name = excerpt(str(p))
    if p.is_dir():
        raise CapsimError(f"{what} {name} is a folder; give a file name")
    if suffixes and p.suffix.lower() not in suffixes:
        raise CapsimError(f"{what} {name}: expected a file ending in {' or '.join(suffixes)}")
    folder = p.parent if str(p.parent) else Path(".")
    if make_folder:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        raise CapsimError(f"{what} {name}: folder {excerpt(str(folder))} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CapsimError(f"{what} {name} cannot be written (permission denied)")
    return p


def write_atomic(path: str | Path, data: str | bytes | Callable[[IO[bytes]], None], what: str = "output file") -> None:
    """Write ``data`` (text as UTF-8, bytes, or a function writing to a binary file) to ``path``
    through a temporary file in the same folder, renamed over ``path`` once complete: a failed write
    (a full disk, an interrupt) leaves the previous file as it was and no partial one."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise CapsimError(f"{what} {excerpt(str(p))} cannot be written: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):   # keep the permissions an existing file had
            os.chmod(tmp, p.stat().st_mode & 0o7777 if p.exists() else 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise CapsimError(f"{what} {excerpt(str(p))} cannot be written: {e.strerror or e}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, default: str = "capsim", limit: int = 80) -> str:
    """A file name made from a user's string: letters, digits, '.', '_' and '-' only (every other run
    of characters, path separators included, becomes '_'), no leading dot, at most ``limit``
    characters; ``default`` when nothing is left."""
    name = _UNSAFE.sub("_", text).strip("._-")[:limit].rstrip("._-")
    return name or default
