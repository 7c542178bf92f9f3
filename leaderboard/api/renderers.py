"""CSV and Parquet renderers for tables (the leaderboard and per-sample results).

Both take a list of flat dicts (one per row) or a pandas DataFrame. An error
envelope reaching the CSV renderer becomes a one-row table of code and message,
so a client that asked for CSV still reads why the request failed.
"""

from __future__ import annotations

import csv
import io

import pandas as pd
from rest_framework.renderers import BaseRenderer


def _frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict) and "error" in data:
        error = data["error"]
        return pd.DataFrame([{"error_code": error.get("code"), "error_message": error.get("message")}])
    if isinstance(data, dict):
        data = [data]
    return pd.DataFrame(list(data or []))


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        buffer = io.StringIO()
        _frame(data).to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        return buffer.getvalue().encode(self.charset)


class ParquetRenderer(BaseRenderer):
    media_type = "application/vnd.apache.parquet"
    format = "parquet"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        buffer = io.BytesIO()
        _frame(data).to_parquet(buffer, index=False)
        return buffer.getvalue()
