"""Users' ideology from the news domains they share (paper Appendix A.1, after Rao et al. 2021).

A user's leaning is the mean political bias of the domains of the links they share, over the
shares whose domain is in a domain -> bias table (bias in [-1, 1]; negative = left/liberal,
positive = right/conservative). A domain shared k times counts k times. Users with fewer than
``min_domains`` matched shares are left out (``too_few_domains``); the others are labelled by one
of two cut-off rules:

* ``tails`` (the default, after Rao et al. 2021, who keep the two tails of the user-score
  distribution): the users in the bottom ``tails[0]`` share of the distribution of the eligible
  users' means are ``liberal``, those in the top ``tails[1]`` share ``conservative`` (default
  30% and 30%), the middle is ``neutral``. The cut-offs are order statistics: with ``n`` eligible
  users, ``k = floor(share * n)``; the liberal cut-off is the k-th smallest mean and every user at
  or below it is liberal, so users with the same mean always get the same label (ties at a
  cut-off can take the labelled share above ``share``). With ``k = 0`` (fewer than
  ``1 / share`` eligible users) that tail labels nobody. Should the two cut-offs meet (a tie that
  spans both), the users on the shared value are neutral. The cut-offs are relative: in a corpus
  where nearly everyone leans right, the "liberal" tail is the least right-leaning 30%; the
  values used are recorded (``counts["cutoff"]``, run.json's ``ideology``) so this can be seen.
* ``threshold``: a fixed cut-off on the mean: at or below ``-threshold`` ``liberal``, at or
  above ``+threshold`` ``conservative``, the zone between ``neutral``.

Pure pyarrow, no Ray: :func:`user_bias_sums` is a per-batch partial aggregate (exact integer
sums, so partials from any number of batches combine, in any order, to the same result with
:func:`combine_sums`), and :func:`label_users` turns the combined sums into groups.
:func:`user_ideology` does both for one table.

Input rows have a user column and either a list of domains or URLs per row (``list<string>``)
or one per row (``string``); a URL is reduced to its host: scheme, user info, port, path, query,
fragment and a leading ``www.`` are stripped, and it is lowercased. A host that is not in the
table is looked up again without its leftmost labels (``edition.cnn.com`` -> ``cnn.com``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from affalign.errors import ConfigError

LIBERAL = "liberal"
CONSERVATIVE = "conservative"
NEUTRAL = "neutral"
TOO_FEW = "too_few_domains"
EXAMPLE_TABLE = "example"  # the shipped affalign/data/domain_bias_example.csv
CUTOFFS = ("tails", "threshold")
DEFAULT_TAILS = (0.3, 0.3)  # Rao et al. 2021: bottom and top 30% of the user-score distribution
DEFAULT_THRESHOLD = 0.2

# Fixed point for exact, order-independent sums (as in affalign.reduce): bias * 2**24, in int64.
_SCALE = 1 << 24
_MAX_PARENT_LEVELS = 4


# ---------------------------------------------------------------------------------------------
# Domains


def normalize_domains(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """URLs or domains (strings) to lowercase hosts without ``www.``; null where nothing is left."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    s = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    s = pc.replace_substring_regex(s, r"^[a-z][a-z0-9+.\-]*://", "")  # scheme
    s = pc.replace_substring_regex(s, r"^//", "")  # scheme-relative
    s = pc.replace_substring_regex(s, r"[/?#\\].*$", "")  # path, query, fragment
    s = pc.replace_substring_regex(s, r"^[^@]*@", "")  # user info
    s = pc.replace_substring_regex(s, r":\d*$", "")  # port
    s = pc.replace_substring_regex(s, r"^www\d*\.", "")
    s = pc.replace_substring_regex(s, r"\.+$", "")  # fully qualified "cnn.com."
    valid = pc.and_(pc.match_substring(s, "."), pc.invert(pc.match_substring_regex(s, r"\s")))
    return pc.if_else(valid, s, pa.scalar(None, pa.string()))


