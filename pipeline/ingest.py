"""Ingest: read every configured extract, validate it, load good rows and quarantine bad ones.

Per file: preflight (`pipeline.preflight`: exists, readable, header, required columns) for *all*
files first, so a bad file stops the command before anything is written; then every new file is
loaded. A file already loaded (same source and sha256) is a reported no-op. For every load,
rows read = rows loaded + rows rejected is checked before the load is marked finished.

Three threads: one reads the files' batches in turn, one normalises and validates them, and the
main thread stores each batch and finishes each file (its malformed rows, repeated keys, counts).
A load commits as it goes (every COMMIT_ROWS, and before its repeated keys are removed); it is all
or nothing all the same: a load is finished only at its last commit, a failure removes every load
the command made (`_forget_loads`), and one left unfinished by a killed process is removed by the
next ingest (`clean_unfinished_loads`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl
import pyarrow as pa

from pipeline.config import Config
from pipeline.contract import EXTRACTS, Extract, RejectReason
from pipeline.errors import InputFileError, IomError
from pipeline.preflight import PlannedFile, decode_error, plan_ingest, utf8_copy, xlsx_frame
from pipeline.validate import LINE, ParseOptions, build_schema, normalise, validate_batch, with_messages
from pipeline.warehouse import connect, q, run_sql, src_table, transaction

log = logging.getLogger(__name__)

BATCH_ROWS = 1_000_000
COMMIT_ROWS = 2_000_000
ROW_GROUP_ROWS = 122_880  # DuckDB's row group size: the Arrow batch size handed to inserts
Progress = Callable[[str, int, int | None], None]  # (label, rows done, rows total or None)
T = TypeVar("T")


MOSTLY_REJECTED = 0.5  # a share of a file's rows rejected that is worth a warning


@dataclass
class LoadResult:
    source: str
    file_name: str
    load_id: str
    status: str  # "loaded" or "unchanged"
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    absent_optional_columns: list[str] = field(default_factory=list)


# --- reading batches of text -----------------------------------------------------------------


def _canonical_text(frame: pl.DataFrame, plan: PlannedFile) -> pl.DataFrame:
    """Rename to canonical names, add absent optional columns as empty, keep the raw text."""
    frame = frame.rename({k: v for k, v in plan.rename.items() if k in frame.columns})
    missing = [pl.lit(None, dtype=pl.Utf8).alias(c) for c in plan.extract.column_names if c not in frame.columns]
    if missing:
        frame = frame.with_columns(missing)
    return frame.select(LINE, *[pl.col(c).cast(pl.Utf8) for c in plan.extract.column_names])


@dataclass
class _Malformed:
    line: int
    raw: str
    message: str


@dataclass
class _Checked:
    """One batch as the worker hands it over: ready to store."""
    rows: int  # rows read, repeated header lines included
    repeated_header: pl.DataFrame | None  # header lines repeated inside the data, or None
    typed: pl.DataFrame  # the rows that passed, in their contract types
    failures: pl.DataFrame  # one row per failed check
    bad: pl.DataFrame | None  # the text of the failed rows, or None


def _read_batches(plan: PlannedFile, workdir: Path) -> tuple[Iterator[pl.DataFrame], Callable[[], list[_Malformed]]]:
    """Yield text batches with a provisional `_line`; afterwards, the rows the reader could not parse."""
    settings = plan.settings
    malformed: list[_Malformed] = []
    if plan.fmt == "xlsx":
        frame = xlsx_frame(plan.extract.name, plan.path, settings)
        frame = frame.rename(dict(zip(frame.columns, plan.header, strict=True)))
        frame = frame.with_row_index(LINE, offset=settings.header_row + 1).with_columns(pl.col(LINE).cast(pl.Int64))
        frame = frame.with_columns(pl.col(c).str.replace(r"^(\d{4}-\d{2}-\d{2}) 00:00:00$", "$1") for c in plan.header)
        return iter([_canonical_text(frame, plan)] if frame.height else []), lambda: malformed

    reader_con = duckdb.connect(":memory:")
    reader_con.execute("SET preserve_insertion_order = true")  # line numbers follow the file
    reader_con.execute("SET memory_limit = '1GB'")
    reader_con.execute("SET produce_arrow_string_view = true")  # Polars keeps string views: no copy of every value
    if plan.fmt == "parquet":
        cols = ", ".join(f"CAST({q(h)} AS VARCHAR) AS {q(h)}" for h in plan.header)
        query = f"SELECT {cols} FROM read_parquet(?)"
        params: list = [str(plan.path)]
        first_line = 1
    else:
        source = utf8_copy(plan.extract.name, plan.path, settings.encoding, plan.mixed_newlines, workdir)
        positional = {f"c{i}": "VARCHAR" for i in range(len(plan.header))}
        query = (
            "SELECT * FROM read_csv(?, header = true, delim = ?, quote = '\"', escape = '\"', "
            "skip = ?, columns = ?, auto_detect = false, store_rejects = true, "
            "null_padding = false, strict_mode = true, max_line_size = 4194304)"
        )
        params = [str(source), settings.delimiter, settings.header_row - 1, positional]
        first_line = settings.header_row + 1
    names = [f"c{i}" for i in range(len(plan.header))] if plan.fmt == "csv" else plan.header

    def batches() -> Iterator[pl.DataFrame]:
        try:
            # execute() streams; a relation's fetch_record_batch re-plans and is several times slower
            reader = run_sql(reader_con, f"read {plan.extract.name}", query, params).fetch_record_batch(BATCH_ROWS)
            done = 0
            for record_batch in reader:
                frame = pl.from_arrow(pa.Table.from_batches([record_batch]))
                assert isinstance(frame, pl.DataFrame)
                frame = frame.rename(dict(zip(names, plan.header, strict=True)))
                frame = frame.with_row_index(LINE, offset=first_line + done).with_columns(pl.col(LINE).cast(pl.Int64))
                done += frame.height
                yield _canonical_text(frame, plan)
        except duckdb.Error as exc:
            text = str(exc)
            if "unicode" in text.lower() or "encod" in text.lower():
                raise decode_error(plan.extract.name, plan.path, settings.encoding, text.splitlines()[0][:160]) from None
            raise InputFileError(
                f"{plan.extract.name}: {plan.path} cannot be read: {text.splitlines()[0][:200]}",
                hint=f"check the file and [extracts.{plan.extract.name}] format, delimiter and encoding",
            ) from None
        if plan.fmt == "csv":
            for line, raw, message in run_sql(
                reader_con, f"read {plan.extract.name}: malformed rows",
                "SELECT line, csv_line, error_type || ': ' || error_message FROM reject_errors ORDER BY line"
            ).fetchall():
                malformed.append(_Malformed(int(line), raw, message))

    return batches(), lambda: _dedupe(malformed)


def _dedupe(rows: list[_Malformed]) -> list[_Malformed]:
    """A row DuckDB rejects for several reasons appears once per reason; keep the first."""
    seen: dict[int, _Malformed] = {}
    for row in rows:
        seen.setdefault(row.line, row)
    return list(seen.values())


# --- loading ---------------------------------------------------------------------------------


def _register(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """Hand a frame to DuckDB as row-group-sized Arrow batches (string views kept): one huge
    batch makes the insert build its row groups late and costs seconds more at commit."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    con.register(name, pa.Table.from_batches(table.to_batches(max_chunksize=ROW_GROUP_ROWS), table.schema))


