"""Any value an estimator holds, as JSON that names its arrays and allow-listed classes.

:class:`Encoder` turns a fitted estimator into a tree of plain JSON: numbers, strings
and lists stay as they are; everything else becomes a node, a JSON object whose
``"type"`` says what it is (``"estimator"``, ``"array"``, ``"tuple"``, ...). Arrays go to
``.npy`` entries of the archive, which the node names. :class:`Decoder` rebuilds the
values from such a tree, accepting only the node types below and only allow-listed
classes (:mod:`fusionrec.files.allowed`). An object met twice (a fitted branch that a
classifier and its features share, say) is written once and referred to afterwards, as
pickle does.

Estimators whose state needs more than this (a network, a faiss index) have a codec
(:class:`Codec`) that stores those attributes itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Protocol

import joblib
import numpy as np
from sklearn.base import BaseEstimator

from . import classifiers
from .allowed import ESTIMATORS, OBJECTS, RECORDS, name_of
from .archive import ArchiveReader, ArchiveWriter
from .errors import ModelFileError

PLAIN = (str, int, float, bool, type(None))
"""What JSON holds as it is (and tells apart: ``true`` stays a bool, ``1`` an int)."""

_ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMERIC_KINDS = "biuf"


MAX_DEPTH = 100
"""Deepest nesting of values a file may hold; fusionrec writes a few levels, never near it."""


class Codec(Protocol):
    """Stores the attributes of one estimator class that the generic rules cannot."""

    names: tuple[str, ...]
    """The attributes (parameters or fitted) it may store, whatever their value."""

    def encode(self, estimator: Any, encoder: Encoder, where: str) -> dict[str, Any]:
        """Nodes for the attributes (parameters or fitted) this codec stores itself."""

    def decode(
        self, nodes: dict[str, Any], values: dict[str, Any], decoder: Decoder, where: str
    ) -> dict[str, Any]:
        """Attribute values from ``nodes``; ``values`` holds every other attribute, decoded.

        May also return changed values of other attributes.
        """


class Encoder:
    """Turn values into JSON nodes, writing their arrays into ``archive``.

    Parameters
    ----------
    archive : ArchiveWriter
    codecs : mapping of class to Codec
    """

    def __init__(self, archive: ArchiveWriter, codecs: Mapping[type, Codec]) -> None:
        self.archive = archive
        self.codecs = codecs
        self._ids: dict[int, int] = {}
        self._kept: list[Any] = []  # keeps encoded objects alive, so that ids stay unique
        self._parts = 0

    def part(self, folder: str, suffix: str, data: Any = None, *, array: Any = None) -> str:
        """Write ``data`` (bytes) or ``array`` (``.npy``) as a new entry; return its name."""
        self._parts += 1
        name = f"{folder}/{self._parts}{suffix}"
        if array is not None:
            return self.archive.write_array(name, array)
        return self.archive.write_bytes(name, data)

    def array(self, array: np.ndarray, where: str) -> dict:
        """The node of a numeric array, written as ``.npy``; object arrays of labels as JSON."""
        if array.dtype.hasobject:
            return self._labels(array, where)
        return {"type": "array", "part": self.part("arrays", ".npy", array=array)}

    def _labels(self, array: np.ndarray, where: str) -> dict:
        if array.ndim != 1:
            raise TypeError(f"cannot store {where}: an object array of {array.ndim} dimensions")
        items = [_plain_item(item, where) for item in array.tolist()]
        return {"type": "labels", "part": self.part("labels", ".json", _json_bytes(items))}

    def encode(self, value: Any, where: str) -> Any:
        """The JSON node of ``value``; ``where`` names it in error messages."""
        if isinstance(value, np.generic):  # before PLAIN: numpy's float64 and str_ subclass it
            return _numpy_scalar(value, where)
        if isinstance(value, PLAIN):
            return value
        if isinstance(value, np.ndarray):
            return self.array(value, where)
        if isinstance(value, list):
            return [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, tuple):
            items = [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return {"type": "tuple", "items": items}
        if isinstance(value, dict):
            return self._dict(value, where)
        if isinstance(value, PurePath):
            return {"type": "path", "value": str(value)}
        if isinstance(value, np.random.RandomState):
            return _random_state(value)
        if isinstance(value, joblib.Memory):
            return {"type": "joblib.Memory", "location": _location(value)}
        if id(value) in self._ids:
            return {"type": "ref", "id": self._ids[id(value)]}
        return self._object(value, where)

    def _dict(self, value: dict, where: str) -> dict:
        if all(isinstance(key, str) for key in value):
            return {
                "type": "dict",
                "items": {
                    key: self.encode(item, f"{where}[{key!r}]") for key, item in value.items()
                },
            }
        pairs = [
            [self.encode(key, f"{where} key"), self.encode(item, f"{where}[{key!r}]")]
            for key, item in value.items()
        ]
        return {"type": "dict", "pairs": pairs}

    def _object(self, value: Any, where: str) -> dict:
        name = name_of(type(value))
        if name in ESTIMATORS:
            node = self._estimator(value, name, where)
        elif name in RECORDS:
            fields = {
                field.name: self.encode(getattr(value, field.name), f"{where}.{field.name}")
                for field in dataclasses.fields(value)
            }
            node = {"type": "record", "class": name, "fields": fields}
        elif name in OBJECTS:
            node = {"type": "object", "class": name, "state": self._attributes(vars(value), where)}
        elif isinstance(value, BaseEstimator) and type(value).__module__.startswith("sklearn."):
            node = {
                "type": "skops",
                "class": f"{type(value).__module__}.{type(value).__qualname__}",
                "part": self.part("classifiers", ".skops", classifiers.dumps(value, where)),
            }
        else:
            node = _special(value, where)
        self._ids[id(value)] = len(self._ids)
        self._kept.append(value)
        return {**node, "id": self._ids[id(value)]}

    def _estimator(self, estimator: Any, name: str, where: str) -> dict:
        codec = self.codecs.get(type(estimator))
        special = codec.encode(estimator, self, where) if codec else {}
        params = estimator.get_params(deep=False)
        state = {key: value for key, value in vars(estimator).items() if key not in params}
        added = {key: node for key, node in special.items() if key not in params | state}
        return {
            "type": "estimator",
            "class": name,
            "params": self._attributes(params, where, special),
            "state": self._attributes(state, where, special) | added,
        }

    def _attributes(self, values: dict, where: str, special: Mapping | None = None) -> dict:
        special = special or {}
        return {
            key: special[key] if key in special else self.encode(value, f"{where}.{key}")
            for key, value in values.items()
        }


class Decoder:
    """Rebuild values from the nodes :class:`Encoder` wrote, accepting nothing else.

    Parameters
    ----------
    archive : ArchiveReader
    codecs : mapping of class to Codec
    sklearn_version : str
        The scikit-learn version that wrote the file (scikit-learn warns on a mismatch).
    modules : mapping of str to torch.nn.Module
        The user's own networks, by class name (see :func:`fusionrec.load`).
    """

    def __init__(
        self,
        archive: ArchiveReader,
        codecs: Mapping[type, Codec],
        sklearn_version: str,
        modules: Mapping[str, Any],
    ) -> None:
        self.archive = archive
        self.codecs = codecs
        self.sklearn_version = sklearn_version
        self.modules = modules
        self._objects: dict[int, Any] = {}
        self._depth = 0

    def error(self, where: str, problem: str) -> ModelFileError:
        """A :class:`ModelFileError` naming the file and the value."""
        return self.archive.error(f"cannot be opened: {where} {problem}")

    def part(self, node: dict, where: str) -> str:
        """The entry a node names, checked to be there."""
        name = node.get("part")
        if not isinstance(name, str) or name not in self.archive:
            raise self.archive.error(
                f"lacks the part {name!r} that {where} is stored in: the file is damaged or "
                "incomplete. Save the model again"
            )
        return name

    def decode(self, node: Any, where: str) -> Any:
        """The value of ``node``."""
        if isinstance(node, PLAIN):
            return node
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise self.archive.error("is nested too deeply to be a file fusionrec wrote")
            return self._decoded(node, where)
        finally:
            self._depth -= 1

    def _decoded(self, node: Any, where: str) -> Any:
        if isinstance(node, list):
            return [self.decode(item, f"{where}[{i}]") for i, item in enumerate(node)]
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            raise self.error(where, f"is not a value fusionrec writes: {_short(node)}")
        kind, identity = node["type"], node.get("id")
        if identity is not None and not isinstance(identity, int):
            raise self.error(where, f"has the invalid object id {_short(identity)}")
        if kind == "ref":
            if identity not in self._objects:
                raise self.error(where, f"refers to object {identity!r}, not read before it")
            return self._objects[identity]
        decode = _DECODERS.get(kind)
        if decode is None:
            raise self.error(where, f"has the unknown type {kind!r}")
        value = decode(self, node, where)
        if identity is not None:
            self._objects[identity] = value
        return value

    def array(self, node: Any, where: str) -> np.ndarray:
        """The array an ``"array"`` node names."""
        if not isinstance(node, dict) or node.get("type") != "array":
            raise self.error(where, f"should be an array; got {_short(node)}")
        return self.archive.array(self.part(node, where))

    def attributes(self, node: Any, where: str, skip: tuple = ()) -> dict:
        """Attribute names (checked to be plain names) and decoded values, but ``skip``'s."""
        for key in _mapping(self, node, where):
            if not _ATTRIBUTE.fullmatch(key) or key.startswith("__"):
                raise self.error(where, f"names the attribute {key!r}, not a plain name")
        return {
            key: self.decode(value, f"{where}.{key}")
            for key, value in node.items()
            if key not in skip
        }

    def lookup(self, table: dict, node: dict, where: str) -> type:
        """The allow-listed class a node names; an error for any other name."""
        name = node.get("class")
        if not isinstance(name, str) or name not in table:
            raise self.error(
                where,
                f"names the class {name!r}, which is not on fusionrec's allow-list of classes a "
                "file may hold. fusionrec never writes such a file: do not use it",
            )
        return table[name]


