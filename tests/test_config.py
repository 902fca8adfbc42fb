"""Settings: defaults < user YAML < environment, and one-line errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from config import DEFAULTS_FILE, KEYS, Settings, load_settings, unknown_env_vars
from utils.errors import ConfigError

PASSWORD = "pa55-Wörd:with@odd/chars"


def write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(config_file: Path | None = None, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, env=env)
    message = str(info.value)
    assert "\n" not in message
    return message


# Defaults


def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings.influx_url is None
    assert settings.influx_db == "hyperliquid"
    assert settings.influx_username is None
    assert settings.influx_password is None
    assert settings.influx_timeout == 10.0
    assert settings.influx_gzip == "auto"
    assert settings.influx_batch_size == 5000
    assert settings.influx_flush_interval == 1.0
    assert settings.influx_retention is None
    assert settings.influx_spool_max_bytes == 1073741824
    assert settings.influx_spool_full_policy == "drop_oldest"
    assert settings.hl_api_url == "https://api.hyperliquid.xyz"
    assert settings.hl_ws_url == "wss://api.hyperliquid.xyz/ws"
    assert settings.coins == []
    assert settings.log_level == "INFO"
    assert settings.log_format == "auto"
    assert settings.data_dir == Path("data")
    assert settings.metrics_port == 9108
    assert settings.spool_dir == Path("data/spool")
    assert settings.quarantine_dir == Path("data/quarantine")
    assert settings.dead_letter_dir == Path("data/dead_letter")


def test_default_yaml_lists_every_key_with_the_model_defaults() -> None:
    document = yaml.safe_load(DEFAULTS_FILE.read_text())
    paths = {
        f"{name}.{key}" if isinstance(value, dict) else name
        for name, value in document.items()
        for key in (value if isinstance(value, dict) else [None])
    }
    assert paths == set(KEYS)
    assert load_settings(env={}) == Settings()


def test_explicit_env_mapping_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HYPERFLUX_METRICS_PORT", "1234")
    assert load_settings(env={}).metrics_port == 9108
    assert load_settings().metrics_port == 1234


def test_settings_are_immutable() -> None:
    settings = load_settings(env={})
    with pytest.raises(ValidationError):
        settings.metrics_port = 1  # type: ignore[misc]


# Environment variables


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        (
            "HYPERFLUX_INFLUX_URL",
            "http://influx.example:8086",
            "influx_url",
            "http://influx.example:8086",
        ),
        (
            "HYPERFLUX_INFLUX_URL",
            "https://influx.example/base/",
            "influx_url",
            "https://influx.example/base",
        ),
        ("HYPERFLUX_INFLUX_DB", "market", "influx_db", "market"),
        ("HYPERFLUX_INFLUX_USERNAME", "collector", "influx_username", "collector"),
        ("HYPERFLUX_HL_API_URL", "http://127.0.0.1:9000", "hl_api_url", "http://127.0.0.1:9000"),
        ("HYPERFLUX_HL_WS_URL", "ws://127.0.0.1:9000/ws", "hl_ws_url", "ws://127.0.0.1:9000/ws"),
        ("HYPERFLUX_DATA_DIR", "/var/lib/hyperflux", "data_dir", Path("/var/lib/hyperflux")),
        ("HYPERFLUX_COINS", "BTC,ETH", "coins", ["BTC", "ETH"]),
        ("HYPERFLUX_HL_COINS", "SOL", "coins", ["SOL"]),
        ("HYPERFLUX_METRICS_PORT", "0", "metrics_port", 0),
        ("HYPERFLUX_METRICS_PORT", "65535", "metrics_port", 65535),
        ("HYPERFLUX_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("HYPERFLUX_LOG_LEVEL", "Warning", "log_level", "WARNING"),
        ("HYPERFLUX_LOG_FORMAT", "JSON", "log_format", "json"),
        ("HYPERFLUX_INFLUX_TIMEOUT", "2.5", "influx_timeout", 2.5),
        ("HYPERFLUX_INFLUX_GZIP", "off", "influx_gzip", "off"),
        ("HYPERFLUX_INFLUX_GZIP", "true", "influx_gzip", "on"),
        ("HYPERFLUX_INFLUX_BATCH_SIZE", "10000", "influx_batch_size", 10000),
        ("HYPERFLUX_INFLUX_FLUSH_INTERVAL", "0.25", "influx_flush_interval", 0.25),
        ("HYPERFLUX_INFLUX_MAX_PENDING_POINTS", "50000", "influx_max_pending_points", 50_000),
        ("HYPERFLUX_INFLUX_RETENTION", "90d", "influx_retention", "90d"),
        ("HYPERFLUX_INFLUX_RETENTION", "1w3d", "influx_retention", "1w3d"),
        ("HYPERFLUX_INFLUX_RETENTION", "inf", "influx_retention", "INF"),
        ("HYPERFLUX_INFLUX_SPOOL_MAX_BYTES", "5000000", "influx_spool_max_bytes", 5_000_000),
        ("HYPERFLUX_INFLUX_SPOOL_MAX_BYTES", "512MiB", "influx_spool_max_bytes", 512 * 1024**2),
        ("HYPERFLUX_INFLUX_SPOOL_MAX_BYTES", "2 GB", "influx_spool_max_bytes", 2_000_000_000),
        (
            "HYPERFLUX_INFLUX_SPOOL_FULL_POLICY",
            "drop_newest",
            "influx_spool_full_policy",
            "drop_newest",
        ),
        ("HYPERFLUX_HL_WS_CHANNELS", "l2Book, bbo", "hl_ws_channels", ["l2Book", "bbo"]),
        ("HYPERFLUX_HL_WEIGHT_BUDGET", "600", "hl_weight_budget", 600),
        ("HYPERFLUX_HL_WEIGHT_MARGIN", "0.25", "hl_weight_margin", 0.25),
        ("HYPERFLUX_HL_HLP_VAULT", "0x" + "AB" * 20, "hl_hlp_vault", "0x" + "ab" * 20),
        (
            "HYPERFLUX_HL_LIQUIDATORS",
            "0x" + "1" * 40 + ",0x" + "2" * 40,
            "hl_liquidators",
            ["0x" + "1" * 40, "0x" + "2" * 40],
        ),
    ],
)
def test_env_var_overrides_default(name: str, value: str, field: str, expected: object) -> None:
    assert getattr(load_settings(env={name: value}), field) == expected


def test_env_password_is_a_secret() -> None:
    settings = load_settings(env={"HYPERFLUX_INFLUX_PASSWORD": PASSWORD})
    assert settings.influx_password is not None
    assert settings.influx_password.get_secret_value() == PASSWORD


def test_every_key_has_the_env_var_the_naming_rule_gives() -> None:
    names = {key.yaml_path: key.env_names for key in KEYS.values()}
    assert names["influx.batch_size"] == ("HYPERFLUX_INFLUX_BATCH_SIZE",)
    assert names["log.level"] == ("HYPERFLUX_LOG_LEVEL",)
    assert names["data_dir"] == ("HYPERFLUX_DATA_DIR",)
    assert names["hl.coins"] == ("HYPERFLUX_COINS", "HYPERFLUX_HL_COINS")
    for path, env_names in names.items():
        assert "HYPERFLUX_" + path.replace(".", "_").upper() in env_names


def test_empty_env_var_counts_as_unset() -> None:
    settings = load_settings(env={"HYPERFLUX_INFLUX_URL": "", "HYPERFLUX_METRICS_PORT": " "})
    assert settings.influx_url is None
    assert settings.metrics_port == 9108


def test_both_coin_variables_set_is_an_error() -> None:
    message = config_error(HYPERFLUX_COINS="BTC", HYPERFLUX_HL_COINS="ETH")
    assert message == "HYPERFLUX_COINS and HYPERFLUX_HL_COINS are both set: set only one of them"


def test_unknown_env_vars_are_listed_for_a_warning() -> None:
    env = {"HYPERFLUX_INFLUX_BATCHSIZE": "1", "HYPERFLUX_CONFIG": "x", "HYPERFLUX_COINS": "BTC"}
    assert unknown_env_vars(env) == ["HYPERFLUX_INFLUX_BATCHSIZE"]


# YAML files and layering


def test_yaml_overrides_defaults_and_env_overrides_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
influx:
  url: http://db.internal:8086
  batch_size: 2000
  gzip: on
hl:
  coins: [BTC, ETH]
log:
  format: json
metrics_port: 9200
""",
    )
    settings = load_settings(path, env={"HYPERFLUX_INFLUX_BATCH_SIZE": "3000"})
    assert settings.influx_url == "http://db.internal:8086"
    assert settings.influx_batch_size == 3000
    assert settings.influx_gzip == "on"
    assert settings.coins == ["BTC", "ETH"]
    assert settings.log_format == "json"
    assert settings.metrics_port == 9200
    assert settings.influx_db == "hyperliquid"


