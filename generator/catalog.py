"""What the synthetic shop sells and the vocabulary its customers are drawn from.

Products are drawn once per run (:func:`make_products`, from the run's random source); the
other vocabularies are fixed tuples the draws choose from.

Examples
--------
>>> import random
>>> products = make_products(random.Random(1))
>>> len(products), len({p.product_id for p in products}), len(CATEGORIES) * PRODUCTS_PER_CATEGORY
(240, 240, 240)
>>> sorted({p.category for p in products}) == sorted(c for c, *_ in CATEGORIES)
True
>>> min(p.price for p in products) >= 0.99
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

CURRENCY = "USD"

#: ``(category, lowest price, highest price, product names)``.
CATEGORIES: tuple[tuple[str, float, float, tuple[str, ...]], ...] = (
    ("shoes", 35.0, 180.0, ("running shoes", "sneakers", "boots", "sandals")),
    ("apparel", 12.0, 140.0, ("rain jacket", "jeans", "t-shirt", "hoodie")),
    ("electronics", 25.0, 900.0, ("headphones", "smart watch", "charger", "speaker")),
    ("home", 9.0, 260.0, ("coffee maker", "lamp", "bed sheets", "blender")),
    ("beauty", 6.0, 85.0, ("face cream", "shampoo", "perfume", "lipstick")),
    ("sports", 15.0, 320.0, ("yoga mat", "tennis racket", "dumbbells", "bike helmet")),
    ("toys", 8.0, 95.0, ("lego set", "puzzle", "board game", "plush bear")),
    ("books", 7.0, 45.0, ("cookbook", "thriller", "travel guide", "sci-fi novel")),
)
PRODUCTS_PER_CATEGORY = 30
FIRST_NAMES: tuple[str, ...] = (
    "ann",
    "ben",
    "carla",
    "dev",
    "elena",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jamal",
    "kim",
    "luca",
    "maya",
    "nils",
    "olga",
    "pedro",
    "quinn",
    "rosa",
    "sam",
    "tara",
    "uma",
    "victor",
    "wen",
    "yusuf",
    "zoe",
)
LAST_NAMES: tuple[str, ...] = (
    "smith",
    "garcia",
    "chen",
    "okafor",
    "muller",
    "rossi",
    "tanaka",
    "silva",
    "novak",
    "kowalski",
    "dubois",
    "haddad",
    "larsen",
    "patel",
    "nguyen",
    "obrien",
    "schmidt",
    "costa",
    "ivanova",
    "moreau",
)
EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "inbox.example",
    "post.example.co",
)
AREA_CODES: tuple[str, ...] = ("415", "212", "312", "617", "206", "303", "512", "646", "702", "808")
USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/129.0",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Mobile/15E148",
)
LOCALES: tuple[str, ...] = ("en-US", "en-GB", "es-US", "fr-CA", "de-DE")
CITIES: tuple[str, ...] = ("San Francisco", "New York", "Chicago", "Boston", "Seattle", "Denver", "Austin")
STORES: tuple[str, ...] = tuple(f"store-{k:03d}" for k in range(1, 21))
CAMPAIGNS: tuple[str, ...] = tuple(f"cmp-{k:03d}" for k in range(1, 13))
#: Referrers of a first page view (``None``: typed in or a bookmark).
REFERRERS: tuple[str | None, ...] = (None, None, "https://www.google.example/", "https://social.example/feed")


@dataclass(frozen=True)
class Product:
    """A product of the catalog.

    Attributes
    ----------
    product_id, category, name : str
        ``sku-<category prefix>-<number>``, one of :data:`CATEGORIES`, and a name of that category.
    price : float
        List price in :data:`CURRENCY`, at least 0.99.
    """

    product_id: str
    category: str
    name: str
    price: float


def money(x: float) -> float:
    """An amount rounded to cents.

    >>> money(3 * 0.1), money(19.999)
    (0.3, 20.0)
    """
    return round(x, 2)


def make_products(rng: random.Random) -> list[Product]:
    """:data:`PRODUCTS_PER_CATEGORY` products per category, with prices drawn from ``rng``.

    Parameters
    ----------
    rng : random.Random
        The run's random source (three draws per product).

    Returns
    -------
    list of Product
        In category order, then by number.
    """
    out: list[Product] = []
    for cat, lo, hi, names in CATEGORIES:
        for k in range(PRODUCTS_PER_CATEGORY):
            price = money(rng.uniform(lo, hi))
            price = money(math.floor(price) + rng.choice((0.99, 0.49, 0.0, 0.95)))
            out.append(Product(f"sku-{cat[:3]}-{k:03d}", cat, rng.choice(names), max(price, 0.99)))
    return out
