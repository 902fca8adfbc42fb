"""The watchlist: `main.py watch add|remove|list`, priority polling, wallet rules that follow it."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path

import pytest

import main
from process.alerts.match import Matcher
from process.alerts.rules import parse_alerts
from process.positions.book import PositionChange
from process.registry import AddressRegistry
from process.watchlist import FILE_NAME, Watchlist
from tests.test_poll_scheduler import T, polled_once, simulate
from utils.errors import HyperfluxError

A = "0x" + "a1" * 20
B = "0x" + "b2" * 20
C = "0x" + "c3" * 20


def watch(capsys, *argv: str) -> tuple[int, str, str]:
    code = main.main(["watch", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_watch_command_keeps_the_list_in_the_data_dir(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HYPERFLUX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HYPERFLUX_WATCHLIST", C)
    assert watch(capsys, "list") == (0, f"{C}  config\n", "")
    assert watch(capsys, "add", A.upper().replace("0X", "0x"), "--label", "whale") == (
        0,
        f"watching {A}\n",
        "",
    )
    assert watch(capsys, "add", B)[0] == 0
    assert (
        watch(capsys, "add", A, "--label", "big whale")[1] == f"already watched, label set: {A}\n"
    )
    assert watch(capsys, "list")[1] == f"{A}  cli     big whale\n{B}  cli\n{C}  config\n"
    assert watch(capsys, "remove", B)[1] == f"no longer watching {B}\n"
    assert watch(capsys, "remove", B)[1] == f"{B} was not watched\n"
    code, out, err = watch(capsys, "remove", C)
    assert (code, err) == (
        2,
        f"hyperflux: {C} is watched by the watchlist setting; remove it there\n",
    )
    code, out, err = watch(capsys, "add", "0x12")
    assert (code, out, err) == (2, "", "hyperflux: not a 0x address with 40 hex digits: '0x12'\n")
    assert (
        watch(capsys, "add")[2] == "hyperflux: watch add needs an ADDRESS (0x and 40 hex digits)\n"
    )
    assert Watchlist(tmp_path / "data" / FILE_NAME, [C]).addresses() == {A, C}
    with pytest.raises(HyperfluxError, match="at most 100 characters"):
        Watchlist(tmp_path / "data" / FILE_NAME).add(A, "x" * 101)


def test_watched_addresses_are_polled_ten_times_as_often() -> None:
    world: dict[str, tuple[float, float | None]] = {f"0x{n:02}": (1e5, None) for n in range(40)}
    scheduler = polled_once(world)
    scheduler.watch(["0x00"])
    polls = simulate(scheduler, world, 3600, 1.0)
    others = [polls[f"0x{n:02}"] for n in range(1, 40)]
    ratio = polls["0x00"] / (sum(others) / len(others))
    assert 9.0 <= ratio <= 11.0, ratio  # sqrt(100): the boost multiplies the weight
    scheduler.watch(["0x01", "0xnew"])  # 0x00 back to its own weight, a new one added
    assert "0xnew" in scheduler and scheduler.next_batch(T + 3_600_000, 1) == ["0xnew"]
    polls = simulate(scheduler, world | {"0xnew": (0.0, None)}, 3600, 1.0)
    assert polls["0x01"] > 5 * polls["0x00"]


def test_watched_addresses_never_expire(tmp_path: Path) -> None:
    registry = AddressRegistry(tmp_path / "a.sqlite")
    registry.observe([A, B], T)
    assert registry.expire_addresses(T + 10**10, 1000, keep=frozenset({A})) == [B]
    assert {state.address for state in registry.states()} == {A}
    registry.close()


def change(address: str) -> PositionChange:
    return PositionChange(address, "BTC", "entry", D(0), D(1), D(100_000), T, "trade", 7)


def test_wallet_rules_follow_the_watchlist() -> None:
    config = parse_alerts(
        {
            "rules": [
                {"kind": "wallet", "name": "list", "watchlist": True},
                {"kind": "wallet", "name": "mine", "addresses": [C]},
            ]
        }
    )
    matcher = Matcher(config)
    assert matcher.position_changed(change(A)) is None
    matcher.set_watchlist(frozenset({A, C}))
    assert matcher.position_changed(change(A)).rules == ("list",)  # type: ignore[union-attr]
    assert matcher.position_changed(change(C)).rules == ("list", "mine")  # type: ignore[union-attr]
    matcher.set_watchlist(frozenset({B}))
    assert matcher.position_changed(change(A)) is None
    assert matcher.position_changed(change(C)).rules == ("mine",)  # type: ignore[union-attr]
    with pytest.raises(Exception, match="needs addresses or watchlist: true"):
        parse_alerts({"rules": [{"kind": "wallet"}]})


def test_curation_adds_qualifying_traders_up_to_the_cap_and_drops_them_later(tmp_path) -> None:
    from process.profiles.curation import AutoWatch, CurationRules
    from process.profiles.figures import DAY_MS, profile_of
    from tests.test_profiles import ETH, OTHERS, parse, trips
    from tests.test_profiles import T0 as P0

    week = P0 + 7 * DAY_MS
    good = trips(30, 5 * 60_000, 5 * 3_600_000)  # 30 winning scalps: win rate 1, no loss
    watchlist = Watchlist(tmp_path / FILE_NAME)
    watchlist.add(C, "mine")
    curation = AutoWatch(watchlist, CurationRules(max_wallets=1))
    curation.profiled(profile_of(A, good, P0, week))
    curation.profiled(profile_of(B, good, P0, week))  # the cap: first come
    curation.profiled(profile_of(C, good, P0, week))  # the user's: untouched
    entries = {w.address: (w.source, w.label) for w in watchlist.entries()}
    assert entries == {
        C: ("cli", "mine"),
        A: ("auto", "auto: 30 trips, win 100%, PF inf, +30 USD"),
    }
    few = profile_of(A, parse(ETH + OTHERS), P0, P0 + DAY_MS)  # 3 trips: no longer qualifies
    curation.profiled(few)
    curation.profiled(profile_of(C, parse(ETH + OTHERS), P0, P0 + DAY_MS))
    assert watchlist.addresses() == {C} and (curation.added, curation.removed) == (1, 1)
    curation.profiled(profile_of(B, good, P0, week))  # room again
    assert watchlist.source_of(B) == "auto"
    watchlist.add(B, "now mine")  # the user takes it over: the curation leaves it alone
    curation.profiled(dataclasses.replace(few, address=B))
    assert watchlist.source_of(B) == "cli"
    off = AutoWatch(watchlist, CurationRules())  # max_wallets 0: off
    off.profiled(profile_of(A, good, P0, week))
    assert watchlist.source_of(A) is None