def test_hyperflux_config_env_picks_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "influx:\n  db: from_env_file\n")
    settings = load_settings(env={"HYPERFLUX_CONFIG": str(path)})
    assert settings.influx_db == "from_env_file"


def test_config_file_argument_beats_hyperflux_config(tmp_path: Path) -> None:
    flag = write(tmp_path, "influx:\n  db: from_flag\n", "flag.yaml")
    from_env = write(tmp_path, "influx:\n  db: from_env\n", "env.yaml")
    settings = load_settings(flag, env={"HYPERFLUX_CONFIG": str(from_env)})
    assert settings.influx_db == "from_flag"


def test_empty_file_and_empty_section_keep_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={}) == Settings()
    assert load_settings(write(tmp_path, "influx:\n  # url: x\n"), env={}) == Settings()


def test_coins_as_comma_string_in_yaml(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, 'hl:\n  coins: "BTC, kPEPE"\n'), env={})
    assert settings.coins == ["BTC", "kPEPE"]


def test_unknown_yaml_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "influx:\n  batchsize: 10\n")
    assert config_error(path) == (
        f"config file {str(path)!r}: unknown key influx.batchsize (did you mean influx.batch_size?)"
    )


def test_unknown_yaml_section_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "grafana:\n  url: http://x\n")
    assert config_error(path) == f"config file {str(path)!r}: unknown key grafana"


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert config_error(path) == f"config file {str(path)!r} does not exist"
    message = config_error(HYPERFLUX_CONFIG=str(path))
    assert message == f"config file {str(path)!r} (from HYPERFLUX_CONFIG) does not exist"


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    assert config_error(tmp_path) == (
        f"config file {str(tmp_path)!r} cannot be read: Is a directory"
    )


