"""Parquet tables (needs pyarrow): the chosen numeric columns as one matrix (``inspect``) or as
record batches of rows (``sample``), by the same column rules. A string column is refused,
never dropped."""

from __future__ import annotations

import numpy as np

from cond.errors import InputError
from cond.formats.columns import select_columns, table_stem
from cond.formats.entry import TensorEntry, unit_roundoff


def open_parquet(path, display):
    """``(ParquetFile, column names)``; pyarrow missing or a corrupt file is one InputError."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow: pip install 'cond[parquet]'", path=display) from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise InputError(f"not a valid Parquet file ({str(exc).splitlines()[0]})", path=display) from None
    return pf, list(pf.schema_arrow.names)


def check_numeric_columns(pf, indices, display):
    """Refuse a chosen Parquet column that is not a number (inspect and sample alike: a string
    column is never dropped silently)."""
    import pyarrow as pa

    for i in indices:
        field = pf.schema_arrow.field(i)
        if not (pa.types.is_floating(field.type) or pa.types.is_integer(field.type) or pa.types.is_boolean(field.type)):
            raise InputError(
                f"column '{field.name}' has type {field.type}, not numeric; choose numeric columns with --columns",
                path=display,
            )


def read_parquet_columns(batch, display, first_row=0):
    """A record batch or table of numeric columns as one float64 array (rows x columns); a null is
    a missing value, an InputError naming its row and column (the rule of every reader)."""
    columns = []
    for k in range(batch.num_columns):
        column = batch.column(k)
        if column.null_count:
            mask = np.asarray(column.is_null().to_numpy(zero_copy_only=False))
            row = first_row + int(np.flatnonzero(mask)[0])
            raise InputError(
                f"row {row} column '{batch.schema.field(k).name}' is a missing value (null); "
                "drop or impute missing values first",
                path=display,
            )
        columns.append(np.asarray(column.to_numpy(zero_copy_only=False), np.float64))
    return np.column_stack(columns)


def entries_of_parquet(path, display=None, columns=None):
    """One entry: the chosen numeric columns of a Parquet file (needs pyarrow)."""
    display = str(path) if display is None else display
    pf, names = open_parquet(path, display)
    use = select_columns(names, columns, display)
    check_numeric_columns(pf, use, display)

    def load():
        return read_parquet_columns(pf.read(columns=[names[i] for i in use]), display)

    kinds = {str(pf.schema_arrow.field(i).type) for i in use}
    dtype = kinds.pop() if len(kinds) == 1 else "mixed"
    widths = {"double": np.float64, "float": np.float32, "halffloat": np.float16}
    u = unit_roundoff(widths[dtype]) if dtype in widths else None
    yield TensorEntry(
        table_stem(display),
        (pf.metadata.num_rows, len(use)),
        dtype,
        display,
        u,
        None,
        load,
        columns=tuple(names[i] for i in use),
    )


def parquet_chunks(pf, names, display="<parquet>"):
    """Record batches of the named (numeric, checked) columns as float64 arrays."""

    def chunks(chunk_rows):
        start = 0
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=list(names)):
            yield read_parquet_columns(batch, display, start)
            start += batch.num_rows

    return chunks