def domain_of(url: str | None) -> str | None:
    """The normalised host of one URL or domain (see :func:`normalize_domains`)."""
    return normalize_domains(pa.array([url], pa.string()))[0].as_py()


# ---------------------------------------------------------------------------------------------
# The domain -> bias table


@dataclass(frozen=True)
class BiasTable:
    """Domain -> bias in [-1, 1] (negative = left/liberal, positive = right/conservative)."""

    bias: dict[str, float]
    source: str = "<dict>"
    _domains: pa.Array = field(init=False, repr=False, compare=False)
    _fixed: pa.Array = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for domain, b in self.bias.items():
            if not -1.0 <= float(b) <= 1.0:
                raise ConfigError(f"{self.source}: bias of {domain} is {b}, outside [-1, 1]")
        domains = list(self.bias)
        object.__setattr__(self, "_domains", pa.array(domains, pa.string()))
        object.__setattr__(self, "_fixed", pa.array([round(float(self.bias[d]) * _SCALE) for d in domains], pa.int64()))

    def __len__(self) -> int:
        return len(self.bias)

    def lookup_fixed(self, domains: pa.Array) -> pa.Array:
        """Bias of each (normalised) domain in fixed point, null where the table lacks it and its parents."""
        idx = pc.index_in(domains, value_set=self._domains)
        parent = domains
        for _ in range(_MAX_PARENT_LEVELS):
            missing = pc.and_(pc.is_null(idx), pc.match_substring_regex(parent, r"\.[^.]+\."))
            if not pc.any(missing).as_py():
                break
            parent = pc.if_else(missing, pc.replace_substring_regex(parent, r"^[^.]+\.", "", max_replacements=1), pa.scalar(None, pa.string()))
            idx = pc.coalesce(idx, pc.index_in(parent, value_set=self._domains))
        return pc.take(self._fixed, idx)

    def lookup(self, domains: Iterable[str | None]) -> list[float | None]:
        """Bias of each URL or domain (normalised here), None where unknown."""
        fixed = self.lookup_fixed(normalize_domains(pa.array(list(domains), pa.string())))
        return [None if v is None else v / _SCALE for v in fixed.to_pylist()]


def load_bias_table(source: str | Path = EXAMPLE_TABLE) -> BiasTable:
    """Read a ``domain,bias`` CSV (``#`` comment lines allowed); ``"example"`` is the shipped one.

    Raises :class:`ConfigError` naming the file and line of a bad row, a bias outside [-1, 1]
    or a domain listed twice.
    """
    return parse_bias_table(bias_table_text(source), bias_table_name(source))


def bias_table_name(source: str | Path) -> str:
    return "affalign/data/domain_bias_example.csv" if str(source) == EXAMPLE_TABLE else str(source)


def bias_table_text(source: str | Path = EXAMPLE_TABLE) -> str:
    """The text of a bias table (read on the driver, so workers need no copy of the file)."""
    if str(source) == EXAMPLE_TABLE:
        return resources.files("affalign.data").joinpath("domain_bias_example.csv").read_text(encoding="utf-8")
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the domain bias table: {exc.strerror or exc}") from exc


