"""Input files (local or s3://): discovery, preflight checks, read units and the canonical table."""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import posixpath
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from affalign import schema
from affalign.errors import InputError
from affalign.rundir import filesystem

FORMATS_BY_EXTENSION = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}
_GLOB_CHARS = set("*?[")
ROWS_PER_UNIT = 200_000


# ---------------------------------------------------------------------------------------------
# Input resolution and preflight


@dataclass(frozen=True)
class InputFile:
    """One input file of a run (its index in the run's file list is ``_file`` in every row)."""

    uri: str  # as the user would name it (s3://bucket/key or a local path)
    path: str  # path within the filesystem
    format: str
    size: int


@dataclass(frozen=True)
class ReadUnit:
    """A piece of one input file that one read task handles."""

    file_index: int
    row_groups: tuple[int, ...] = ()  # parquet only; empty means the whole file
    row_start: int = 0
    num_rows: int = -1  # -1: unknown until read (jsonl, csv)

    def to_json(self) -> str:
        """One row of the dataset of read units that read stages consume."""
        return json.dumps({"file_index": self.file_index, "row_groups": list(self.row_groups), "row_start": self.row_start, "num_rows": self.num_rows})

    @classmethod
    def from_json(cls, raw: str) -> ReadUnit:
        d = json.loads(raw)
        return cls(d["file_index"], tuple(d["row_groups"]), d["row_start"], d["num_rows"])


def _format_of(path: str, forced: str) -> str | None:
    if forced != "auto":
        return forced
    lower = path.lower()
    for ext, fmt in FORMATS_BY_EXTENSION.items():
        if lower.endswith(ext):
            return fmt
    return None


def resolve_inputs(uri: str, fmt: str = "auto", s3_endpoint: str | None = None, s3_region: str | None = None) -> list[InputFile]:
    """Expand a file, directory or glob (local or s3://) into a sorted list of input files."""
    if not uri:
        raise InputError("input.path is empty: point the job at a corpus (--set input.path=...)")
    fs, path = filesystem(uri, s3_endpoint, s3_region)
    prefix = "s3://" if uri.startswith("s3://") else ""
    infos: list[pafs.FileInfo] = []
    try:
        if any(c in path for c in _GLOB_CHARS):
            base = path
            while any(c in base for c in _GLOB_CHARS):
                base = posixpath.dirname(base)
            selector = pafs.FileSelector(base or ".", recursive=True)
            infos = [i for i in fs.get_file_info(selector) if i.is_file and fnmatch.fnmatch(i.path, path)]
        else:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise InputError(f"{uri}: no such file or directory")
            if info.type == pafs.FileType.Directory:
                infos = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.is_file]
                infos = [i for i in infos if not posixpath.basename(i.path).startswith((".", "_"))]
            else:
                infos = [info]
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{uri}: cannot list input: {exc}") from exc
    files = []
    for info in sorted(infos, key=lambda i: i.path):
        f = _format_of(info.path, fmt)
        if f is None:
            if len(infos) == 1:
                raise InputError(f"{prefix}{info.path}: unknown file format; set input.format to parquet, jsonl or csv")
            continue
        files.append(InputFile(uri=f"{prefix}{info.path}", path=info.path, format=f, size=info.size or 0))
    if not files:
        raise InputError(f"{uri}: no input files (.parquet, .jsonl, .csv) found")
    return files


def _head_bytes(fs: pafs.FileSystem, path: str, n: int = 1 << 20) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read(n)


def _jsonl_keys(head: bytes) -> set[str]:
    keys: set[str] = set()
    for line in head.splitlines()[:-1] or head.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            keys.update(obj)
    return keys