def test_invalid_yaml_names_file_and_position_but_not_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, f'influx:\n  password: "{PASSWORD}\n  db: x\n')
    message = config_error(path)
    assert message.startswith(f"config file {str(path)!r} is not valid YAML: ")
    assert "at line 4" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- a\n- b\n", " must hold a mapping of keys, not a list or value"),
        ("influx: 5\n", ": influx must be a section of keys"),
    ],
)
def test_wrong_yaml_shape(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    assert config_error(path) == f"config file {str(path)!r}{problem}"


# Bad values

PORT = "expected an integer from 0 to 65535"
POSITIVE_INT = "expected an integer greater than 0"
SECONDS = "expected a number of seconds greater than 0"
INFLUX_URL = (
    "expected an http:// or https:// URL such as http://localhost:8086,"
    " or nothing for the embedded server"
)
COINS = (
    "expected a comma-separated list of coin names such as BTC,ETH (letters, digits and"
    " @ : / . _ -), or nothing for all listed perps"
)
RETENTION = "expected empty, INF or an InfluxQL duration of at least 1h such as 90d, 12w or 720h"
SIZE = "expected a size in bytes greater than 0, such as 1073741824 or 1GiB"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HYPERFLUX_METRICS_PORT", "abc", f"HYPERFLUX_METRICS_PORT='abc' is not valid: {PORT}"),
        ("HYPERFLUX_METRICS_PORT", "65536", f"HYPERFLUX_METRICS_PORT='65536' is not valid: {PORT}"),
        ("HYPERFLUX_METRICS_PORT", "-1", f"HYPERFLUX_METRICS_PORT='-1' is not valid: {PORT}"),
        (
            "HYPERFLUX_INFLUX_URL",
            "influx:8086",
            f"HYPERFLUX_INFLUX_URL='influx:8086' is not valid: {INFLUX_URL}"
            " (the scheme must be http or https)",
        ),
        (
            "HYPERFLUX_INFLUX_URL",
            "http://:8086",
            f"HYPERFLUX_INFLUX_URL='http://:8086' is not valid: {INFLUX_URL} (the URL has no host)",
        ),
        (
            "HYPERFLUX_INFLUX_URL",
            "http://db:99999",
            f"HYPERFLUX_INFLUX_URL='http://db:99999' is not valid: {INFLUX_URL}"
            " (Port out of range 0-65535)",
        ),
        (
            "HYPERFLUX_INFLUX_URL",
            f"http://admin:{PASSWORD}@db:8086",
            f"HYPERFLUX_INFLUX_URL='http://admin:***@db:8086' is not valid: {INFLUX_URL}"
            " (user:password in the URL is not allowed: set influx.username and influx.password)",
        ),
        (
            "HYPERFLUX_INFLUX_DB",
            "my db",
            "HYPERFLUX_INFLUX_DB='my db' is not valid: expected a database name without spaces or"
            " quotes (it is empty or has spaces, quotes or backslashes)",
        ),
        (
            "HYPERFLUX_HL_API_URL",
            "ws://api",
            "HYPERFLUX_HL_API_URL='ws://api' is not valid: expected an http:// or https:// URL"
            " (the scheme must be http or https)",
        ),
        (
            "HYPERFLUX_HL_WS_URL",
            "https://api.hyperliquid.xyz/ws",
            "HYPERFLUX_HL_WS_URL='https://api.hyperliquid.xyz/ws' is not valid: expected a ws://"
            " or wss:// URL (the scheme must be ws or wss)",
        ),
        (
            "HYPERFLUX_DATA_DIR",
            "pyproject.toml",
            "HYPERFLUX_DATA_DIR='pyproject.toml' is not valid: expected a directory path"
            " (it exists and is not a directory)",
        ),
        (
            "HYPERFLUX_COINS",
            "BTC,,ETH",
            f"HYPERFLUX_COINS='BTC,,ETH' is not valid: {COINS} (item 2 is empty)",
        ),
        (
            "HYPERFLUX_COINS",
            "BTC,ET H",
            f"HYPERFLUX_COINS='BTC,ET H' is not valid: {COINS}"
            " (item 2 ('ET H') has characters that are not allowed)",
        ),
        (
            "HYPERFLUX_COINS",
            "BTC;DROP",
            f"HYPERFLUX_COINS='BTC;DROP' is not valid: {COINS}"
            " (item 1 ('BTC;DROP') has characters that are not allowed)",
        ),
        (
            "HYPERFLUX_LOG_LEVEL",
            "verbose",
            "HYPERFLUX_LOG_LEVEL='verbose' is not valid:"
            " expected one of DEBUG, INFO, WARNING, ERROR",
        ),
        (
            "HYPERFLUX_LOG_FORMAT",
            "xml",
            "HYPERFLUX_LOG_FORMAT='xml' is not valid: expected one of auto, color, plain, json",
        ),
        ("HYPERFLUX_INFLUX_TIMEOUT", "0", f"HYPERFLUX_INFLUX_TIMEOUT='0' is not valid: {SECONDS}"),
        (
            "HYPERFLUX_INFLUX_TIMEOUT",
            "inf",
            f"HYPERFLUX_INFLUX_TIMEOUT='inf' is not valid: {SECONDS}",
        ),
        (
            "HYPERFLUX_INFLUX_GZIP",
            "maybe",
            "HYPERFLUX_INFLUX_GZIP='maybe' is not valid: expected one of auto, on, off",
        ),
        (
            "HYPERFLUX_INFLUX_BATCH_SIZE",
            "0",
            f"HYPERFLUX_INFLUX_BATCH_SIZE='0' is not valid: {POSITIVE_INT}",
        ),
        (
            "HYPERFLUX_INFLUX_BATCH_SIZE",
            "1e3",
            f"HYPERFLUX_INFLUX_BATCH_SIZE='1e3' is not valid: {POSITIVE_INT}",
        ),
        (
            "HYPERFLUX_INFLUX_FLUSH_INTERVAL",
            "-1",
            f"HYPERFLUX_INFLUX_FLUSH_INTERVAL='-1' is not valid: {SECONDS}",
        ),
        (
            "HYPERFLUX_INFLUX_RETENTION",
            "90 days",
            f"HYPERFLUX_INFLUX_RETENTION='90 days' is not valid: {RETENTION}"
            " (not an InfluxQL duration (units: ns, u, ms, s, m, h, d, w))",
        ),
        (
            "HYPERFLUX_INFLUX_RETENTION",
            "30m",
            f"HYPERFLUX_INFLUX_RETENTION='30m' is not valid: {RETENTION}"
            " (InfluxDB refuses a retention shorter than 1h: use INF to keep forever)",
        ),
        (
            "HYPERFLUX_INFLUX_SPOOL_MAX_BYTES",
            "1 XB",
            f"HYPERFLUX_INFLUX_SPOOL_MAX_BYTES='1 XB' is not valid: {SIZE} (unknown unit 'XB')",
        ),
        (
            "HYPERFLUX_INFLUX_SPOOL_MAX_BYTES",
            "0",
            f"HYPERFLUX_INFLUX_SPOOL_MAX_BYTES='0' is not valid: {SIZE}"
            " (the size must be greater than 0)",
        ),
        (
            "HYPERFLUX_INFLUX_SPOOL_FULL_POLICY",
            "block",
            "HYPERFLUX_INFLUX_SPOOL_FULL_POLICY='block' is not valid:"
            " expected one of drop_oldest, drop_newest",
        ),
        (
            "HYPERFLUX_HL_WS_CHANNELS",
            "l2Book,trades",
            "HYPERFLUX_HL_WS_CHANNELS='l2Book,trades' is not valid: expected a comma list of"
            " WebSocket channels from l2Book, bbo, activeAssetCtx"
            " (item 2 ('trades') is not one of l2Book, bbo, activeAssetCtx)",
        ),
        (
            "HYPERFLUX_HL_LIQUIDATORS",
            "0x123",
            "HYPERFLUX_HL_LIQUIDATORS='0x123' is not valid: expected a comma list of 0x addresses"
            " with 40 hex digits (item 1 ('0x123') is not a 0x address with 40 hex digits)",
        ),
        (
            "HYPERFLUX_HL_WEIGHT_MARGIN",
            "0.95",
            "HYPERFLUX_HL_WEIGHT_MARGIN='0.95' is not valid:"
            " expected a fraction from 0 to below 0.9, such as 0.1",
        ),
    ],
)
def test_bad_env_value_is_one_line_naming_variable_value_and_rule(
    name: str, value: str, message: str
) -> None:
    assert config_error(**{name: value}) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("influx:\n  batch_size: 0\n", f"influx.batch_size=0 is not valid: {POSITIVE_INT}"),
        (
            "influx:\n  batch_size: yes\n",
            f"influx.batch_size=True is not valid: {POSITIVE_INT}"
            " (YAML reads yes, no, on, off, true, false as booleans)",
        ),
        ("metrics_port: 70000\n", f"metrics_port=70000 is not valid: {PORT}"),
        (
            "hl:\n  coins: [BTC, 1]\n",
            f"hl.coins=['BTC', 1] is not valid: {COINS}"
            " (item 2 (1) is not a string: quote it in YAML)",
        ),
        (
            "influx:\n  db: 2024\n",
            "influx.db=2024 is not valid: expected a database name without spaces or quotes",
        ),
        (
            "influx:\n  spool_max_bytes: 1.5\n",
            f"influx.spool_max_bytes=1.5 is not valid: {SIZE} (not a number of bytes)",
        ),
    ],
)
def test_bad_yaml_value_names_file_and_dotted_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    assert config_error(path) == f"{path}: {message}"