def parse_bias_table(text: str, name: str = "<text>") -> BiasTable:
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ConfigError(f"{name}: empty domain bias table (expected a header 'domain,bias')")
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in lines))))
    header = [h.strip().lower() for h in rows[0]]
    if "domain" not in header or "bias" not in header:
        raise ConfigError(f"{name}: line {lines[0][0]}: expected a header with columns 'domain' and 'bias', got {rows[0]}")
    di, bi = header.index("domain"), header.index("bias")
    bias: dict[str, float] = {}
    where: dict[str, int] = {}
    for (lineno, _), row in zip(lines[1:], rows[1:], strict=True):
        if len(row) <= max(di, bi):
            raise ConfigError(f"{name}: line {lineno}: expected {len(header)} fields, got {len(row)}")
        domain = domain_of(row[di])
        if domain is None:
            raise ConfigError(f"{name}: line {lineno}: {row[di]!r} is not a domain")
        try:
            b = float(row[bi])
        except ValueError:
            raise ConfigError(f"{name}: line {lineno}: bias {row[bi]!r} is not a number") from None
        if not -1.0 <= b <= 1.0:
            raise ConfigError(f"{name}: line {lineno}: bias {b} of {domain} is outside [-1, 1]")
        if domain in bias:
            raise ConfigError(f"{name}: line {lineno}: {domain} is listed twice (first on line {where[domain]})")
        bias[domain] = b
        where[domain] = lineno
    if not bias:
        raise ConfigError(f"{name}: the domain bias table has no rows")
    return BiasTable(bias, name)


# ---------------------------------------------------------------------------------------------
# Per-user sums and labels


SUMS_SCHEMA = pa.schema([("user_id", pa.string()), ("bias_sum", pa.int64()), ("n_domains", pa.int64()), ("n_shared", pa.int64())])


def _as_table(rows: Any) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if isinstance(rows, list):
        return pa.Table.from_pylist(rows)
    return pa.table(rows)  # a mapping of columns or a pandas DataFrame


def user_bias_sums(rows: Any, bias: BiasTable, domains_column: str = "urls", user_column: str = "user_id") -> pa.Table:
    """Per user: the fixed-point sum of matched biases, matched shares and all shares (``SUMS_SCHEMA``).

    ``rows`` is a pyarrow Table (or a list of dicts, a mapping of columns, a DataFrame) with one or
    more rows per user; ``domains_column`` holds URLs or domains, a list per row or one per row.
    Every user in ``rows`` appears once, also with no share at all. Partial sums of several batches
    combine exactly with :func:`combine_sums`.
    """
    table = _as_table(rows)
    for col in (user_column, domains_column):
        if col not in table.column_names:
            raise ConfigError(f"ideology: the rows have no column {col!r} (columns: {', '.join(table.column_names)})")
    users = table.column(user_column).combine_chunks()
    if not pa.types.is_string(users.type):
        users = users.cast(pa.string())
    values = table.column(domains_column).combine_chunks()
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        share_user = pc.take(users, pc.list_parent_indices(values))
        shared = pc.list_flatten(values)
    else:
        share_user, shared = users, values
    if pa.types.is_null(shared.type):
        shared = shared.cast(pa.string())
    fixed = bias.lookup_fixed(normalize_domains(shared))
    shares = pa.table({"user_id": share_user, "fixed": fixed, "shared": pc.is_valid(shared)})
    per_user = shares.group_by("user_id").aggregate([("fixed", "sum"), ("fixed", "count"), ("shared", "sum")])
    everyone = pa.table({"user_id": pc.unique(users)})
    out = everyone.join(per_user, "user_id", join_type="left outer")
    return pa.table(
        {
            "user_id": out.column("user_id"),
            "bias_sum": pc.fill_null(out.column("fixed_sum"), 0).cast(pa.int64()),
            "n_domains": pc.fill_null(out.column("fixed_count"), 0).cast(pa.int64()),
            "n_shared": pc.fill_null(out.column("shared_sum"), 0).cast(pa.int64()),
        },
        schema=SUMS_SCHEMA,
    ).filter(pc.is_valid(out.column("user_id")))


def combine_sums(parts: Iterable[pa.Table]) -> pa.Table:
    """Add up partial :func:`user_bias_sums` tables (exact: integer sums)."""
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return SUMS_SCHEMA.empty_table()
    t = pa.concat_tables(parts).group_by("user_id").aggregate([("bias_sum", "sum"), ("n_domains", "sum"), ("n_shared", "sum")])
    return pa.table({"user_id": t.column("user_id"), "bias_sum": t.column("bias_sum_sum"), "n_domains": t.column("n_domains_sum"), "n_shared": t.column("n_shared_sum")}, schema=SUMS_SCHEMA)