@dataclass
class _FileRead:
    """The end of one file's batches: the rows its reader could not parse."""
    malformed: list[_Malformed]


def _read_files(plans: list[PlannedFile], workdir: Path) -> Iterator[tuple[PlannedFile, pl.DataFrame | _FileRead]]:
    """Every file's text batches in turn, each file ended by its `_FileRead`."""
    for plan in plans:
        batches, malformed_rows = _read_batches(plan, workdir)
        for text in batches:
            yield plan, text
        yield plan, _FileRead(malformed_rows())


def _check_files(items: Iterator[tuple[PlannedFile, pl.DataFrame | _FileRead]]
                 ) -> Iterator[tuple[PlannedFile, _Checked | _FileRead]]:
    """Normalise and validate each text batch of `_read_files`; the ends pass through."""
    current = None  # a file's batches come together: its schema is built once
    for plan, item in items:
        if isinstance(item, _FileRead):
            yield plan, item
            continue
        if plan is not current:
            current, options = plan, _parse_options(plan)
            schema = build_schema(plan.extract, options)
        yield plan, _checked(plan, item, schema, options)


def _parse_options(plan: PlannedFile) -> ParseOptions:
    return ParseOptions(extract_date=plan.settings.extract_date or date.today(),
                        date_formats=tuple(plan.settings.date_formats))


