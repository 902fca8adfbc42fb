"""The `Settings` model: every setting of hyperflux, flat, typed and validated.

A field's name is its flat name (YAML section + "_" + key) and its environment variable is
"HYPERFLUX_" + the name upper-cased, e.g. `influx_batch_size` = `influx.batch_size` in YAML =
HYPERFLUX_INFLUX_BATCH_SIZE. One exception: `coins` (`hl.coins`) is HYPERFLUX_COINS. Each field
carries an `Expect` saying in words what is allowed; the loader puts it in error messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from config.values import (
    HLP_PARENT,
    HTTP_SCHEMES,
    WS_COIN_CHANNELS,
    WS_SCHEMES,
    check_url,
    is_loopback_url,
    parse_addresses,
    parse_channels,
    parse_coins,
    parse_retention,
    parse_shard,
    parse_size,
)
from utils.logging import MASK


@dataclass(frozen=True)
class Expect:
    """What a field allows, in words: the end of "... is not valid: expected <text>"."""

    text: str


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _on_off(value: Any) -> Any:
    """YAML reads `on`/`off`/`true` as booleans: map those back to "on"/"off"."""
    if isinstance(value, bool):
        return "on" if value else "off"
    value = _lower(value)
    return {"true": "on", "false": "off"}.get(value, value) if isinstance(value, str) else value


def _no_bool(value: Any) -> Any:
    """Refuse YAML's yes/no/on/off where a number is expected (pydantic would read 1/0)."""
    if isinstance(value, bool):
        raise ValueError("YAML reads yes, no, on, off, true, false as booleans")
    return value


def _shard(value: str) -> str:
    index, count = parse_shard(value)
    return f"{index}/{count}"


def _http_url(value: str) -> str:
    return check_url(value, HTTP_SCHEMES)


def _influx_url(value: str) -> str:
    try:
        return check_url(value, HTTP_SCHEMES)
    except ValueError as exc:
        if "user:password" in str(exc):
            raise ValueError(f"{exc}: set influx.username and influx.password") from None
        raise


def _ws_url(value: str) -> str:
    return check_url(value, WS_SCHEMES)


def _name(value: str) -> str:
    if not value or any(char.isspace() or char in "\"'\\" for char in value):
        raise ValueError("it is empty or has spaces, quotes or backslashes")
    return value


def _directory(value: Any) -> Any:
    if not isinstance(value, str | Path):
        return value  # pydantic reports the wrong type
    if not str(value).strip():
        raise ValueError("it is empty")
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError("it exists and is not a directory")
    return path


def _alerts(value: Any) -> Any:
    """The `alerts` section as a `process.alerts.rules.AlertsConfig` (None: no alerts).

    Imported when settings are validated, not with this module: `process` imports `config`."""
    from process.alerts.rules import parse_alerts

    return parse_alerts(value)


def _redis(value: Any) -> Any:
    """The `redis` section as a `process.outputs.redis_config.RedisConfig` (no URL: off)."""
    from process.outputs.redis_config import parse_redis

    return parse_redis(value)


def _evm(value: Any) -> Any:
    """The `evm` section as a `process.dex.config.EvmConfig` (no pools: the job is off)."""
    from process.dex.config import parse_evm

    return parse_evm(value)


HttpUrl = Annotated[str, AfterValidator(_http_url), Expect("an http:// or https:// URL")]
PositiveSeconds = Annotated[
    float,
    Field(gt=0, allow_inf_nan=False),
    BeforeValidator(_no_bool),
    Expect("a number of seconds greater than 0"),
]
PositiveInt = Annotated[
    int, Field(gt=0), BeforeValidator(_no_bool), Expect("an integer greater than 0")
]
OnOff = Annotated[Literal["on", "off"], BeforeValidator(_on_off), Expect("on or off")]

_INFLUX_URL = (
    "an http:// or https:// URL such as http://localhost:8086, or nothing for the embedded server"
)
_COINS = (
    "a comma-separated list of coin names such as BTC,ETH (letters, digits and @ : / . _ -),"
    " or nothing for all listed perps"
)