def _decode_estimator(decoder: Decoder, node: dict, where: str) -> Any:
    cls = decoder.lookup(ESTIMATORS, node, where)
    codec = decoder.codecs.get(cls)
    params_node = _mapping(decoder, node.get("params", {}), where)
    state_node = _state(decoder, cls, node.get("state", {}), where)
    unknown = sorted(set(params_node) - {*cls._get_param_names(), *getattr(cls, "_renamed", {})})
    if unknown:
        raise decoder.error(where, f"gives {cls.__name__} parameters it does not have: {unknown}")
    special = {
        key: value
        for key, value in {**params_node, **state_node}.items()
        if codec and key in codec.names
    }
    values = {
        **decoder.attributes(params_node, where, skip=tuple(special)),
        **decoder.attributes(state_node, where, skip=tuple(special)),
    }
    if codec:
        values |= codec.decode(special, values, decoder, where)
    if cls.__module__.startswith("sklearn."):
        values["_sklearn_version"] = decoder.sklearn_version
    estimator = cls.__new__(cls)
    estimator.__setstate__(values)
    return estimator


def _decode_record(decoder: Decoder, node: dict, where: str) -> Any:
    cls = decoder.lookup(RECORDS, node, where)
    fields = decoder.attributes(node.get("fields", {}), where)
    known = {field.name for field in dataclasses.fields(cls)}
    if not set(fields) <= known:
        raise decoder.error(
            where, f"gives {cls.__name__} unknown fields {sorted(set(fields) - known)}"
        )
    try:
        return cls(**fields)
    except (TypeError, ValueError, IndexError, KeyError) as error:
        raise decoder.error(where, f"holds an invalid {cls.__name__}: {error}") from None


