"""Storage: the InfluxDB writer, reader and bootstrap. Knows no exchange.

Public names:
- `read_from_influx(name, **params)`: a named query as a pandas DataFrame (notebooks, scripts);
- `raw_query(influxql, params)`: any read-only InfluxQL, user values bound as `$params`;
- `InfluxWriter`, `InfluxTarget`, `open_storage`: for the collector itself.
"""

from db.client import InfluxTarget
from db.reader import raw_query, read_from_influx
from db.storage import open_storage
from db.writer import InfluxWriter

__all__ = ["InfluxTarget", "InfluxWriter", "open_storage", "raw_query", "read_from_influx"]