@dataclass
class IdeologyResult:
    """``users``: every user with ``mean_bias``, ``n_domains`` and ``status`` (a group label,
    ``neutral`` or ``too_few_domains``); ``groups``: the labelled users (``user_id``, ``group``);
    ``counts``: users per status, shares seen and matched, and ``cutoff``: the rule and the
    cut-off values used (see :func:`label_users`)."""

    users: pa.Table
    groups: pa.Table
    counts: dict[str, Any]

    def group_of(self) -> dict[str, str]:
        return dict(zip(self.groups.column("user_id").to_pylist(), self.groups.column("group").to_pylist(), strict=True))


def labelled_groups(users: pa.Table, labels: tuple[str, ...] | list[str] = (LIBERAL, CONSERVATIVE)) -> pa.Table:
    """``(user_id, group)`` of the users whose status is one of the two group labels."""
    labelled = pc.is_in(users.column("status"), pa.array(list(labels)))
    return users.filter(labelled).select(["user_id", "status"]).rename_columns(["user_id", "group"])


def check_cutoff(cutoff: str, threshold: float | None, tails: tuple[float, float] | list[float], where: str = "ideology") -> None:
    """Raise :class:`ConfigError` naming the key of a bad cut-off setting."""
    if cutoff not in CUTOFFS:
        raise ConfigError(f"{where}.cutoff: {cutoff!r} is not one of {', '.join(CUTOFFS)}")
    if cutoff == "threshold":
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ConfigError(f"{where}.threshold: must be in (0, 1], got {threshold}")
        return
    if threshold is not None:
        raise ConfigError(f"{where}.threshold: applies to cutoff: threshold, but the cut-off is {cutoff!r}; set {where}.cutoff: threshold to use a fixed threshold")
    if len(tails) != 2 or not all(0.0 < float(t) <= 0.5 for t in tails):
        raise ConfigError(f"{where}.tails: need two shares in (0, 0.5] (bottom and top of the user-score distribution), got {list(tails)}")


def _tail_cutoffs(fixed_mean: np.ndarray, tails: tuple[float, float]) -> tuple[float | None, float | None]:
    """(low, high) cut-offs of ``tails`` on the eligible users' means: the k-th smallest and the
    k-th largest mean, ``k = floor(share * n)``; None where k is 0."""
    values = np.sort(fixed_mean)
    n = len(values)
    # + 1e-9: share * n computed in floating point (0.29 * 100 = 28.999999999999996) must not lose a user
    k_lo = math.floor(float(tails[0]) * n + 1e-9)
    k_hi = math.floor(float(tails[1]) * n + 1e-9)
    low = float(values[k_lo - 1]) if k_lo > 0 else None
    high = float(values[n - k_hi]) if k_hi > 0 else None
    return low, high


