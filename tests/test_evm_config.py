"""The `evm:` section: YAML or one JSON object in HYPERFLUX_EVM; one-line errors that never
show the RPC URL (it may hold an API key)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import load_settings
from process.dex import EvmConfig
from utils.errors import ConfigError

KEY = "k3y-0f-the-rpc"
URL = f"https://rpc.example.com/evm/{KEY}"
POOL = {"address": "0x" + "Ab" * 20, "kind": "v2", "label": "WHYPE/USDT0", "dex": "hyperswap"}


def test_no_evm_section_means_the_job_is_off():
    evm = load_settings(env={}).evm
    assert isinstance(evm, EvmConfig) and not evm.enabled


def test_a_yaml_section(tmp_path: Path):
    path = tmp_path / "my.yaml"
    path.write_text(
        f"evm:\n  rpc_url: {URL}\n  confirmations: 2\n  pools:\n"
        f"    - {{address: '{POOL['address']}', kind: algebra, label: 'A/B'}}\n"
    )
    evm = load_settings(path, env={}).evm
    assert evm.enabled and evm.confirmations == 2 and evm.max_block_range == 50
    (pool,) = evm.pools
    assert pool.address == "0x" + "ab" * 20 and pool.family == "v3" and pool.dex_name == "algebra"
    assert evm.rpc_url.get_secret_value() == URL


def test_one_json_object_in_the_environment_and_the_url_stays_secret():
    env = {"HYPERFLUX_EVM": json.dumps({"rpc_url": URL, "pools": [POOL]})}
    settings = load_settings(env=env)
    assert settings.evm.pools[0].dex_name == "hyperswap"
    assert KEY not in repr(settings) and KEY not in json.dumps(settings.redacted())


@pytest.mark.parametrize(
    ("evm", "expected"),
    [
        ({"rpc_url": URL, "pools": [{**POOL, "kind": "v4"}]}, "pools[0].kind: Input should be"),
        ({"pools": [POOL]}, "rpc_url is required when pools are given"),
        ({"rpc_url": "ftp://x/" + KEY, "pools": [POOL]}, "rpc_url: not an http:// or https://"),
        ({"rpc_url": URL, "pools": [POOL, POOL]}, "two pools have the label 'WHYPE/USDT0'"),
        ({"rpc_url": URL, "pools": [{**POOL, "address": "0x12"}]}, "pools[0].address: not a 0x"),
        ({"rpc_url": URL, "pools": [POOL], "confirmations": -1}, "confirmations: Input should"),
        ({"rpc_url": URL, "pools": [POOL], "poll": 5}, "poll: Extra inputs are not permitted"),
    ],
)
def test_a_bad_evm_section_is_one_line_naming_the_key(evm: dict, expected: str):
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"HYPERFLUX_EVM": json.dumps(evm)})
    message = str(caught.value)
    assert message.startswith("HYPERFLUX_EVM=*** is not valid: expected an evm section")
    assert expected in message and "\n" not in message and KEY not in message


def test_not_json_in_the_environment():
    with pytest.raises(ConfigError, match=r"\(not a JSON object\)$"):
        load_settings(env={"HYPERFLUX_EVM": "{rpc_url: " + URL})