def _checked(plan: PlannedFile, text: pl.DataFrame, schema, options: ParseOptions) -> _Checked:
    rows = text.height
    normalised = normalise(text, plan.extract, plan.settings.values)
    header = _repeated_header(plan, text)
    repeated = None
    if header is not None:
        repeated = text.filter(header)
        text, normalised = text.filter(~header), normalised.filter(~header)
    typed, failures = validate_batch(normalised, plan.extract, schema, options, plan.path.name)
    bad = text.filter(pl.col(LINE).is_in(failures.get_column(LINE).unique().implode())) if failures.height else None
    return _Checked(rows, repeated, typed, failures, bad)


class _FileLoad:
    """One file's load into the warehouse, from its registration to its finish (on the main thread)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, plan: PlannedFile) -> None:
        self.con, self.plan = con, plan
        self.extract = plan.extract
        self.load_id = load_id_of(plan)
        self.table = q(src_table(self.extract))
        self.columns = ", ".join(q(c) for c in self.extract.column_names)
        self.rows_read = self.committed_at = 0
        seq = run_sql(con, "ingest: next load_seq", "SELECT coalesce(max(load_seq), 0) + 1 FROM loads").fetchone()[0]
        with transaction(con):
            run_sql(
                con, "ingest: register load",
                "INSERT INTO loads (load_id, load_seq, source, file_name, file_path, sha256, file_bytes, file_format, "
                "extract_date, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [self.load_id, seq, self.extract.name, plan.path.name, str(plan.path), plan.sha256,
                 plan.path.stat().st_size, plan.fmt, _parse_options(plan).extract_date,
                 datetime.now(UTC).replace(tzinfo=None)],
            )
        con.execute("BEGIN TRANSACTION")
        self.open = True  # a transaction of this load is open (rolled back if the ingest fails)

    def store(self, batch: _Checked, progress: Progress | None) -> None:
        con, plan = self.con, self.plan
        self.rows_read += batch.rows
        if batch.repeated_header is not None:
            _store_repeated_header(con, self.load_id, plan, batch.repeated_header)
        _register(con, "batch_good", batch.typed)
        run_sql(
            con, f"ingest: insert {self.extract.name} rows",
            f"INSERT INTO {self.table} (_load_id, _line, {self.columns}) "
            f"SELECT ?, {q(LINE)}, {self.columns} FROM batch_good",
            [self.load_id],
        )
        if batch.bad is not None:
            _store_failures(con, self.load_id, plan, batch.failures, _raw_json(batch.bad))
        con.unregister("batch_good")
        # Commit every COMMIT_ROWS: a ten-million-row file in one transaction holds gigabytes in
        # memory. All-or-nothing is kept by `_forget_loads` (on failure) and `clean_unfinished_loads`.
        if self.rows_read - self.committed_at >= COMMIT_ROWS:
            con.execute("COMMIT")
            con.execute("BEGIN TRANSACTION")
            self.committed_at = self.rows_read
        if progress:
            progress(self.extract.name, self.rows_read, None)

    def finish(self, malformed: list[_Malformed]) -> LoadResult:
        con, plan, extract, load_id, table = self.con, self.plan, self.extract, self.load_id, self.table
        name = extract.name
        # Commit the rows before anything below deletes or renumbers some of them: a delete or update
        # in the transaction that inserted a table's rows makes DuckDB rewrite them all at commit
        # (seconds at a million rows), one in a later transaction only marks them.
        con.execute("COMMIT")
        con.execute("BEGIN TRANSACTION")
        rows_read = self.rows_read
        if malformed:
            rows_read += len(malformed)
            _fix_lines_around(con, load_id, plan, [m.line for m in malformed])
            failures = with_messages(
                pl.DataFrame(
                    {
                        LINE: [m.line for m in malformed],
                        "column_name": [None] * len(malformed),
                        "value": [m.message for m in malformed],
                        "reason_code": [RejectReason.MALFORMED_ROW.value] * len(malformed),
                    },
                    schema={LINE: pl.Int64, "column_name": pl.Utf8, "value": pl.Utf8, "reason_code": pl.Utf8},
                )
            )
            raw = pl.DataFrame({LINE: [m.line for m in malformed], "raw": [m.raw for m in malformed]},
                               schema={LINE: pl.Int64, "raw": pl.Utf8})
            _store_failures(con, load_id, plan, failures, raw)

        _reject_duplicate_keys(con, load_id, extract, plan)
        loaded = run_sql(con, "ingest: count loaded", f"SELECT count(*) FROM {table} WHERE _load_id = ?",
                         [load_id]).fetchone()[0]
        rejected = run_sql(con, "ingest: count rejected", "SELECT count(*) FROM rejected_rows WHERE load_id = ?",
                           [load_id]).fetchone()[0]
        if rows_read != loaded + rejected:
            raise IomError(
                f"{name}: reconciliation failed for {plan.path.name}: read {rows_read}, loaded {loaded}, "
                f"rejected {rejected}; nothing was loaded"
            )
        run_sql(
            con, "ingest: finish load",
            "UPDATE loads SET rows_read = ?, rows_loaded = ?, rows_rejected = ?, finished_at = ? WHERE load_id = ?",
            [rows_read, loaded, rejected, datetime.now(UTC).replace(tzinfo=None), load_id],
        )
        con.execute("COMMIT")  # the load is finished only now
        self.open = False
        reasons = dict(
            run_sql(
                con, "ingest: count reasons",
                "SELECT reason_code, count(*) FROM rejects WHERE load_id = ? GROUP BY 1 ORDER BY 1", [load_id],
            ).fetchall()
        )
        log.info("loaded %s (%s): read %d, loaded %d, rejected %d", name, plan.path.name, rows_read, loaded, rejected)
        if rows_read and rejected > MOSTLY_REJECTED * rows_read:
            _warn_mostly_rejected(con, plan, load_id, rows_read, rejected)
        if plan.ignored:
            log.info("%s (%s): columns not in the contract, ignored: %s", name, plan.path.name,
                     ", ".join(plan.ignored))
        if plan.absent_optional:
            log.info("%s (%s): optional columns absent, left empty: %s", name, plan.path.name,
                     ", ".join(plan.absent_optional))
        return LoadResult(name, plan.path.name, load_id, "loaded", rows_read, loaded, rejected, reasons,
                          plan.ignored, plan.absent_optional)


def load_id_of(plan: PlannedFile) -> str:
    return f"{plan.extract.name}:{plan.sha256[:16]}"


def _warn_mostly_rejected(con, plan: PlannedFile, load_id: str, rows_read: int, rejected: int) -> None:
    """A file that loses most of its rows is almost always a mapping or format setting, not bad data:
    say so loudly, with the commonest failure, rather than let a run score people on what is left."""
    column, reason, failures = run_sql(con, "ingest: commonest failure", """
        SELECT coalesce(column_name, '(row)'), reason_code, count(*) FROM rejects WHERE load_id = ?
        GROUP BY ALL ORDER BY 3 DESC, 1, 2 LIMIT 1""", [load_id]).fetchone()
    log.warning("%s (%s): %d of %d rows rejected (%.0f%%), most for %s in %s (%d rows): check the file's column "
                "mapping, date formats and codes in iom.toml; `iom rejects` lists each failure",
                plan.extract.name, plan.path.name, rejected, rows_read, 100 * rejected / rows_read, reason, column,
                failures)


def _raw_json(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(LINE, pl.struct(pl.all().exclude(LINE)).struct.json_encode().alias("raw"))


def _repeated_header(plan: PlannedFile, text: pl.DataFrame) -> pl.Series | None:
    """The mask of header lines repeated inside the data (reported as one clear reason, not a
    dozen bad values), or None when there is none."""
    file_column, canonical = next(iter(plan.rename.items()))
    mask = text.select((pl.col(canonical) == file_column).fill_null(False)).to_series()
    return mask if mask.any() else None


def _store_repeated_header(con: duckdb.DuckDBPyConnection, load_id: str, plan: PlannedFile,
                           repeated: pl.DataFrame) -> None:
    failures = with_messages(
        repeated.select(
            LINE,
            pl.lit(None, dtype=pl.Utf8).alias("column_name"),
            pl.lit(None, dtype=pl.Utf8).alias("value"),
            pl.lit(RejectReason.REPEATED_HEADER.value).alias("reason_code"),
        )
    )
    _store_failures(con, load_id, plan, failures, _raw_json(repeated))


_END = object()


def _read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield `items`, producing the next ones in a worker thread (at most `depth` waiting, so
    memory stays bounded). An error in the worker is raised here; leaving early stops it."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    cancelled = threading.Event()

    def offer(entry: tuple) -> bool:
        while not cancelled.is_set():
            try:
                slots.put(entry, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            offer((_END, exc))

    worker = threading.Thread(target=produce, name="iom-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        cancelled.set()
        worker.join()


def _store_failures(
    con: duckdb.DuckDBPyConnection, load_id: str, plan: PlannedFile, failures: pl.DataFrame, raw: pl.DataFrame
) -> None:
    """Named step [one row per failed check; one raw row per quarantined line]."""
    _register(con, "batch_failures", failures)
    run_sql(
        con, "ingest: store rejects",
        f"INSERT INTO rejects SELECT ?, ?, ?, {q(LINE)}, column_name, value, reason_code, message FROM batch_failures",
        [load_id, plan.extract.name, plan.path.name],
    )
    con.unregister("batch_failures")
    _register(con, "batch_raw", raw)
    run_sql(con, "ingest: store rejected rows", f"INSERT INTO rejected_rows SELECT ?, ?, {q(LINE)}, raw FROM batch_raw",
            [load_id, plan.extract.name])
    con.unregister("batch_raw")


def _fix_lines_around(con: duckdb.DuckDBPyConnection, load_id: str, plan: PlannedFile, bad_lines: list[int]) -> None:
    """Good rows were numbered as if no row had been dropped by the reader; shift them past the
    malformed lines. The k-th good line is first + k + #{malformed lines among the ones before it}."""
    first = plan.settings.header_row + 1
    adjusted = sorted(line - first - i for i, line in enumerate(sorted(bad_lines)))
    con.register("malformed_adj", pa.table({"a": pa.array(adjusted, pa.int64())}))
    shift = "(SELECT count(*) FROM malformed_adj m WHERE m.a <= t._line - ?)"
    for table in (q(src_table(plan.extract)),):
        run_sql(con, "ingest: renumber lines", f"UPDATE {table} AS t SET _line = _line + {shift} WHERE _load_id = ?",
                [first, load_id])
    for table in ("rejects", "rejected_rows"):
        run_sql(con, f"ingest: renumber {table} lines", f"UPDATE {table} AS t SET line = line + (SELECT count(*) FROM malformed_adj m WHERE m.a <= t.line - ?) "
                    "WHERE load_id = ?", [first, load_id])
    con.unregister("malformed_adj")