def preflight(
    files: list[InputFile], fs: pafs.FileSystem, group_column: str | None, extra_required: dict[str, str] | None = None
) -> tuple[list[ReadUnit], list[dict[str, Any]]]:
    """Check every file is readable and has the required columns; plan the read units.

    Raises :class:`InputError` naming the file and column. ``extra_required`` maps further required
    columns to the config key that asks for them. Returns the units and one info dict per file (for
    run.json).
    """
    units: list[ReadUnit] = []
    infos: list[dict[str, Any]] = []
    for idx, f in enumerate(files):
        info: dict[str, Any] = {"file": f.uri, "format": f.format, "bytes": f.size}
        if f.size == 0:
            info["rows"] = 0
            info["note"] = "empty file"
            infos.append(info)
            continue
        try:
            if f.format == "parquet":
                with fs.open_input_file(f.path) as fh:
                    meta = pq.ParquetFile(fh).metadata
                    arrow_schema = pq.ParquetFile(fh).schema_arrow
                columns = set(arrow_schema.names)
                text_type = arrow_schema.field(schema.TEXT).type if schema.TEXT in columns else None
                if text_type is not None and not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_null(text_type)):
                    raise InputError(f"{f.uri}: column '{schema.TEXT}' has type {text_type}, expected string")
                info["rows"] = meta.num_rows
                start, group, rows = 0, [], 0
                for rg in range(meta.num_row_groups):
                    group.append(rg)
                    rows += meta.row_group(rg).num_rows
                    if rows >= ROWS_PER_UNIT or rg == meta.num_row_groups - 1:
                        units.append(ReadUnit(idx, tuple(group), start, rows))
                        start += rows
                        group, rows = [], 0
            else:
                head = _head_bytes(fs, f.path)
                if f.format == "jsonl":
                    columns = _jsonl_keys(head)
                    if not columns and head.strip():
                        raise InputError(f"{f.uri}: no JSON object found in the first lines (is it JSON Lines?)")
                else:
                    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
                    columns = set(next(csv.reader([first]), []))
                units.append(ReadUnit(idx))
        except InputError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{f.uri}: unreadable {f.format} file: {exc}") from exc
        missing = [c for c in schema.REQUIRED_INPUT_COLUMNS if c not in columns]
        if missing and (f.format == "parquet" or columns):
            raise InputError(f"{f.uri}: missing required column '{missing[0]}' (required: {', '.join(schema.REQUIRED_INPUT_COLUMNS)})")
        for column, key in (extra_required or {}).items():
            if column not in columns and (f.format == "parquet" or columns):
                raise InputError(f"{f.uri}: missing column '{column}' (required by {key})")
        info["has_group_column"] = bool(group_column and group_column in columns)
        infos.append(info)
    return units, infos


# ---------------------------------------------------------------------------------------------
# Reading one unit into the canonical table


CANONICAL_SCHEMA = pa.schema(
    [
        (schema.SOURCE_FILE, pa.int32()),
        (schema.SOURCE_ROW, pa.int64()),
        (schema.TWEET_ID, pa.string()),
        (schema.USER_ID, pa.string()),
        (schema.TEXT, pa.string()),
        ("created_at", pa.string()),
        ("is_retweet", pa.bool_()),
        ("is_quote", pa.bool_()),
        (schema.GROUP, pa.string()),
        (schema.REASON, pa.string()),
    ]
)