def _mapping(decoder: Decoder, node: Any, where: str) -> dict:
    if not isinstance(node, dict):
        raise decoder.error(where, f"should map attribute names to values; got {_short(node)}")
    return node


def _state(decoder: Decoder, cls: type, node: Any, where: str) -> dict:
    """The fitted attributes' nodes, none of which may replace a method or class attribute."""
    shadowing = sorted(key for key in _mapping(decoder, node, where) if hasattr(cls, key))
    if shadowing:
        raise decoder.error(where, f"would replace {cls.__name__}'s own attributes {shadowing}")
    return node


def _decode_object(decoder: Decoder, node: dict, where: str) -> Any:
    cls = decoder.lookup(OBJECTS, node, where)
    state_node = _state(decoder, cls, node.get("state", {}), where)
    value = cls.__new__(cls)
    value.__dict__.update(decoder.attributes(state_node, where))
    return value


def _decode_labels(decoder: Decoder, node: dict, where: str) -> np.ndarray:
    items = decoder.archive.read_json(decoder.part(node, where))
    if not isinstance(items, list) or not all(isinstance(item, PLAIN) for item in items):
        raise decoder.error(where, "should be a list of labels (strings or numbers)")
    labels = np.empty(len(items), dtype=object)
    labels[:] = items
    return labels


def _decode_numpy(decoder: Decoder, node: dict, where: str) -> np.generic:
    try:
        dtype = np.dtype(node.get("dtype"))
    except TypeError:
        dtype = None
    if (
        dtype is None
        or dtype.kind not in _NUMERIC_KINDS
        or not isinstance(node.get("value"), PLAIN)
    ):
        raise decoder.error(where, f"is not a numpy number: {_short(node)}")
    return dtype.type(node["value"])


