"""Storage: the InfluxDB writer, reader and bootstrap. Knows no exchange.

Public names:
- `read_from_influx(name, **params)`: a named query as a pandas DataFrame (notebooks, scripts);
- `raw_query(influxql, params)`: any read-only InfluxQL, user values bound as `$params`;
- `InfluxWriter`, `InfluxTarget`, `open_storage`: for the collector itself. The writer is a
  queue (`db.write_queue`) and a protocol client (`db.sender`); `open_storage` starts even while
  InfluxDB is down (points go to the spool until it answers).
"""

from db.client import InfluxTarget
from db.reader import raw_query, read_from_influx
from db.storage import open_storage
from db.writer import InfluxWriter

__all__ = ["InfluxTarget", "InfluxWriter", "open_storage", "raw_query", "read_from_influx"]
