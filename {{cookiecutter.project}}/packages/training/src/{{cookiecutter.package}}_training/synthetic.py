"""Seeded synthetic e-commerce events: latent tastes, power-law popularity, sessions, drift."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from {{ cookiecutter.package }}_core.contract import EVENT_TYPES

# Category names with a plausible median price; more categories get generic names.
CATEGORIES = (
    ("fashion", 35.0), ("shoes", 60.0), ("home", 40.0), ("kitchen", 25.0), ("beauty", 15.0),
    ("toys", 20.0), ("books", 12.0), ("electronics", 90.0), ("sports", 45.0), ("garden", 30.0),
    ("grocery", 6.0), ("phones", 250.0), ("computers", 400.0), ("baby", 25.0), ("pets", 15.0),
    ("health", 12.0), ("music", 15.0), ("gaming", 50.0), ("outdoor", 55.0), ("office", 10.0),
    ("jewellery", 80.0), ("drinks", 10.0), ("automotive", 35.0), ("watches", 150.0),
)  # fmt: skip

# Category level: fixed for every seed, so that two seeds are two samples of one market
# (the same category mix and price levels) and a drift detector compares like with like.
CATEGORY_ZIPF = 0.8  # category shares fall off as rank^-0.8
PRICE_RANGE = (5.0, 100.0)  # median prices of generic categories beyond the named ones
PRICE_SIGMA = 0.45  # lognormal spread of prices within a category
# Item level: drawn from the seed.
ITEM_ZIPF = 0.9  # popularity within a category falls off as rank^-0.9
CLUSTER_SIZE = 25  # items per latent cluster (a style, a brand) within a category
# User level: a few categories dominate a user's sessions (a sparse Dirichlet taste), and in
# each category a user keeps returning to one cluster. That persistent, shared structure is
# what a collaborative model can learn and global popularity cannot.
TASTE_CONCENTRATION = 1.5  # sum of the Dirichlet parameters; smaller = more focused users
FOCUS_SHARE = 0.65  # share of sessions spent in the user's own cluster of the category
ACTIVITY_SIGMA = 1.0  # lognormal activity: a few heavy users, a long tail of light ones
# Sessions: geometric number of views, a share of them carted, a share of carts bought.
VIEW_STOP = 0.28  # 1 / mean views per session
MAX_VIEWS = 40
CART_RATE = 0.12
PURCHASE_RATE = 0.45
VIEW_GAP_SECONDS = (5, 45)  # minimum and mean extra gap between two views of a session
WEEKDAY_WEIGHTS = (1.0, 0.95, 0.95, 1.0, 1.05, 1.25, 1.3)  # Monday .. Sunday
HOUR_WEIGHTS = (
    0.3, 0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.8, 0.9, 1.0, 1.05,
    1.15, 1.05, 1.0, 1.0, 1.05, 1.1, 1.3, 1.5, 1.6, 1.45, 1.0, 0.6,
)  # fmt: skip


@dataclass(frozen=True)
class _World:
    """Users and items of one seed (after drift)."""

    item_category: np.ndarray
    item_cluster: np.ndarray
    item_weight: np.ndarray
    price: np.ndarray
    taste: np.ndarray
    activity: np.ndarray
    favourite_cluster: np.ndarray
    cart_rate: float
    purchase_rate: float


class _GroupSampler:
    """Draw items of given groups (categories, clusters) in proportion to their popularity."""

    def __init__(self, groups: np.ndarray, weights: np.ndarray) -> None:
        self.order = np.argsort(groups, kind="stable")
        sorted_groups = groups[self.order]
        sorted_weights = weights[self.order]
        totals = np.bincount(sorted_groups, weights=sorted_weights)
        cumulative = np.cumsum(sorted_weights)
        first = np.searchsorted(sorted_groups, sorted_groups, side="left")
        before = cumulative[first] - sorted_weights[first]
        within = (cumulative - before) / totals[sorted_groups]
        within[np.r_[sorted_groups[1:] != sorted_groups[:-1], True]] = 1.0
        # group + cumulative share is sorted, so one searchsorted samples any mix of groups.
        self.keys = sorted_groups + within

    def sample(self, groups: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        position = np.searchsorted(self.keys, groups + uniform, side="right")
        return self.order[np.minimum(position, len(self.order) - 1)]


def _category_structure(n_categories: int, n_items: int) -> tuple[np.ndarray, ...]:
    """Shares, item counts and median prices per category: the same for every seed."""
    share = np.arange(1, n_categories + 1, dtype=float) ** -CATEGORY_ZIPF
    share /= share.sum()
    # Bigger categories carry more items, less than in proportion to their traffic.
    target = np.sqrt(share) / np.sqrt(share).sum() * (n_items - n_categories)
    sizes = 1 + np.floor(target).astype(np.int64)
    remainder = n_items - sizes.sum()
    sizes[np.argsort(np.floor(target) - target, kind="stable")[:remainder]] += 1
    # Generic categories cycle through a fixed ladder of price levels.
    ladder = np.geomspace(PRICE_RANGE[0], PRICE_RANGE[1], 7)
    median_price = np.array(
        [CATEGORIES[c][1] if c < len(CATEGORIES) else ladder[c % 7] for c in range(n_categories)]
    )
    return share, sizes, median_price


def category_names(n_categories: int) -> list[str]:
    """The names of the first n_categories categories."""
    return [
        CATEGORIES[c][0] if c < len(CATEGORIES) else f"category-{c + 1}"
        for c in range(n_categories)
    ]


def _world(n_users: int, n_items: int, n_categories: int, seed: int, drift: float) -> _World:
    share, sizes, median_price = _category_structure(n_categories, n_items)
    rng = np.random.default_rng([seed, 0])
    item_category = np.repeat(np.arange(n_categories), sizes)[rng.permutation(n_items)]
    # Popularity rank of each item within its category, in a random order.
    by_category = np.lexsort((rng.random(n_items), item_category))
    category_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(n_items, dtype=np.int64)
    rank[by_category] = np.arange(n_items) - category_start[item_category[by_category]]
    weight = (rank + 1.0) ** -ITEM_ZIPF
    # Clusters deal out items round-robin by rank, so each has a popular head and a tail.
    n_clusters = np.maximum(1, np.round(sizes / CLUSTER_SIZE).astype(np.int64))
    cluster_start = np.concatenate([[0], np.cumsum(n_clusters)[:-1]])
    item_cluster = cluster_start[item_category] + rank % n_clusters[item_category]
    price = median_price[item_category] * np.exp(rng.normal(0.0, PRICE_SIGMA, n_items))

    taste = rng.dirichlet(TASTE_CONCENTRATION * share, size=n_users)
    taste = np.nan_to_num(taste)
    taste[taste.sum(axis=1) <= 0] = share  # a degenerate draw falls back to the market mix
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, n_users)
    pick = np.floor(rng.random((n_users, n_categories)) * n_clusters).astype(np.int64)
    favourite = cluster_start + pick

    # Drift uses its own stream, so drift=0 reproduces the undrifted world exactly.
    drift_rng = np.random.default_rng([seed, 1])
    if drift > 0:
        # Tastes move towards other categories (each user's mass shifts by a third of them).
        shifted = np.roll(taste, max(1, n_categories // 3), axis=1)
        taste = (1.0 - drift) * taste + drift * shifted
        # A share of the items trade popularity ranks among themselves.
        moved = np.flatnonzero(drift_rng.random(n_items) < drift)
        weight = weight.copy()
        weight[moved] = weight[drift_rng.permutation(moved)]
        # Prices move per category (mostly up).
        price = price * np.exp(drift * drift_rng.normal(0.15, 0.2, n_categories))[item_category]
    return _World(
        item_category=item_category,
        item_cluster=item_cluster,
        item_weight=weight,
        price=np.maximum(np.round(price, 2), 0.5),
        taste=taste,
        activity=activity,
        favourite_cluster=favourite,
        # More carts, fewer purchases: a promotion week with abandoned carts.
        cart_rate=CART_RATE * (1.0 + 0.75 * drift),
        purchase_rate=PURCHASE_RATE * (1.0 - 0.5 * drift),
    )


def _sessions(
    world: _World,
    rng: np.random.Generator,
    n_sessions: int,
    samplers: tuple[_GroupSampler, _GroupSampler],
    start: int,
    days: int,
    day_weights: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Events of n_sessions sessions as (session, user, item, type, epoch second) arrays."""
    by_category, by_cluster = samplers
    user = rng.choice(len(world.activity), n_sessions, p=world.activity / world.activity.sum())
    cumulative = np.cumsum(world.taste[user], axis=1)
    pick = rng.random(n_sessions) * cumulative[:, -1]
    category = np.minimum((cumulative < pick[:, None]).sum(axis=1), world.taste.shape[1] - 1)
    focused = rng.random(n_sessions) < FOCUS_SHARE
    cluster = world.favourite_cluster[user, category]
    n_views = np.minimum(rng.geometric(VIEW_STOP, n_sessions), MAX_VIEWS)
    day = rng.choice(days, n_sessions, p=day_weights)
    hour = rng.choice(24, n_sessions, p=np.array(HOUR_WEIGHTS) / sum(HOUR_WEIGHTS))
    begin = start + day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n_sessions)

    session = np.repeat(np.arange(n_sessions), n_views)
    uniform = rng.random(len(session))
    in_cluster = focused[session]
    item = np.empty(len(session), dtype=np.int64)
    item[in_cluster] = by_cluster.sample(cluster[session[in_cluster]], uniform[in_cluster])
    item[~in_cluster] = by_category.sample(category[session[~in_cluster]], uniform[~in_cluster])
    gap = VIEW_GAP_SECONDS[0] + rng.exponential(VIEW_GAP_SECONDS[1], len(session))
    elapsed = np.cumsum(gap.astype(np.int64))
    first = np.cumsum(n_views) - n_views
    view_time = begin[session] + elapsed - elapsed[first][session]

    carted = np.flatnonzero(rng.random(len(session)) < world.cart_rate)
    cart_time = view_time[carted] + 2 + rng.exponential(20, len(carted)).astype(np.int64)
    bought = carted[rng.random(len(carted)) < world.purchase_rate]
    # All purchases of a session happen at checkout, once per item.
    key = session[bought] * len(world.item_category) + item[bought]
    bought = bought[np.unique(key, return_index=True)[1]]
    checkout = (
        view_time[first + n_views - 1] + 30 + rng.exponential(60, n_sessions).astype(np.int64)
    )

    sessions = np.concatenate([session, session[carted], session[bought]])
    items = np.concatenate([item, item[carted], item[bought]])
    kinds = np.repeat(np.arange(3, dtype=np.int8), [len(session), len(carted), len(bought)])
    times = np.concatenate([view_time, cart_time, checkout[session[bought]]])
    # A session that would run past the end of the window is moved back into it.
    latest = np.full(n_sessions, np.iinfo(np.int64).min)
    np.maximum.at(latest, sessions, times)
    times -= np.maximum(latest - (start + days * 86_400 - 1), 0)[sessions]
    order = np.lexsort((kinds, times, sessions))
    return sessions[order], user[sessions[order]], items[order], kinds[order], times[order]


