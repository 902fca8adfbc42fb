"""Grafana dashboards as code: every panel query runs against data from a simulator run.

Each dashboard JSON in config/grafana/dashboards/ is checked for structure (unique panel ids,
the `datasource` variable everywhere, a `coin` variable, units in titles, contract names, every
query within the time picker's range, a "Data freshness" row covering every measurement read),
and every panel target's raw InfluxQL is filled in as Grafana would fill it (`$timeFilter`,
`${__from}` / `${__to}`, `$__interval`, `$coin`, other variables at their current value) and run
against a real influxd holding what `python main.py run` collected from the simulator and
`python main.py backfill` added: each must return rows, and every column it selects must have a
value somewhere; each freshness panel must show its measurement's newest point. The liquidation
heatmap panel is checked for the shape Grafana's heatmap needs (one series per price level, named
by a numeric level, values carried forward), and its newest column against the `liq_heatmap`
named query.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from config.loader import load_settings, unknown_env_vars
from db import InfluxTarget, read_from_influx
from db.schema import (
    BBO,
    BOOK_DEPTH,
    CANDLES,
    FUNDING,
    LIQ_LEVELS,
    LIQ_LEVELS_KEYFRAME_MINUTES,
    MEASUREMENTS,
    PIPELINE_HEALTH,
)
from tests.data_run import ENGINE_MEASUREMENTS, DataRun, data_run  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "config" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "hyperflux.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "hyperflux.yaml"

DATASOURCE = {"type": "influxdb", "uid": "${datasource}"}
"""How every panel, target, variable and annotation names its data source: the variable."""
COIN_QUERY = 'SHOW TAG VALUES FROM "asset_ctx" WITH KEY = "coin"'
COIN_FILTER = '"coin" =~ /^$coin$/'
CANDLE_INTERVAL_QUERY = 'SHOW TAG VALUES FROM "candles" WITH KEY = "interval"'
TIME_FILTER = "time > now() - 3h"
RANGE_MS = 3 * 3_600_000
"""The time range the tests select: the last 3 hours, as `$timeFilter` and `${__from}`/`${__to}`
(it holds the data run's newest hourly candle and funding settlement, 1-2 h old)."""
INTERVAL = "10s"
BUILTINS = {"timeFilter": TIME_FILTER, "__interval": INTERVAL, "__interval_ms": "10000"}
"""Grafana's own variables, as the tests fill them in (`__from`, `__to`: at render time)."""
RANGE_BOUNDS = re.compile(r"time >= \$\{__(from|to)\}ms - \d+m AND time <= \$\{__to\}ms(?![\w$])")
"""The other bounded form: the time range's edges in epoch ms, the lower one moved back (a
measurement written when it changes needs its previous value from before the range)."""

FRESHNESS_ROW = "Data freshness"
FRESHNESS_QUERY = re.compile(r'^SELECT last\("(\w+)"\) FROM "(\w+)" WHERE .*\$timeFilter$')
"""A freshness panel's query: the newest point of one measurement in the range (a selector
without GROUP BY time returns the point's own time, which the panel shows as its age)."""
FRESHNESS_HINTS = {
    CANDLES.name: "python main.py backfill",
    FUNDING.name: "python main.py backfill",
    BOOK_DEPTH.name: "hl.ws_channels",
    BBO.name: "hl.ws_channels",
    "dex_": "evm section",
}
"""What a freshness panel's description says to do when its measurement has no points (by
measurement name or prefix); every other one asks whether the collector runs."""

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_UNIT_IN_TITLE = re.compile(r"\(.+\)")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def datasource() -> dict[str, Any]:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return source


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def freshness_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels of the "Data freshness" row: those after it up to the next row."""
    top = dashboard["panels"]
    (start,) = [i for i, p in enumerate(top) if p["type"] == "row" and p["title"] == FRESHNESS_ROW]
    end = next((i for i in range(start + 1, len(top)) if top[i]["type"] == "row"), len(top))
    return top[start + 1 : end]


def datasource_refs(node: Any) -> list[dict[str, Any]]:
    """Every `datasource` object anywhere in a dashboard (panels, targets, variables,
    annotations)."""
    if isinstance(node, list):
        return [ref for item in node for ref in datasource_refs(item)]
    if not isinstance(node, dict):
        return []
    refs = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
    return refs + [ref for value in node.values() for ref in datasource_refs(value)]


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    ref: str
    query: str
    variables: dict[str, str]
    """The dashboard's variables at their current values (`coin` is chosen from the data)."""
    panel_type: str
    row: str
    """The title of the row the panel is in ("" above the first row)."""

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.panel} [{self.ref}]"

    @property
    def measurements(self) -> set[str]:
        return set(re.findall(r'FROM\s+"(\w+)"', self.query))

    @property
    def freshness(self) -> bool:
        return self.panel_type == "stat" and self.row == FRESHNESS_ROW

    def render(self, coin: str) -> str:
        """The query as Grafana sends it, `$coin` set to `coin` (a value of plain letters, which
        Grafana's regex escaping leaves as it is)."""
        now_ms = time.time_ns() // 1_000_000
        edges = {"__from": str(now_ms - RANGE_MS), "__to": str(now_ms)}
        values = {**BUILTINS, **edges, **self.variables, "coin": coin}

        def fill(match: re.Match[str]) -> str:
            name = next(g for g in match.groups() if g)
            if name not in values:
                raise AssertionError(f"{self}: unknown variable ${name} in {self.query}")
            return values[name]

        return _VARIABLE.sub(fill, self.query)