def _to_string(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_large_string(arr.type) or pa.types.is_null(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_dictionary(arr.type):
        return _to_string(arr.dictionary_decode())
    if pa.types.is_floating(arr.type):
        # ids stored as floats (a CSV or pandas artefact): integral values print without ".0"
        as_int = pc.cast(arr, pa.int64(), safe=False)
        exact = pc.equal(pc.cast(as_int, arr.type), arr)
        return pc.if_else(exact, pc.cast(as_int, pa.string()), pc.cast(arr, pa.string()))
    try:
        return pc.cast(arr, pa.string())
    except pa.ArrowException:
        return pa.array([None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()], pa.string())


def _to_bool(arr: pa.ChunkedArray | pa.Array | None, n: int) -> pa.Array:
    if arr is None:
        return pa.nulls(n, pa.bool_())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_boolean(arr.type):
        return arr
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return pc.not_equal(arr, 0)
    s = pc.utf8_lower(_to_string(arr))
    return pc.is_in(s, pa.array(["true", "1", "yes", "t", "y"]))


def canonicalize(table: pa.Table, file_index: int, row_start: int, group_column: str | None, reasons: pa.Array | None = None) -> pa.Table:
    """Turn a raw input table into the canonical schema (ids as strings, normalised group)."""
    n = table.num_rows
    cols = set(table.column_names)

    def col(name: str) -> Any:
        return table.column(name) if name in cols else None

    text = col(schema.TEXT)
    text_not_string = None
    if text is not None:
        t = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
        if not (pa.types.is_string(t.type) or pa.types.is_large_string(t.type) or pa.types.is_null(t.type)):
            text_not_string = pc.is_valid(t)
        text = _to_string(t)
    out = {
        schema.SOURCE_FILE: pa.array([file_index] * n, pa.int32()),
        schema.SOURCE_ROW: pa.array(range(row_start, row_start + n), pa.int64()),
        schema.TWEET_ID: _to_string(col(schema.TWEET_ID)) if col(schema.TWEET_ID) is not None else pa.nulls(n, pa.string()),
        schema.USER_ID: _to_string(col(schema.USER_ID)) if col(schema.USER_ID) is not None else pa.nulls(n, pa.string()),
        schema.TEXT: text if text is not None else pa.nulls(n, pa.string()),
        "created_at": _to_string(col("created_at")) if col("created_at") is not None else pa.nulls(n, pa.string()),
        "is_retweet": _to_bool(col("is_retweet"), n),
        "is_quote": _to_bool(col("is_quote"), n),
        schema.GROUP: (
            pc.utf8_trim_whitespace(_to_string(col(group_column)))
            if group_column and col(group_column) is not None
            else pa.nulls(n, pa.string())
        ),
        schema.REASON: reasons if reasons is not None else pa.nulls(n, pa.string()),
    }
    if text_not_string is not None:
        out[schema.REASON] = pc.if_else(
            pc.and_(text_not_string, pc.is_null(out[schema.REASON])), pa.scalar("text_not_string"), out[schema.REASON]
        )
    return pa.table(out, schema=CANONICAL_SCHEMA)


def _read_jsonl_robust(data: bytes) -> tuple[list[dict[str, Any]], list[str | None]]:
    rows: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            rows.append({schema.TEXT: raw.decode("utf-8", errors="replace")})
            reasons.append("invalid_utf8")
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            rows.append({schema.TEXT: line})
            reasons.append("unparseable_row")
            continue
        if not isinstance(obj, dict):
            rows.append({schema.TEXT: line})
            reasons.append("unparseable_row")
            continue
        rows.append(obj)
        reasons.append(None)
    return rows, reasons


def _rows_to_table(rows: list[dict[str, Any]], group_column: str | None) -> pa.Table:
    keys = [schema.TWEET_ID, schema.USER_ID, schema.TEXT, "created_at", "is_retweet", "is_quote"]
    if group_column:
        keys.append(group_column)
    cols: dict[str, pa.Array] = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        if k == schema.TEXT:
            continue
        if k in ("is_retweet", "is_quote"):
            cols[k] = pa.array([v if isinstance(v, bool) else (str(v).lower() in ("true", "1") if v is not None else None) for v in values], pa.bool_())
        else:
            cols[k] = pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values], pa.string())
    texts = [r.get(schema.TEXT) for r in rows]
    cols[schema.TEXT] = pa.array([t if isinstance(t, str) or t is None else json.dumps(t) for t in texts], pa.string())
    cols["_text_not_string"] = pa.array([t is not None and not isinstance(t, str) for t in texts], pa.bool_())
    return pa.table(cols)


