"""Writers that append a block at a time, so memory does not grow with the number of people.

CSV files get their header once and are written in the extract's encoding; Parquet files get
one row group per block, all columns as text (as a force's export would). Writing a block at a
time gives the same bytes however many blocks are generated together.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from synthetic.formats import EXTRACT_FORMATS, GeneratedExtract

log = logging.getLogger(__name__)


class CsvWriter:
    def __init__(self, path: Path, encoding: str = "utf-8", delimiter: str = ",", date_format: str = "%Y-%m-%d",
                 columns: list[str] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encoding = encoding
        self.delimiter = delimiter
        self.date_format = date_format
        self.columns = columns
        self.rows = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._header = True
        if encoding == "utf-8-sig":
            self._fh.write(b"\xef\xbb\xbf")

    def write(self, df: pl.DataFrame) -> None:
        if self.columns is not None:
            df = df.select(self.columns)
        if df.height == 0 and not self._header:
            return
        if self.encoding == "cp1252":
            text = df.write_csv(None, include_header=self._header, separator=self.delimiter,
                                date_format=self.date_format)
            self._fh.write(text.encode("cp1252"))
        else:
            df.write_csv(self._fh, include_header=self._header, separator=self.delimiter, date_format=self.date_format)
        self._header = False
        self.rows += df.height

    def close(self) -> None:
        self._fh.close()


class ParquetWriter:
    def __init__(self, path: Path, columns: list[str], text: bool = True, date_format: str = "%Y-%m-%d") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = columns
        self.text = text
        self.date_format = date_format
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, df: pl.DataFrame) -> None:
        df = df.select(self.columns)
        if self.text:
            df = df.select([pl.col(c).dt.to_string(self.date_format) if df.schema[c] == pl.Date
                            else pl.col(c).cast(pl.String) for c in df.columns])
        table = df.to_arrow()
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self.path, self._schema, compression="zstd", write_statistics=False)
        self._writer.write_table(table.cast(self._schema))
        self.rows += df.height

    def close(self) -> None:
        if self._writer is None:  # nothing written: still a valid, empty file
            empty = pl.DataFrame({c: pl.Series([], dtype=pl.String) for c in self.columns}).to_arrow()
            pq.write_table(empty, self.path, compression="zstd")
        else:
            self._writer.close()


class ExtractWriter:
    """One extract in its force's shape: its own column names, encoding, delimiter, dates."""

    def __init__(self, name: str, out_dir: Path) -> None:
        self.name = name
        self.fmt = EXTRACT_FORMATS[name]
        self.path = (Path(out_dir) / self.fmt.file_name).resolve()
        self.to_file = {canonical: own for own, canonical in self.fmt.columns.items()}
        own = list(self.fmt.columns)
        if self.fmt.format == "parquet":
            self._out: CsvWriter | ParquetWriter = ParquetWriter(self.path, own, date_format=self.fmt.date_format)
        else:
            self._out = CsvWriter(self.path, self.fmt.encoding, self.fmt.delimiter, self.fmt.date_format, own)

    def write(self, df: pl.DataFrame) -> None:
        self._out.write(df.select([pl.col(c).alias(self.to_file[c]) for c in self.fmt.columns.values()]))

    def close(self) -> GeneratedExtract:
        self._out.close()
        log.info("wrote %s: %d rows to %s", self.name, self._out.rows, self.path.name)
        return GeneratedExtract(
            name=self.name, path=self.path, format=self.fmt.format, encoding=self.fmt.encoding,
            delimiter=self.fmt.delimiter, date_formats=[self.fmt.date_format], column_mapping=dict(self.fmt.columns),
            rows=self._out.rows,
        )