def test_several_bad_values_are_all_named_on_one_line() -> None:
    message = config_error(HYPERFLUX_INFLUX_BATCH_SIZE="0", HYPERFLUX_METRICS_PORT="x")
    assert message == (
        f"HYPERFLUX_INFLUX_BATCH_SIZE='0' is not valid: {POSITIVE_INT}"
        " (also not valid: HYPERFLUX_METRICS_PORT)"
    )


def test_long_values_are_shortened() -> None:
    message = config_error(HYPERFLUX_LOG_LEVEL="x" * 500)
    assert message == (
        f"HYPERFLUX_LOG_LEVEL='{'x' * 76}... is not valid:"
        " expected one of DEBUG, INFO, WARNING, ERROR"
    )


# Secrets


def test_password_never_shown(tmp_path: Path) -> None:
    env = {"HYPERFLUX_INFLUX_PASSWORD": PASSWORD, "HYPERFLUX_INFLUX_USERNAME": "collector"}
    settings = load_settings(env=env)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert settings.redacted()["influx_password"] == "***"
    assert PASSWORD not in str(settings.redacted())
    assert settings.redacted()["influx_username"] == "collector"

    with pytest.raises(ConfigError) as info:
        load_settings(env={**env, "HYPERFLUX_METRICS_PORT": "x"})
    assert PASSWORD not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_bad_password_value_is_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "influx:\n  password: 1234567890\n")
    assert config_error(path) == (
        f"{path}: influx.password=*** is not valid: expected a string (quote it in YAML)"
    )