def _names(prefix: str, n: int) -> np.ndarray:
    width = max(4, len(str(n)))
    return np.array([f"{prefix}{index:0{width}d}" for index in range(1, n + 1)], dtype=object)


def generate(
    n_users: int,
    n_items: int,
    n_events: int,
    n_categories: int,
    start: str | dt.date | pd.Timestamp,
    days: int,
    seed: int,
    drift: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate exactly n_events events (user_id, item_id, event_type, timestamp) and the items.

    The same arguments give the same data. The seed draws the users and items; the events of a
    window also depend on its start, so a later window of the same seed is a fresh sample of the
    same shop. `drift` in [0, 1] shifts tastes, popularity, prices and the event-type mix.
    """
    if min(n_users, n_items, n_events, n_categories, days) < 1:
        raise ValueError("n_users, n_items, n_events, n_categories and days must be positive")
    if n_items < n_categories:
        raise ValueError(f"n_items ({n_items}) must be at least n_categories ({n_categories})")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    begin = pd.Timestamp(start)
    if begin.tzinfo is not None:
        begin = begin.tz_convert("UTC").tz_localize(None)
    start_second = int(begin.value // 1_000_000_000)

    world = _world(n_users, n_items, n_categories, seed, float(drift))
    samplers = (
        _GroupSampler(world.item_category, world.item_weight),
        _GroupSampler(world.item_cluster, world.item_weight),
    )
    weekday = np.array(WEEKDAY_WEIGHTS)[(begin.dayofweek + np.arange(days)) % 7]
    day_weights = weekday / weekday.sum()
    rng = np.random.default_rng([seed, 2, begin.toordinal(), days])
    per_session = (1 / VIEW_STOP) * (1 + world.cart_rate * (1 + world.purchase_rate))

    # Sessions are drawn in bulk; the last batch usually overshoots and is cut to n_events.
    parts: list[tuple[np.ndarray, ...]] = []
    total, offset = 0, 0
    while total < n_events:
        n_sessions = int((n_events - total) / per_session * 1.05) + 16
        part = _sessions(world, rng, n_sessions, samplers, start_second, days, day_weights)
        parts.append((part[0] + offset, *part[1:]))
        total += len(part[0])
        offset += n_sessions
    columns = (np.concatenate(column)[:n_events] for column in zip(*parts, strict=True))
    _, user, item, kind, second = columns
    order = np.lexsort((user, second))

    item_names = _names("i", n_items)
    categories = np.array(category_names(n_categories), dtype=object)
    events = pd.DataFrame(
        {
            "user_id": _names("u", n_users)[user[order]],
            "item_id": item_names[item[order]],
            "event_type": np.array(EVENT_TYPES, dtype=object)[kind[order]],
            "timestamp": second[order].astype("datetime64[s]").astype("datetime64[ns]"),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": item_names,
            "category": categories[world.item_category],
            "price": world.price.astype(np.float64),
        }
    )
    return events, items


def write_dataset(events: pd.DataFrame, items: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """Write events.parquet and items.parquet into out_dir (what `make data` puts in data/raw)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path, items_path = out_dir / "events.parquet", out_dir / "items.parquet"
    events.to_parquet(events_path, index=False)
    items.to_parquet(items_path, index=False)
    return events_path, items_path