def current(variable: dict[str, Any]) -> str:
    value = variable.get("current", {}).get("value", "")
    return value[0] if isinstance(value, list) else value


def targets(kind: str | None = None) -> list[Target]:
    """Every panel target, or those of the panels of one type (e.g. "heatmap")."""
    found = []
    for path in DASHBOARDS:
        dashboard = load(path)
        variables = {v["name"]: current(v) for v in dashboard["templating"]["list"]}
        row = ""
        for panel in panels(dashboard):
            if panel["type"] == "row":
                row = panel["title"]
            if kind is not None and panel["type"] != kind:
                continue
            for target in panel.get("targets", []):
                found.append(
                    Target(
                        path.stem,
                        panel["title"],
                        target["refId"],
                        target["query"],
                        variables,
                        panel["type"],
                        row,
                    )
                )
    return found


TARGETS = targets()
LIQUIDATIONS_DASHBOARD = GRAFANA / "dashboards" / "liquidations.json"


def run_series(run: DataRun, influxql: str) -> list[dict[str, Any]]:
    """The series of one statement as InfluxDB returns them; AssertionError on an error."""
    response = httpx.post(
        f"{run.url}/query", data={"q": influxql, "db": run.db, "epoch": "ms"}, timeout=30
    )
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert "error" not in result, result["error"]
    return result.get("series", [])


def run_query(run: DataRun, influxql: str) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows over every series) of one statement; AssertionError on an error."""
    columns: list[str] = []
    rows: list[list[Any]] = []
    for series in run_series(run, influxql):
        columns = series["columns"]
        rows.extend(series["values"])
    return columns, rows


# --- structure ----------------------------------------------------------------------------


def test_there_is_a_dashboard_for_each_topic():
    titles = {load(path)["title"] for path in DASHBOARDS}
    assert titles == {
        "hyperflux: Market",
        "hyperflux: Liquidations",
        "hyperflux: Positioning and whales",
        "hyperflux: HLP",
        "hyperflux: Pipeline health",
        "hyperflux: Smart money",
        "hyperflux: DEX pools",
    }
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)


def test_the_datasource_is_influxql_on_the_configured_influxdb():
    provisioned = yaml.safe_load(DATASOURCES.read_text())
    assert provisioned["apiVersion"] == 1
    source = datasource()
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["url"] == "${HYPERFLUX_INFLUX_URL}"
    assert source["user"] == "${HYPERFLUX_INFLUX_USERNAME}"
    assert source["secureJsonData"]["password"] == "${HYPERFLUX_INFLUX_PASSWORD}"
    assert source["jsonData"]["dbName"] == "${HYPERFLUX_INFLUX_DB}"


def test_the_datasource_reads_the_collectors_own_variables():
    """One environment serves the collector and Grafana: every variable the data source reads
    is a collector setting, and the database one is the collector's database."""
    names = set(re.findall(r"\$\{(\w+)\}", DATASOURCES.read_text()))
    assert {"HYPERFLUX_INFLUX_URL", "HYPERFLUX_INFLUX_DB"} <= names
    assert unknown_env_vars(dict.fromkeys(names, "x")) == []
    assert load_settings(env={"HYPERFLUX_INFLUX_DB": "hyperflux_demo"}).influx_db == (
        "hyperflux_demo"
    )


