"""A ``MutableMapping`` over a PyFlink ``MapState``, so pure models can keep state in Flink.

Keys are stored as strings (``encode``/``decode``): a byte-array key would become a Java
``byte[]``, which the heap state backend compares by identity, so lookups would miss.
Values are state records (:mod:`state.records`): bytes in Flink, model values here
(``codec``). Values are never ``None`` in our stores, so ``None`` means absent.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Callable, Iterator

from cachetools import LRUCache
from pyflink.common import Types
from pyflink.datastream.state import MapState, MapStateDescriptor

from state.records import StateCodec

#: Flink type of every state value. The value is the ``bytes`` of a state record; Flink stores
#: it as a Java ``byte[]`` (the Python side wraps the bytes object in pickle's framing for
#: bytes, no class involved). Kept from the release that pickled model objects into the same
#: type, so its savepoints restore (their values are read once by state.records, then
#: rewritten as records). PRIMITIVE_ARRAY(BYTE) is no alternative: thread mode's state
#: converter turns it into a tuple of ints.
STATE_VALUE = Types.PICKLED_BYTE_ARRAY()


def string_keyed_map_state(name: str) -> MapStateDescriptor:
    """String keys, state-record bytes as values."""
    return MapStateDescriptor(name, Types.STRING(), STATE_VALUE)


class MapStateMapping(MutableMapping):
    """``key -> value`` over a MapState of ``encode(key) -> codec.encode(value)``."""

    def __init__(
        self,
        state: MapState,
        codec: StateCodec[Any],
        encode: Callable[[Any], str] = str,
        decode: Callable[[str], Any] = str,
    ) -> None:
        self._state = state
        self._codec = codec
        self._enc = encode
        self._dec = decode

    def __getitem__(self, key: Any) -> Any:
        raw = self._state.get(self._enc(key))
        if raw is None:
            raise KeyError(key)
        return self._codec.decode(raw)

    def get(self, key: Any, default: Any = None) -> Any:
        raw = self._state.get(self._enc(key))
        return default if raw is None else self._codec.decode(raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state.put(self._enc(key), self._codec.encode(value))

    def __delitem__(self, key: Any) -> None:
        k = self._enc(key)
        if not self._state.contains(k):
            raise KeyError(key)
        self._state.remove(k)

    def pop(self, key: Any, *default: Any) -> Any:
        k = self._enc(key)
        raw = self._state.get(k)
        if raw is None:
            if default:
                return default[0]
            raise KeyError(key)
        self._state.remove(k)
        return self._codec.decode(raw)

    def __contains__(self, key: object) -> bool:
        return self._state.contains(self._enc(key))

    def __iter__(self) -> Iterator[Any]:
        return iter([self._dec(k) for k in self._state.keys()])

    def __len__(self) -> int:
        return sum(1 for _ in self._state.keys())


_ABSENT = object()
_NOT_CACHED = object()


class CachedMapping(MutableMapping):
    """A bounded write-through cache (LRU) in front of a mapping, for a single-key operator.

    Valid only when this object is the mapping's sole reader and writer for the operator's
    lifetime, as for the identity router (one constant key, one subtask): every write goes
    to the state and the cache, so the cache never disagrees with the state; after a
    restore Flink builds a new operator instance and so an empty cache. Absent keys are
    cached too (new identifiers are looked up before they are added), so a second look-up
    of a key that is not there does not read the state either. Iteration and length go to
    the state. The cache is a :class:`cachetools.LRUCache` of ``max_entries`` (at least 1).

    >>> m = CachedMapping({}, max_entries=2)
    >>> m["a"] = 1; m["b"] = 2; m["c"] = 3
    >>> (m["a"], len(m._cache), "z" in m)
    (1, 2, False)
    >>> backing = {"k": 1}
    >>> m = CachedMapping(backing)
    >>> (m["k"], m.pop("k"), "k" in m, "k" in backing, m.get("k", "gone"))
    (1, 1, False, False, 'gone')
    """

    def __init__(self, backing: MutableMapping, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._backing = backing
        #: key -> value, or _ABSENT for a key known not to be in the backing mapping
        self._cache: LRUCache = LRUCache(maxsize=max_entries)

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._cache.get(key, _NOT_CACHED)  # a hit counts as a use (LRU order)
        if value is _NOT_CACHED:
            value = self._backing.get(key, _ABSENT)
            self._cache[key] = value
        return default if value is _ABSENT else value

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self.get(key, _ABSENT) is not _ABSENT

    def __setitem__(self, key: Any, value: Any) -> None:
        self._backing[key] = value
        self._cache[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._backing[key]
        self._cache[key] = _ABSENT

    def pop(self, key: Any, *default: Any) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            if default:
                return default[0]
            raise KeyError(key)
        del self[key]
        return value

    def __iter__(self) -> Iterator[Any]:
        return iter(self._backing)

    def __len__(self) -> int:
        return len(self._backing)


class MirroredMapping(MutableMapping):
    """A whole mapping mirrored in memory, written through to ``backing``: for small maps of a
    single-key operator that are read on every record (the identity router's tombstones and
    pending erasure requests). The first access reads the backing mapping once; after that
    reads touch no state, and emptiness costs nothing. Same validity rule as
    :class:`CachedMapping` (sole reader and writer; a restore builds a new instance).

    >>> backing = {"a": 1}
    >>> m = MirroredMapping(backing)
    >>> (bool(m), m.get("a"), "b" in m)
    (True, 1, False)
    >>> m["b"] = 2; del m["a"]
    >>> (backing, len(m))
    ({'b': 2}, 1)
    """

    def __init__(self, backing: MutableMapping) -> None:
        self._backing = backing
        self._mirror: dict[Any, Any] | None = None

    def _all(self) -> dict[Any, Any]:
        if self._mirror is None:
            self._mirror = {k: self._backing[k] for k in list(self._backing)}
        return self._mirror

    def __getitem__(self, key: Any) -> Any:
        return self._all()[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self._all().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._all()

    def __setitem__(self, key: Any, value: Any) -> None:
        self._all()[key] = value
        self._backing[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._all()[key]
        del self._backing[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._all()))

    def __len__(self) -> int:
        return len(self._all())
