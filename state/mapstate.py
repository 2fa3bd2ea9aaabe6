"""A ``MutableMapping`` over a PyFlink ``MapState``, so pure models can keep state in Flink.

Keys are stored as strings (``encode``/``decode``): a pickled key would become a Java
``byte[]``, which the heap state backend compares by identity, so lookups would miss.
Values are pickled. Values are never ``None`` in our stores, so ``None`` means absent.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Callable, Iterator

from pyflink.common import Types
from pyflink.datastream.state import MapState, MapStateDescriptor


def string_keyed_map_state(name: str) -> MapStateDescriptor:
    """String keys, pickled values (tuples, frozensets and dicts of the models)."""
    return MapStateDescriptor(name, Types.STRING(), Types.PICKLED_BYTE_ARRAY())


class MapStateMapping(MutableMapping):
    def __init__(self, state: MapState, encode: Callable[[Any], str] = str,
                 decode: Callable[[str], Any] = str) -> None:
        self._state = state
        self._enc = encode
        self._dec = decode

    def __getitem__(self, key: Any) -> Any:
        value = self._state.get(self._enc(key))
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._state.get(self._enc(key))
        return default if value is None else value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state.put(self._enc(key), value)

    def __delitem__(self, key: Any) -> None:
        k = self._enc(key)
        if not self._state.contains(k):
            raise KeyError(key)
        self._state.remove(k)

    def pop(self, key: Any, *default: Any) -> Any:
        k = self._enc(key)
        value = self._state.get(k)
        if value is None:
            if default:
                return default[0]
            raise KeyError(key)
        self._state.remove(k)
        return value

    def __contains__(self, key: object) -> bool:
        return self._state.contains(self._enc(key))

    def __iter__(self) -> Iterator[Any]:
        return iter([self._dec(k) for k in self._state.keys()])

    def __len__(self) -> int:
        return sum(1 for _ in self._state.keys())


_ABSENT = object()


class CachedMapping(MutableMapping):
    """A bounded write-through cache (LRU) in front of a mapping, for a single-key operator.

    Valid only when this object is the mapping's sole reader and writer for the operator's
    lifetime, as for the identity router (one constant key, one subtask): every write goes
    to the state and the cache, so the cache never disagrees with the state; after a
    restore Flink builds a new operator instance and so an empty cache. Absent keys are
    cached too (new identifiers are looked up before they are added). Iteration and length
    go to the state.

    >>> m = CachedMapping({}, max_entries=2)
    >>> m["a"] = 1; m["b"] = 2; m["c"] = 3
    >>> (m["a"], len(m._cache), "z" in m)
    (1, 2, False)
    """

    def __init__(self, backing: MutableMapping, max_entries: int = 100_000) -> None:
        from collections import OrderedDict

        self._backing = backing
        self._cache: OrderedDict = OrderedDict()
        self._max = max_entries

    def _remember(self, key: Any, value: Any) -> None:
        cache = self._cache
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > self._max:
            cache.popitem(last=False)

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._cache.get(key, _ABSENT)
        if value is _ABSENT:
            value = self._backing.get(key, _ABSENT)
            self._remember(key, value)
        else:
            self._cache.move_to_end(key)
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
        self._remember(key, value)

    def __delitem__(self, key: Any) -> None:
        del self._backing[key]
        self._remember(key, _ABSENT)

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