def _reject_duplicate_keys(con: duckdb.DuckDBPyConnection, load_id: str, extract: Extract, plan: PlannedFile) -> None:
    """Named step [one row per later duplicate of a natural key within this load]: the first line
    wins, later lines are quarantined with reason `duplicate_id`. A key that may repeat is left alone."""
    if not extract.has_unique_key:
        return
    table = q(src_table(extract))
    key = ", ".join(q(k) for k in extract.key)
    key_text = " || '|' || ".join(f"coalesce(CAST({q(k)} AS VARCHAR), '')" for k in extract.key)
    # Find repeated keys by hash aggregation first: a window over every row costs far more.
    run_sql(
        con, "ingest: find duplicate keys",
        f"""CREATE OR REPLACE TEMP TABLE dup_lines AS
        WITH repeated AS (
            SELECT {key} FROM {table} WHERE _load_id = ? GROUP BY {key} HAVING count(*) > 1)
        SELECT _line, {key_text} AS key_value, to_json(t) AS raw
        FROM (SELECT t.*, row_number() OVER (PARTITION BY {', '.join('t.' + q(k) for k in extract.key)} ORDER BY t._line)
                  AS occurrence
              FROM {table} t SEMI JOIN repeated r ON {' AND '.join(f't.{q(k)} IS NOT DISTINCT FROM r.{q(k)}' for k in extract.key)}
              WHERE t._load_id = ?) AS t
        WHERE occurrence > 1""",
        [load_id, load_id],
    )
    key_name = "+".join(extract.key)
    run_sql(
        con, "ingest: reject duplicate keys",
        """INSERT INTO rejects SELECT $load, $source, $file, _line, $key, key_value, $reason,
               replace(replace($template, '{column}', $key), '{value}', key_value)
           FROM dup_lines""",
        {"load": load_id, "source": extract.name, "file": plan.path.name, "key": key_name,
         "reason": RejectReason.DUPLICATE_ID.value, "template": RejectReason.DUPLICATE_ID.template},
    )
    run_sql(con, "ingest: quarantine duplicate rows", "INSERT INTO rejected_rows SELECT ?, ?, _line, raw FROM dup_lines",
            [load_id, extract.name])
    run_sql(con, "ingest: remove duplicate rows",
            f"DELETE FROM {table} WHERE _load_id = ? AND _line IN (SELECT _line FROM dup_lines)", [load_id])
    run_sql(con, "ingest: drop dup_lines", "DROP TABLE dup_lines")


