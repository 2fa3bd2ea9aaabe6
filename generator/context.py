"""One generation run: its arguments, its only random source, and what it has built so far.

Every draw of a run comes from :attr:`Generation.rng` (``random.Random(seed)``), in the
order the modules of the generator make them: the same arguments give the same bytes. The
modules (:mod:`generator.persons`, :mod:`generator.sessions`, :mod:`generator.faults`, ...)
are functions of a :class:`Generation`.

Examples
--------
>>> g = Generation(seed=5, persons=1, base_time_ms=0, days=1, bad_ratio=0.0, dup_ratio=0.0, late_ratio=0.0,
...                reorder_ratio=0.0)
>>> g.next("cart"), g.next("cart"), g.next("order")
(1, 2, 1)
>>> g.unique(lambda: "x"), g.unique(lambda: "y")
('x', 'y')
>>> 1_000 + 3_000 <= g.step(1_000) <= 1_000 + 90_000
True
"""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING, Callable

from generator.catalog import Product, make_products
from generator.timing import MIN_STEP_MS, MIN_VALID_TIMESTAMP_MS, SECOND_MS
from generator.truth import CartTruth, SupernodeTruth
from models.avro_codec import Codec, SchemaCatalog

if TYPE_CHECKING:
    from generator.persons import Person
    from generator.supernodes import Supernodes


class Generation:
    """The state of one run of :func:`generator.dataset.generate` (arguments already checked).

    Attributes
    ----------
    seed, n_persons, base, days, bad_ratio, dup_ratio, late_ratio, reorder_ratio, min_valid
        The arguments (``base`` = ``base_time_ms``, ``min_valid`` = ``min_valid_timestamp_ms``).
    rng : random.Random
        The only random source.
    catalog : SchemaCatalog
        The project's Avro schemas; ``codec`` encodes ``Event`` records.
    products, cheap : list of Product
        The catalog's products (drawn first), and the cheapest third of them.
    persons : list of Person
        The planted persons, in index order.
    carts : list of CartTruth
        Every online cart, in the order they were played.
    supernodes : Supernodes or None
        What to plant as supernodes (:mod:`generator.supernodes`); ``None``: nothing.
    supernode_truth : list of SupernodeTruth
        The planted supernodes (:func:`generator.supernodes.plant`).
    supernode_visits : dict of int to list of (str, str)
        Person index -> the ``(kind, identifier value)`` of each supernode visit in their journey.
    """

    def __init__(
        self,
        seed: int,
        persons: int,
        base_time_ms: int,
        days: int,
        bad_ratio: float,
        dup_ratio: float,
        late_ratio: float,
        reorder_ratio: float,
        min_valid_timestamp_ms: int = MIN_VALID_TIMESTAMP_MS,
        supernodes: Supernodes | None = None,
    ) -> None:
        self.seed = seed
        self.min_valid = min_valid_timestamp_ms
        self.n_persons = persons
        self.base = base_time_ms
        self.days = days
        self.bad_ratio = bad_ratio
        self.dup_ratio = dup_ratio
        self.late_ratio = late_ratio
        self.reorder_ratio = reorder_ratio
        self.rng = random.Random(seed)
        self.catalog = SchemaCatalog.load()
        self.codec: Codec = self.catalog.codec("Event")
        self.products = make_products(self.rng)
        self.cheap = sorted(self.products, key=lambda p: p.price)[: len(self.products) // 3]
        self.persons: list[Person] = []
        self.carts: list[CartTruth] = []
        self.supernodes = supernodes
        self.supernode_truth: list[SupernodeTruth] = []
        self.supernode_visits: dict[int, list[tuple[str, str]]] = {}
        self._used_ids: set[str] = set()  # membership only; never iterated (determinism)
        self._counters: dict[str, int] = {}

    def next(self, name: str) -> int:
        """The next number (from 1) of the sequence ``name`` (carts, orders, messages, ...)."""
        n = self._counters.get(name, 0) + 1
        self._counters[name] = n
        return n

    def uuid(self) -> str:
        """A random (version 4) UUID drawn from :attr:`rng`."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def unique(self, make: Callable[[], str]) -> str:
        """``make()`` until it gives an identifier not used before in this run."""
        for _ in range(1000):
            v = make()
            if v not in self._used_ids:
                self._used_ids.add(v)
                return v
        raise RuntimeError("could not draw a unique identifier")  # pragma: no cover

    def step(self, t: int, lo: int = MIN_STEP_MS, hi: int = 90 * SECOND_MS) -> int:
        """The time of a session's next event after ``t`` (``lo`` to ``hi`` later)."""
        return t + self.rng.randint(lo, hi)

    def product(self, bargain: bool = False) -> Product:
        """A random product (a cheap one for bargain hunting)."""
        return self.rng.choice(self.cheap if bargain else self.products)