def label_users(
    sums: pa.Table,
    threshold: float | None = None,
    min_domains: int = 3,
    labels: tuple[str, str] = (LIBERAL, CONSERVATIVE),
    cutoff: str | None = None,
    tails: tuple[float, float] = DEFAULT_TAILS,
) -> IdeologyResult:
    """Label users from their (combined) sums with the ``tails`` or ``threshold`` cut-off rule.

    ``cutoff`` None means ``threshold`` when a threshold is given, else ``tails`` (the default, see
    the module docstring). Every label is a function of the exact integer sums alone, so partial
    sums from any split of the corpus give the same labels (the means are computed once, by the
    same correctly rounded division, so equal means are equal floats and tie exactly).
    """
    cutoff = cutoff or ("threshold" if threshold is not None else "tails")
    check_cutoff(cutoff, threshold, tails)
    if min_domains < 1:
        raise ConfigError(f"ideology.min_domains: must be >= 1, got {min_domains}")
    if len(labels) != 2 or labels[0] == labels[1]:
        raise ConfigError(f"ideology: need two distinct group labels, got {labels}")
    sums = sums.sort_by("user_id")
    n = sums.column("n_domains")
    enough = pc.greater_equal(n, min_domains)
    mean_fixed = pc.divide(sums.column("bias_sum").cast(pa.float64()), pc.max_element_wise(n, 1).cast(pa.float64()))
    mean = pc.if_else(pc.greater(n, 0), pc.divide(mean_fixed, float(_SCALE)), pa.scalar(None, pa.float64()))
    rule: dict[str, Any]
    if cutoff == "threshold":
        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        # compare in fixed point (exact: sums are integers), so a mean on the threshold is labelled
        limit = round(threshold * _SCALE)
        left = pc.less_equal(sums.column("bias_sum"), pc.multiply(n, -limit))
        right = pc.greater_equal(sums.column("bias_sum"), pc.multiply(n, limit))
        rule = {"method": "threshold", "threshold": threshold, f"{labels[0]}_at_or_below": -threshold, f"{labels[1]}_at_or_above": threshold}
    else:
        fixed = mean_fixed.to_numpy(zero_copy_only=False)
        eligible = enough.to_numpy(zero_copy_only=False)
        low, high = _tail_cutoffs(fixed[eligible], tails)
        left_np = eligible & (fixed <= low) if low is not None else np.zeros(len(fixed), bool)
        right_np = eligible & (fixed >= high) if high is not None else np.zeros(len(fixed), bool)
        both = left_np & right_np  # the two cut-offs meet on a tied value: neither label
        left, right = pa.array(left_np & ~both), pa.array(right_np & ~both)
        rule = {
            "method": "tails",
            "tails": [float(t) for t in tails],
            "eligible_users": int(eligible.sum()),
            f"{labels[0]}_at_or_below": None if low is None else low / _SCALE,
            f"{labels[1]}_at_or_above": None if high is None else high / _SCALE,
        }
    status = pc.case_when(
        pc.make_struct(pc.invert(enough), left, right),
        pa.scalar(TOO_FEW),
        pa.scalar(labels[0]),
        pa.scalar(labels[1]),
        pa.scalar(NEUTRAL),
    )
    users = pa.table({"user_id": sums.column("user_id"), "mean_bias": mean, "n_domains": n, "n_shared": sums.column("n_shared"), "status": status})
    groups = labelled_groups(users, labels)
    counts: dict[str, Any] = {"users": users.num_rows, labels[0]: 0, labels[1]: 0, NEUTRAL: 0, TOO_FEW: 0}
    for value, count in zip(*pc.value_counts(status).flatten(), strict=True):
        counts[value.as_py()] = count.as_py()
    counts["labelled"] = counts[labels[0]] + counts[labels[1]]
    counts["shares"] = int(pc.sum(sums.column("n_shared")).as_py() or 0)
    counts["shares_matched"] = int(pc.sum(n).as_py() or 0)
    counts["cutoff"] = rule
    return IdeologyResult(users, groups, counts)


def user_ideology(
    rows: Any,
    bias: BiasTable | str | Path = EXAMPLE_TABLE,
    domains_column: str = "urls",
    user_column: str = "user_id",
    threshold: float | None = None,
    min_domains: int = 3,
    labels: tuple[str, str] = (LIBERAL, CONSERVATIVE),
    cutoff: str | None = None,
    tails: tuple[float, float] = DEFAULT_TAILS,
) -> IdeologyResult:
    """Users' groups from the domains they share, in one call (see the module docstring)."""
    table = bias if isinstance(bias, BiasTable) else load_bias_table(bias)
    return label_users(user_bias_sums(rows, table, domains_column, user_column), threshold, min_domains, labels, cutoff, tails)