def read_unit(unit: ReadUnit, f: InputFile, fs: pafs.FileSystem, group_column: str | None) -> pa.Table:
    """Read one unit into the canonical schema; rows that cannot be parsed come back rejected."""
    try:
        if f.format == "parquet":
            with fs.open_input_file(f.path) as fh:
                pf = pq.ParquetFile(fh)
                wanted = [c for c in (*schema.REQUIRED_INPUT_COLUMNS, *schema.OPTIONAL_INPUT_COLUMNS, group_column) if c and c in pf.schema_arrow.names]
                table = pf.read_row_groups(list(unit.row_groups), columns=wanted) if unit.row_groups else pf.read(columns=wanted)
            return canonicalize(table, unit.file_index, unit.row_start, group_column)
        with fs.open_input_stream(f.path) as fh:
            data = fh.read()
        if f.format == "jsonl":
            rows, reasons = _read_jsonl_robust(data)
            table = _rows_to_table(rows, group_column)
            reason_arr = pa.array(reasons, pa.string())
            tns = table.column("_text_not_string")
            reason_arr = pc.if_else(pc.and_(tns, pc.is_null(reason_arr)), pa.scalar("text_not_string"), reason_arr)
            return canonicalize(table.drop_columns(["_text_not_string"]), unit.file_index, 0, group_column, reason_arr)
        return _read_csv(data, unit, group_column)
    except pa.ArrowException as exc:
        raise InputError(f"{f.uri}: unreadable {f.format} file: {exc}") from exc


def read_unit_columns(unit: ReadUnit, f: InputFile, fs: pafs.FileSystem, columns: list[str]) -> pa.Table:
    """Read only ``columns`` of one unit (missing values as nulls; unparseable rows skipped).

    For passes that need other columns than the canonical table, e.g. the domains users share.
    A CSV cell holding a list is split on whitespace.
    """
    try:
        if f.format == "parquet":
            with fs.open_input_file(f.path) as fh:
                pf = pq.ParquetFile(fh)
                wanted = [c for c in columns if c in pf.schema_arrow.names]
                table = pf.read_row_groups(list(unit.row_groups), columns=wanted) if unit.row_groups else pf.read(columns=wanted)
        else:
            with fs.open_input_stream(f.path) as fh:
                data = fh.read()
            if f.format == "jsonl":
                rows, reasons = _read_jsonl_robust(data)
                rows = [r for r, why in zip(rows, reasons, strict=True) if why is None]
                table = pa.Table.from_pylist([{c: _user_str(r.get(c)) if c == schema.USER_ID else r.get(c) for c in columns} for r in rows]) if rows else pa.table({})
            else:
                text = data.decode("utf-8", errors="replace")
                recs = [{c: (rec.get(c) or None) for c in columns} for rec in csv.DictReader(io.StringIO(text, newline=""))]
                table = pa.Table.from_pylist(recs) if recs else pa.table({})
                for c in columns:
                    if c in table.column_names and pa.types.is_string(table.column(c).type) and c != schema.USER_ID:
                        table = table.set_column(table.schema.get_field_index(c), c, pc.split_pattern_regex(pc.utf8_trim_whitespace(table.column(c)), r"\s+"))
    except pa.ArrowException as exc:
        raise InputError(f"{f.uri}: unreadable {f.format} file: {exc}") from exc
    n = table.num_rows
    for c in columns:
        if c not in table.column_names:
            table = table.append_column(c, pa.nulls(n, pa.string()))
    return table.select(columns)


def _user_str(v: Any) -> Any:
    return None if v is None else str(v)


def _read_csv(data: bytes, unit: ReadUnit, group_column: str | None) -> pa.Table:
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    for rec in reader:
        bad = any(isinstance(v, str) and _has_surrogates(v) for v in rec.values())
        if None in rec:  # more fields than the header
            rec.pop(None)
            reasons.append("unparseable_row")
        elif bad:
            reasons.append("invalid_utf8")
        else:
            reasons.append(None)
        if bad:
            rec = {k: v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if isinstance(v, str) else v for k, v in rec.items()}
        rows.append({k: (v if v != "" or k == schema.TEXT else None) for k, v in rec.items()})
    table = _rows_to_table(rows, group_column).drop_columns(["_text_not_string"])
    return canonicalize(table, unit.file_index, 0, group_column, pa.array(reasons, pa.string()))


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True