class Settings(BaseModel):
    """Validated settings; build them with `config.load_settings()`, which layers the sources.

    Constructing `Settings(...)` directly validates its arguments only (no environment, no file),
    which is what tests want. Paths are relative to the working directory.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"influx_password", "alerts", "evm", "redis"}
    )
    """Fields whose values are never shown (repr, `redacted()`, error messages). `alerts` holds
    webhook URLs and tokens, `evm` an RPC URL that may hold an API key, `redis` a URL that may
    hold a password: never echoed in an error; `redacted()` shows them with those masked."""

    influx_url: Annotated[
        Annotated[str, AfterValidator(_influx_url)] | None, Expect(_INFLUX_URL)
    ] = None
    influx_db: Annotated[
        str, AfterValidator(_name), Expect("a database name without spaces or quotes")
    ] = "hyperliquid"
    influx_username: Annotated[str | None, Expect("a string (quote it in YAML)")] = None
    influx_password: Annotated[SecretStr | None, Expect("a string (quote it in YAML)")] = None
    influx_timeout: PositiveSeconds = 10.0
    influx_gzip: Annotated[
        Literal["auto", "on", "off"], BeforeValidator(_on_off), Expect("one of auto, on, off")
    ] = "auto"
    influx_batch_size: PositiveInt = 5000
    influx_flush_interval: PositiveSeconds = 1.0
    influx_max_pending_points: PositiveInt = 200_000
    influx_retention: Annotated[
        str | None,
        BeforeValidator(parse_retention),
        Expect("empty, INF or an InfluxQL duration of at least 1h such as 90d, 12w or 720h"),
    ] = None
    influx_spool_max_bytes: Annotated[
        int,
        BeforeValidator(parse_size),
        Expect("a size in bytes greater than 0, such as 1073741824 or 1GiB"),
    ] = 1024**3
    influx_spool_full_policy: Annotated[
        Literal["drop_oldest", "drop_newest"],
        BeforeValidator(_lower),
        Expect("one of drop_oldest, drop_newest"),
    ] = "drop_oldest"

    hl_api_url: HttpUrl = "https://api.hyperliquid.xyz"
    hl_ws_url: Annotated[str, AfterValidator(_ws_url), Expect("a ws:// or wss:// URL")] = (
        "wss://api.hyperliquid.xyz/ws"
    )
    coins: Annotated[list[str], BeforeValidator(parse_coins), Expect(_COINS)] = []
    hl_ws_channels: Annotated[
        list[str],
        BeforeValidator(parse_channels),
        Expect(f"a comma list of WebSocket channels from {', '.join(WS_COIN_CHANNELS)}"),
    ] = []
    hl_ws_channel_coins: Annotated[list[str], BeforeValidator(parse_coins), Expect(_COINS)] = []
    hl_ws_connections: Annotated[
        int,
        Field(ge=1, le=10),
        BeforeValidator(_no_bool),
        Expect("an integer from 1 to 10 (the exchange allows 10 connections per IP)"),
    ] = 2
    hl_weight_budget: PositiveInt = 1200
    hl_weight_margin: Annotated[
        float,
        Field(ge=0, lt=0.9),
        BeforeValidator(_no_bool),
        Expect("a fraction from 0 to below 0.9, such as 0.1"),
    ] = 0.1
    hl_hlp_vault: Annotated[
        str,
        BeforeValidator(lambda v: parse_addresses([v]) and parse_addresses([v])[0]),
        Expect("a 0x address with 40 hex digits"),
    ] = HLP_PARENT
    hl_liquidators: Annotated[
        list[str],
        BeforeValidator(parse_addresses),
        Expect("a comma list of 0x addresses with 40 hex digits"),
    ] = ["0x2e3d94f0562703b25c83308a05046ddaf9a8dd14"]
    hl_book_interval: PositiveSeconds = 10.0
    """How often each coin's l2Book snapshot is stored as book_depth (and book_levels)."""
    hl_book_levels: Annotated[
        int,
        Field(ge=0, le=20),
        BeforeValidator(_no_bool),
        Expect("an integer from 0 (none) to 20 (the levels l2Book sends per side)"),
    ] = 0

    jobs_asset_ctx_interval: PositiveSeconds = 10.0
    jobs_hlp_interval: PositiveSeconds = 60.0
    jobs_universe_interval: PositiveSeconds = 3600.0
    jobs_positions_share: Annotated[
        float,
        Field(gt=0, le=1),
        BeforeValidator(_no_bool),
        Expect("a fraction above 0 and at most 1, such as 0.7"),
    ] = 0.7
    jobs_position_update_interval: PositiveSeconds = 5.0
    jobs_equity_update_interval: PositiveSeconds = 300.0
    jobs_inactive_days: Annotated[
        float, Field(gt=0), BeforeValidator(_no_bool), Expect("a number of days greater than 0")
    ] = 7.0
    jobs_shard: Annotated[
        str, AfterValidator(_shard), Expect("i/N with 0 <= i < N, such as 0/1 or 2/3")
    ] = "0/1"
    jobs_market_data: Annotated[
        Literal["auto", "on", "off"],
        BeforeValidator(_on_off),
        Expect("one of auto (only shard 0), on, off"),
    ] = "auto"

    profiles_enabled: OnOff = "on"
    profiles_interval: PositiveSeconds = 60.0
    profiles_per_run: PositiveInt = 5
    profiles_max_weight_per_run: PositiveInt = 120
    profiles_window_days: Annotated[
        float, Field(gt=0, le=365), BeforeValidator(_no_bool), Expect("days, above 0")
    ] = 7.0
    profiles_refresh_hours: Annotated[
        float, Field(gt=0), BeforeValidator(_no_bool), Expect("hours, above 0")
    ] = 6.0
    profiles_top_addresses: PositiveInt = 500
    profiles_rank_interval: PositiveSeconds = 300.0
    profiles_rank_top: Annotated[
        int, Field(gt=0, le=1000), BeforeValidator(_no_bool), Expect("an integer from 1 to 1000")
    ] = 50
    profiles_rank_bots: OnOff = "off"
    profiles_watch_max: Annotated[
        int, Field(ge=0), BeforeValidator(_no_bool), Expect("an integer >= 0 (0: off)")
    ] = 0
    profiles_watch_min_trades: Annotated[
        int, Field(ge=1), BeforeValidator(_no_bool), Expect("an integer >= 1")
    ] = 20
    profiles_watch_min_win_rate: Annotated[
        float, Field(ge=0, le=1), BeforeValidator(_no_bool), Expect("a fraction from 0 to 1")
    ] = 0.6
    profiles_watch_min_profit_factor: Annotated[
        float, Field(ge=0), BeforeValidator(_no_bool), Expect("a number >= 0")
    ] = 1.5

    engines_interval: PositiveSeconds = 10.0
    engines_heatmap_range: Annotated[
        float,
        Field(gt=0, lt=1),
        BeforeValidator(_no_bool),
        Expect("a fraction above 0 and below 1, such as 0.15 (mark +/- 15 %)"),
    ] = 0.15
    engines_heatmap_store_interval: PositiveSeconds = 60.0
    engines_heatmap_exclude_bots: OnOff = "off"
    engines_heatmap_min_size_usd: Annotated[
        float, Field(ge=0), BeforeValidator(_no_bool), Expect("a number of USD >= 0")
    ] = 1000.0
    engines_positions_cutoff_minutes: Annotated[
        float, Field(gt=0), BeforeValidator(_no_bool), Expect("a number of minutes > 0")
    ] = 20.0
    engines_order_flow_recompute_minutes: Annotated[
        int, Field(ge=1, le=1440), BeforeValidator(_no_bool), Expect("an integer from 1 to 1440")
    ] = 10

    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        BeforeValidator(_upper),
        Expect("one of DEBUG, INFO, WARNING, ERROR"),
    ] = "INFO"
    log_format: Annotated[
        Literal["auto", "color", "plain", "json"],
        BeforeValidator(_lower),
        Expect("one of auto, color, plain, json"),
    ] = "auto"

    data_dir: Annotated[Path, BeforeValidator(_directory), Expect("a directory path")] = Path(
        "data"
    )
    metrics_port: Annotated[
        int, Field(ge=0, le=65535), BeforeValidator(_no_bool), Expect("an integer from 0 to 65535")
    ] = 9108

    watchlist: Annotated[
        list[str],
        BeforeValidator(parse_addresses),
        Expect("a comma list of 0x addresses with 40 hex digits"),
    ] = []
    """Watched besides those of `python main.py watch add` (data/watchlist.sqlite)."""

    alerts: Annotated[
        Any,  # a process.alerts.rules.AlertsConfig, never None (see _alerts)
        Field(validate_default=True),
        BeforeValidator(_alerts),
        Expect(
            "an alerts section of rules (a list), targets (name: target) and delivery settings"
            " (in the environment: the same as one JSON object)"
        ),
    ] = None
    redis: Annotated[
        Any,  # a process.outputs.redis_config.RedisConfig, never None (see _redis)
        Field(validate_default=True),
        BeforeValidator(_redis),
        Expect(
            "a redis section of url, channel_prefix, events, streams and delivery settings"
            " (in the environment: the same as one JSON object)"
        ),
    ] = None
    evm: Annotated[
        Any,  # a process.dex.config.EvmConfig, never None (see _evm)
        Field(validate_default=True),
        BeforeValidator(_evm),
        Expect(
            "an evm section of rpc_url, pools (a list of {address, kind: v2|v3|algebra, label})"
            " and polling settings (in the environment: the same as one JSON object)"
        ),
    ] = None

    @property
    def spool_dir(self) -> Path:
        """Batches InfluxDB could not take yet, replayed oldest-first."""
        return self.data_dir / "spool"

    @property
    def quarantine_dir(self) -> Path:
        """Input records that failed validation, with the reason."""
        return self.data_dir / "quarantine"

    @property
    def dead_letter_dir(self) -> Path:
        """Lines InfluxDB rejected for good (the bad part of a 400 partial write)."""
        return self.data_dir / "dead_letter"

    def influx_gzip_enabled(self, url: str | None = None) -> bool:
        """Whether to gzip writes to `url` (default: `influx_url`; None = the embedded server).

        "auto" compresses only for remote servers: over loopback gzip costs more than it saves.
        """
        if self.influx_gzip != "auto":
            return self.influx_gzip == "on"
        url = url or self.influx_url
        return url is not None and not is_loopback_url(url)

    def redacted(self) -> dict[str, Any]:
        """Every setting by flat name, JSON-ready, with secrets shown as `***`."""
        data = self.model_dump(mode="json")
        for name in self.SECRET_FIELDS - {"alerts", "evm", "redis"}:  # secrets are SecretStr
            if data[name] is not None:
                data[name] = MASK
        return data

    @classmethod
    def expected(cls, field: str) -> str:
        """What `field` allows, in words."""
        for item in cls.model_fields[field].metadata:
            if isinstance(item, Expect):
                return item.text
        raise LookupError(f"Settings.{field} has no Expect")