def _forget_loads(con: duckdb.DuckDBPyConnection, load_ids: list[str]) -> None:
    """Remove every row of these loads: the warehouse holds what it held before they began."""
    if not load_ids:
        return
    with transaction(con):
        for extract in EXTRACTS.values():
            run_sql(con, f"forget loads: {src_table(extract)}",
                    f"DELETE FROM {q(src_table(extract))} WHERE list_contains(?, _load_id)", [load_ids])
        for table in ("rejects", "rejected_rows", "loads"):
            run_sql(con, f"forget loads: {table}", f"DELETE FROM {table} WHERE list_contains(?, load_id)", [load_ids])


def clean_unfinished_loads(con: duckdb.DuckDBPyConnection) -> list[str]:
    """A load that never finished (the process was killed) is removed before anything else."""
    stale = [r[0] for r in run_sql(con, "ingest: unfinished loads",
                                   "SELECT load_id FROM loads WHERE finished_at IS NULL").fetchall()]
    if stale:
        log.warning("removing %d unfinished load(s) left by an interrupted ingest", len(stale))
        _forget_loads(con, stale)
    return stale


def ingest(config: Config, progress: Progress | None = None, con: duckdb.DuckDBPyConnection | None = None) -> list[LoadResult]:
    """Load every new extract file into the warehouse; return one result per file.

    All or nothing: if any file fails part-way, the loads this command made are removed again.
    Files are read and validated in two worker threads, one stage each, while the main thread
    stores the batch before and finishes each file: the next file is read while the last is finished.
    """
    plans = plan_ingest(config)
    own = con is None
    con = con or connect(config)
    results: dict[int, LoadResult] = {}
    started: list[str] = []
    load: _FileLoad | None = None
    try:
        clean_unfinished_loads(con)
        new: list[PlannedFile] = []
        first_of: dict[str, int] = {}  # a load id -> the plan that loads it (the same file twice: once)
        for i, plan in enumerate(plans):
            done = run_sql(
                con, "ingest: file already loaded",
                "SELECT load_id, rows_read, rows_loaded, rows_rejected FROM loads WHERE source = ? AND sha256 = ?",
                [plan.extract.name, plan.sha256],
            ).fetchall()
            if done:
                log.info("%s (%s) already loaded as %s: skipped", plan.extract.name, plan.path.name, done[0][0])
                results[i] = LoadResult(plan.extract.name, plan.path.name, done[0][0], "unchanged", *done[0][1:])
            elif load_id_of(plan) not in first_of:
                first_of[load_id_of(plan)] = i
                new.append(plan)
        index_of = {id(plans[i]): i for i in first_of.values()}
        # closing(): after an error below, the workers stop at once, not when the traceback is freed
        with (tempfile.TemporaryDirectory(prefix="iom-ingest-") as tmp,
              contextlib.closing(_read_ahead(_read_files(new, Path(tmp)))) as read,
              contextlib.closing(_read_ahead(_check_files(read))) as checked):
            for plan, item in checked:
                if load is None:
                    started.append(load_id_of(plan))
                    load = _FileLoad(con, plan)
                if isinstance(item, _FileRead):
                    results[index_of[id(plan)]] = load.finish(item.malformed)
                    load = None
                else:
                    load.store(item, progress)
        for i, plan in enumerate(plans):  # a file given twice in one command: the second is unchanged
            if i not in results:
                first = results[first_of[load_id_of(plan)]]
                log.info("%s (%s) is the same file as %s: skipped", plan.extract.name, plan.path.name, first.file_name)
                results[i] = LoadResult(first.source, plan.path.name, first.load_id, "unchanged", first.rows_read,
                                        first.rows_loaded, first.rows_rejected)
    except BaseException:
        if load is not None and load.open:
            con.execute("ROLLBACK")
        _forget_loads(con, started)
        raise
    finally:
        if own:
            con.close()
    return [results[i] for i in range(len(plans))]