def test_redacted_is_plain_data_by_flat_name() -> None:
    redacted = load_settings(env={"HYPERFLUX_COINS": "BTC"}).redacted()
    assert set(redacted) == {key.field for key in KEYS.values()}
    assert redacted["data_dir"] == "data"
    assert redacted["coins"] == ["BTC"]
    assert redacted["influx_password"] is None


# Coins and gzip


@pytest.mark.parametrize(
    ("value", "coins"),
    [
        ("", []),
        ("BTC", ["BTC"]),
        (" BTC , ETH ", ["BTC", "ETH"]),
        ("BTC,ETH,BTC", ["BTC", "ETH"]),
        ("kPEPE,@107,PURR/USDC,xyz:XYZ100", ["kPEPE", "@107", "PURR/USDC", "xyz:XYZ100"]),
    ],
)
def test_coins_parsing(value: str, coins: list[str]) -> None:
    assert load_settings(env={"HYPERFLUX_COINS": value}).coins == coins


@given(st.lists(st.from_regex(r"[A-Za-z0-9]{1,10}", fullmatch=True), min_size=1))
def test_coins_round_trip(names: list[str]) -> None:
    text = " , ".join(names)
    assert load_settings(env={"HYPERFLUX_COINS": text}).coins == list(dict.fromkeys(names))


@pytest.mark.parametrize(
    ("gzip", "url", "enabled"),
    [
        ("auto", None, False),
        ("auto", "http://localhost:8086", False),
        ("auto", "http://127.0.0.2:8086", False),
        ("auto", "http://[::1]:8086", False),
        ("auto", "https://influx.example.com", True),
        ("on", "http://localhost:8086", True),
        ("off", "https://influx.example.com", False),
    ],
)
def test_gzip_only_for_remote_servers_when_auto(gzip: str, url: str | None, enabled: bool) -> None:
    settings = Settings(influx_gzip=gzip, influx_url=url)
    assert settings.influx_gzip_enabled() is enabled