def test_the_dashboard_provider_loads_the_dashboards_folder():
    provisioned = yaml.safe_load(PROVIDERS.read_text())
    (provider,) = provisioned["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${HYPERFLUX_GRAFANA_DASHBOARDS}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path):
    dashboard = load(path)
    assert dashboard["schemaVersion"] >= 39  # Grafana 10.4 and later
    assert dashboard["uid"].startswith("hyperflux-")
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"

    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    # the data source is a variable, the first (the others query it), defaulting to the
    # provisioned one: any InfluxDB data source can be picked, whatever its database
    source = dashboard["templating"]["list"][0]
    assert source["name"] == "datasource" and source["type"] == "datasource"
    assert source["query"] == "influxdb"
    assert source["current"]["value"] == datasource()["uid"]
    influx = [r for r in datasource_refs(dashboard) if r["type"] != "grafana"]  # grafana: built-in
    assert influx and all(r == DATASOURCE for r in influx), path.name

    coin = variables["coin"]
    assert coin["type"] == "query"
    assert coin["datasource"] == DATASOURCE
    assert coin["query"] == COIN_QUERY
    assert not coin["multi"] and not coin["includeAll"]

    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert _UNIT_IN_TITLE.search(title), f"{title!r}: say the unit in the title"
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            assert target["rawQuery"] is True, title
            assert target["resultFormat"] in ("time_series", "table"), title


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_follows_the_time_picker(path: Path):
    """Panel targets and annotations read the selected time range: `$timeFilter`, or its edges
    `${__from}`/`${__to}` (RANGE_BOUNDS); never a window of their own before now()."""
    dashboard = load(path)
    queries = [t["query"] for p in panels(dashboard) for t in p.get("targets", [])]
    queries += [a["query"] for a in dashboard["annotations"]["list"] if "query" in a]
    assert queries
    for query in queries:
        assert query.startswith("SELECT "), query
        assert "$timeFilter" in query or RANGE_BOUNDS.search(query), query
        assert "now()" not in query, query


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_a_freshness_row_shows_the_newest_point_of_every_measurement_read(path: Path):
    """At the top, a stat per measurement the other panels read, showing how long ago its newest
    point in the range was stamped; empty, it says "no points", and its description what to
    do. A row follows, so collapsing the freshness row hides only its own panels."""
    dashboard = load(path)
    top = dashboard["panels"]
    assert top[0]["type"] == "row" and top[0]["title"] == FRESHNESS_ROW
    assert top[0]["gridPos"]["y"] == 0 and not top[0]["collapsed"]
    shown = freshness_panels(dashboard)
    assert top[len(shown) + 1]["type"] == "row"
    read = {
        m for t in TARGETS if t.dashboard == path.stem and not t.freshness for m in t.measurements
    }
    fresh = []
    for panel in shown:
        assert panel["type"] == "stat", panel["title"]
        (target,) = panel["targets"]
        match = FRESHNESS_QUERY.match(target["query"])
        assert match, target["query"]
        measurement = match[2]
        fresh.append(measurement)
        if "coin" in MEASUREMENTS[measurement].tags:
            assert COIN_FILTER in target["query"], target["query"]
        assert panel["title"].startswith(measurement)
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["unit"] == "dateTimeFromNow"
        assert defaults["noValue"] == "no points"
        assert panel["options"]["reduceOptions"]["fields"] == "/^Time$/"
        description = panel["description"]
        assert '"no points"' in description
        hint = next(
            (h for name, h in FRESHNESS_HINTS.items() if measurement.startswith(name)),
            "python main.py run",
        )
        assert hint in description, (measurement, description)
    assert len(fresh) == len(set(fresh))
    assert set(fresh) == read


def test_the_market_dashboard_draws_candles_and_settled_funding():
    """Candles of the coin at a stored interval (`candle_interval`: the interval tags), and the
    settled funding rates, both from `python main.py backfill`."""
    dashboard = load(GRAFANA / "dashboards" / "market.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    interval = variables["candle_interval"]
    assert interval["type"] == "query" and interval["query"] == CANDLE_INTERVAL_QUERY
    assert interval["datasource"] == DATASOURCE
    assert current(interval) == "1h"  # the backfill's default
    (candles,) = [p for p in panels(dashboard) if p["type"] == "candlestick"]
    (target,) = candles["targets"]
    assert target["resultFormat"] == "table"  # one frame: time, open, high, low, close, volume
    assert f'FROM "{CANDLES.name}"' in target["query"]
    assert "\"interval\" = '$candle_interval'" in target["query"]
    assert candles["options"]["mode"] == "candles+volume"
    funding = [
        p
        for p in panels(dashboard)
        if any(f'FROM "{FUNDING.name}"' in t["query"] for t in p.get("targets", []))
        and p["type"] == "timeseries"
    ]
    assert len(funding) == 1


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_query_follows_the_contract(target: Target):
    """Measurement, tag and field names as in db/schema.py; `$coin` the standard way; every
    query bounded in time."""
    query = target.query
    assert query.count("$coin") == query.count(COIN_FILTER), f"use {COIN_FILTER}: {query}"
    assert "$timeFilter" in query or RANGE_BOUNDS.search(query), query
    assert "__from" not in query.replace("${__from}ms", ""), f"use ${{__from}}ms: {query}"
    assert "__to" not in query.replace("${__to}ms", ""), f"use ${{__to}}ms: {query}"
    assert target.measurements and target.measurements <= set(MEASUREMENTS), query
    if PIPELINE_HEALTH.name in target.measurements:
        return  # its fields are the collector's metric names; the data test checks them
    aliases = set(re.findall(r'AS\s+"([^"]+)"', query))
    names = set(re.findall(r'"([^"]+)"', query)) - aliases - target.measurements
    known = {c for m in target.measurements for c in MEASUREMENTS[m].columns}
    assert names <= known, f"not in the measurement contract: {sorted(names - known)}"


# --- every query against data ---------------------------------------------------------------


def test_the_coin_variable_lists_the_run_coins(data_run: DataRun):  # noqa: F811
    columns, rows = run_query(data_run, COIN_QUERY)
    assert columns == ["key", "value"]
    assert data_run.coin in {value for _, value in rows}


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_panel_query_returns_rows(target: Target, data_run: DataRun):  # noqa: F811
    if target.dashboard == "dex":
        pytest.skip("the simulator has no EVM: tests/test_evm_job.py runs these on anvil data")
    query = target.render(data_run.coin)
    columns, rows = run_query(data_run, query)
    if not rows and (empty := sorted(target.measurements - data_run.measurements)):
        engines = " (engine not wired yet?)" if set(empty) <= ENGINE_MEASUREMENTS else ""
        pytest.fail(f"{target}: no rows: {', '.join(empty)} has no points{engines}", pytrace=False)
    assert rows, f"{target}: no rows for {query}"
    for i, column in enumerate(columns):
        assert any(row[i] is not None for row in rows), f"{target}: {column!r} has no value"


FRESHNESS_TARGETS = [t for t in TARGETS if t.freshness and t.dashboard != "dex"]


@pytest.mark.parametrize("target", FRESHNESS_TARGETS, ids=str)
def test_a_freshness_panel_shows_the_time_of_the_newest_point(target: Target, data_run: DataRun):  # noqa: F811
    """The time a freshness query returns (what the panel shows as an age) is the stamp of the
    newest point it filters, not an edge of the range."""
    query = target.render(data_run.coin)
    columns, rows = run_query(data_run, query)
    assert columns[0] == "time" and len(rows) == 1, (query, rows)
    field = FRESHNESS_QUERY.match(target.query)[1]  # type: ignore[index]
    newest = query.replace(f'last("{field}")', f'"{field}"') + " ORDER BY time DESC LIMIT 1"
    _, points = run_query(data_run, newest)
    assert rows[0][0] == points[0][0], (query, newest)
    age_s = time.time() - rows[0][0] / 1000
    assert 0 <= age_s < RANGE_MS / 1000


# --- the liquidation heatmap ----------------------------------------------------------------


def liquidation_panels(kind: str) -> list[dict[str, Any]]:
    return [p for p in panels(load(LIQUIDATIONS_DASHBOARD)) if p["type"] == kind]


def test_the_liquidation_heatmap_takes_its_rows_from_the_price_levels():
    """Grafana's heatmap draws precomputed buckets (calculate off) from time series: one series
    per row, named by the alias; numeric names are sorted as numbers. So: one series per level,
    named by the level tag (its lower edge: layout ge), each level's value carried forward."""
    (panel,) = liquidation_panels("heatmap")
    options = panel["options"]
    assert options["calculate"] is False
    assert options["rowsFrame"]["layout"] == "ge"
    assert "unit" not in options["yAxis"]  # the row labels are the level tags as written
    assert options["filterValues"]["le"] > 0  # an empty level leaves its cell blank
    (target,) = panel["targets"]
    assert target["resultFormat"] == "time_series"
    assert target["alias"] == "$tag_level"
    query = target["query"]
    assert f'FROM "{LIQ_LEVELS.name}"' in query
    assert (
        f"time >= ${{__from}}ms - {LIQ_LEVELS_KEYFRAME_MINUTES}m " in query
    )  # a keyframe interval before the range
    assert query.endswith('GROUP BY time($__interval), "level" fill(previous)')


def test_the_mark_price_is_drawn_under_the_heatmap_on_the_same_time_axis():
    """A heatmap panel cannot draw a line over its cells, so the mark price is a time series
    right under it: same left edge, width and y-axis width, so the time axes line up."""
    (heatmap,) = liquidation_panels("heatmap")
    box = heatmap["gridPos"]
    (mark,) = [
        p
        for p in panels(load(LIQUIDATIONS_DASHBOARD))
        if p["gridPos"]["y"] == box["y"] + box["h"] and p["gridPos"]["x"] == box["x"]
    ]
    assert mark["type"] == "timeseries"
    assert mark["gridPos"]["w"] == box["w"]
    assert '"mark_px"' in mark["targets"][0]["query"]
    axis_width = mark["fieldConfig"]["defaults"]["custom"]["axisWidth"]
    assert axis_width == heatmap["options"]["yAxis"]["axisWidth"]


def newest_levels(run: DataRun) -> dict[str, tuple[float, float, float]]:
    """The `liq_heatmap` named query: level -> (price, long USD, short USD)."""
    frame = read_from_influx("liq_heatmap", target=InfluxTarget(run.url, run.db), asset=run.coin)
    assert not frame.empty, f"no liquidation levels for {run.coin}"
    return {
        row.level: (row.price, row.long_liq_usd, row.short_liq_usd) for row in frame.itertuples()
    }


def test_the_heatmap_query_returns_one_filled_series_per_level(data_run: DataRun):  # noqa: F811
    (target,) = targets("heatmap")
    series = run_series(data_run, target.render(data_run.coin))
    assert series, f"{target}: no levels"
    levels = [s["tags"]["level"] for s in series]
    assert all(set(s["tags"]) == {"level"} for s in series), series[0]["tags"]
    assert len(set(levels)) == len(levels)
    assert all(math.isfinite(float(level)) and float(level) > 0 for level in levels)
    times = [[row[0] for row in s["values"]] for s in series]
    assert all(t == times[0] for t in times)  # the same intervals for every level: one grid
    for s in series:
        values = [row[1] for row in s["values"]]
        first = next((i for i, v in enumerate(values) if v is not None), None)
        assert first is not None, f"level {s['tags']['level']}: no value"
        assert None not in values[first:], f"level {s['tags']['level']}: not carried forward"

    # the newest column is the newest picture: what the liq_heatmap named query returns
    newest = newest_levels(data_run)
    drawn = {s["tags"]["level"]: s["values"][-1][1] for s in series}
    assert {level for level, usd in drawn.items() if usd} == set(newest)
    for level, (price, long_usd, short_usd) in newest.items():
        assert float(level) == price
        assert drawn[level] == pytest.approx(long_usd + short_usd)


def test_the_latest_levels_chart_shows_the_newest_non_empty_levels(data_run: DataRun):  # noqa: F811
    (target,) = [t for t in targets("barchart") if LIQ_LEVELS.name in t.measurements]
    series = run_series(data_run, target.render(data_run.coin))
    chart = {}
    for s in series:
        row = dict(zip(s["columns"], s["values"][-1], strict=True))
        assert len(s["values"]) == 1, s
        chart[s["tags"]["level"]] = (
            row["price"],
            row["longs liquidated"],
            row["shorts liquidated"],
        )
    newest = newest_levels(data_run)
    assert list(chart) and set(chart) == set(newest)
    for level, figures in newest.items():
        assert chart[level] == pytest.approx(figures), level