def _decode_dict(decoder: Decoder, node: dict, where: str) -> dict:
    if isinstance(node.get("items"), dict):
        return {
            key: decoder.decode(item, f"{where}[{key!r}]") for key, item in node["items"].items()
        }
    pairs = node.get("pairs")
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise decoder.error(where, "is not a dictionary")
    decoded = {}
    for key, item in pairs:
        key = decoder.decode(key, f"{where} key")
        try:
            decoded[key] = decoder.decode(item, f"{where}[{key!r}]")
        except TypeError:
            raise decoder.error(where, f"has an unhashable key {key!r}") from None
    return decoded


def _decode_tuple(decoder: Decoder, node: dict, where: str) -> tuple:
    if not isinstance(node.get("items"), list):
        raise decoder.error(where, "is not a tuple")
    return tuple(decoder.decode(node["items"], where))


def _decode_path(decoder: Decoder, node: dict, where: str) -> Path:
    if not isinstance(node.get("value"), str):
        raise decoder.error(where, "is not a path")
    return Path(node["value"])


def _decode_random_state(decoder: Decoder, node: dict, where: str) -> np.random.RandomState:
    state = np.random.RandomState()
    try:
        name, keys, position, has_gauss, cached = node["state"]
        state.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    except (KeyError, TypeError, ValueError) as error:
        raise decoder.error(where, f"is not a RandomState's state ({error})") from None
    return state


def _decode_memory(decoder: Decoder, node: dict, where: str) -> joblib.Memory:
    location = node.get("location")
    if not isinstance(location, str | None):
        raise decoder.error(where, "is not a joblib.Memory")
    return joblib.Memory(location, verbose=0)


def _decode_skops(decoder: Decoder, node: dict, where: str) -> Any:
    return classifiers.loads(decoder.archive.read(decoder.part(node, where)), decoder, where)


def _decode_torchvision_weights(decoder: Decoder, node: dict, where: str) -> Any:
    from torchvision.models import get_weight  # looks the name up among weight enums only

    try:
        return get_weight(str(node.get("name")))
    except (ValueError, KeyError, AttributeError) as error:
        raise decoder.error(where, f"names unknown torchvision weights ({error})") from None


_DECODERS = {
    "estimator": _decode_estimator,
    "record": _decode_record,
    "object": _decode_object,
    "skops": _decode_skops,
    "array": lambda decoder, node, where: decoder.array(node, where),
    "labels": _decode_labels,
    "numpy": _decode_numpy,
    "tuple": _decode_tuple,
    "dict": _decode_dict,
    "path": _decode_path,
    "random_state": _decode_random_state,
    "joblib.Memory": _decode_memory,
    "torchvision_weights": _decode_torchvision_weights,
}
"""Every node type a file may hold, and how each is read."""


def _special(value: Any, where: str) -> dict:
    """Values outside the allow-list that still have a safe form: torchvision weight enums."""
    if type(value).__module__.startswith("torchvision.models"):
        from torchvision.models import WeightsEnum

        if isinstance(value, WeightsEnum):
            return {"type": "torchvision_weights", "name": f"{type(value).__name__}.{value.name}"}
    raise TypeError(
        f"cannot store {where}: a {type(value).__module__}.{type(value).__qualname__} is not "
        "among the values a fusionrec file holds (numbers, strings, arrays, fusionrec "
        "estimators, scikit-learn estimators, torch networks inside a CNNEmbedder)"
    )


def _numpy_scalar(value: np.generic, where: str) -> dict | str:
    """A numpy number keeps its type; a numpy string becomes a string."""
    if value.dtype.kind == "U":
        return str(value)
    if value.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"cannot store {where}: a numpy {value.dtype} scalar")
    return {"type": "numpy", "dtype": value.dtype.str, "value": value.item()}


def _plain_item(item: Any, where: str) -> Any:
    if isinstance(item, np.generic):
        item = item.item()
    if not isinstance(item, PLAIN):
        raise TypeError(
            f"cannot store {where}: it holds a {type(item).__name__}; labels and ids must be "
            "strings or numbers"
        )
    return item


def _random_state(state: np.random.RandomState) -> dict:
    name, keys, position, has_gauss, cached = state.get_state()
    return {"type": "random_state", "state": [name, keys.tolist(), position, has_gauss, cached]}


def _location(memory: joblib.Memory) -> str | None:
    return None if memory.location is None else str(memory.location)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def _short(node: Any) -> str:
    text = repr(node)
    return text if len(text) < 80 else text[:77] + "..."
