"""The store's Lua scripts read KEYS and ARGV by position; shared/store/scripts.py names them. These tests
hold the two together: each description must render every argument in the slot the script's header
comment (`-- KEYS: …  ARGV: 1 …, 2 …`) gives that name, and the script's body must read no slot beyond them.

Where a field lands is found by changing that field alone and seeing which slot changes, so the test
trusts nothing but `render` itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from shared.store.scripts import (
    LUA_DIR,
    CreateOrderArgs,
    LeaseArgs,
    ScriptArg,
    TakeConditionalArgs,
    TakeCrossedArgs,
    TakeRangeArgs,
    TransitionArgs,
)

# A realistic call of each script, and what its KEYS and ARGV hold after the named slots (their variadic tails).
CASES: list[tuple[Any, list[str], list[ScriptArg]]] = [
    (
        CreateOrderArgs(
            order="order:1",
            events="order:1:events",
            events_stream="stream:events:{p0}",
            idempotency_key="idem:k",
            dramatiq_queue="dramatiq:{p0}:execution",
            dramatiq_msgs="dramatiq:{p0}:execution.msgs",
            use_idem=True,
            idem_value="1 hash",
            idem_ttl_s=60,
            max_queue_depth=100,
            order_id="1",
            user_id="u",
            spec_json=b'{"spec":1}',
            first_event_json=b'{"seq":1}',
            order_hash={"status": "pending", "seq": "1"},
        ),
        [],
        ["status", "pending", "seq", "1"],
    ),
    (
        TransitionArgs(
            order="order:1",
            events="order:1:events",
            events_stream="stream:events:{p0}",
            dramatiq_queue="dramatiq:{p0}:execution",
            dramatiq_msgs="dramatiq:{p0}:execution.msgs",
            lease="lease:order:1",
            expected_seq=1,
            order_id="1",
            user_id="u",
            event_jsons=[b'{"seq":2}', b'{"seq":3}'],
            order_hash={"status": "building"},
        ),
        [],
        [b'{"seq":2}', b'{"seq":3}', "status", "building"],
    ),
    (LeaseArgs(lease="lease:order:1", order="order:1", op="take", token="t", ttl_ms=5000), [], []),
    (
        TakeCrossedArgs(
            bucket_index="i",
            hand_off_set="h",
            price="150.5",
            now_ms=1,
            buckets=[("b:1504", "1504"), ("b:1505", "1505")],
        ),
        ["b:1504", "b:1505"],
        ["1504", "1505"],
    ),
    (
        TakeRangeArgs(
            trigger_set="s", hand_off_set="h", index_of_non_empty_trigger_sets="i", max_score="+inf", now_ms=1
        ),
        [],
        [],
    ),
    (
        TakeConditionalArgs(
            stops="s",
            take_profits="t",
            activations="a",
            trail_widths="w",
            records_by_price="r",
            records_by_tick="rt",
            tick_state="ts",
            hand_off_set="h",
            now_ms=1,
            trails=[("trail:50", "50"), ("trail:100", "100")],
            ticks=[("1-0", "150.5"), ("2-0", "149")],
        ),  # fmt: skip
        ["trail:50", "trail:100"],
        ["50", "100", "1-0", "150.5", "2-0", "149"],
    ),
]

#: Slots a script names that no field fills: the description computes them.
DERIVED: dict[str, Callable[[Any], ScriptArg]] = {
    "n": lambda args: len(args.event_jsons),
    "widths": lambda args: len(args.trails),
}

#: Scripts without a description, and why none is needed.
UNDESCRIBED: dict[str, str] = {}


def _names(section: str) -> tuple[list[str], bool]:
    """The slot names of one `KEYS:` or `ARGV:` section, and whether a variadic tail follows them."""
    names: list[str] = []
    for item in re.sub(r"\([^)]*\)", "", section).split(","):
        item = item.strip()
        if item.startswith("then") or ".." in item:
            return names, True
        number, _, name = item.partition(" ") if item[:1].isdigit() else ("", "", item)
        if number:
            assert int(number) == len(names) + 1, f"ARGV {number} {name!r} is numbered out of order"
        names.append(re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"))
    return names, False


def lua_header(script: str) -> tuple[list[str], bool, list[str], bool]:
    """What the script's header comment names its KEYS and ARGV, and whether each goes on past them."""
    header = []
    for line in (LUA_DIR / script).read_text().splitlines():
        if not line.startswith("--"):
            break
        header.append(line.removeprefix("--").strip())
    sections = re.search(r"KEYS:(.*?)ARGV:(.*)", " ".join(header))
    assert sections, f"{script} names no KEYS and ARGV in its header comment"
    keys, keys_go_on = _names(sections[1])
    argv, argv_goes_on = _names(sections[2])
    return keys, keys_go_on, argv, argv_goes_on


def _other(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "~"
    if isinstance(value, bytes):
        return value + b"~"
    assert value is None, f"no way to change {value!r}"
    return 1


def landing(args: Any) -> tuple[dict[int, str], dict[int, str]]:
    """Field name by KEYS slot and by ARGV slot, for every field that fills exactly one slot."""
    keys, argv = args.render()
    by_key, by_arg = {}, {}
    for field in dataclasses.fields(args):
        value = getattr(args, field.name)
        if isinstance(value, (list, tuple, Mapping)):
            continue  # a variadic tail: checked as a whole
        changed_keys, changed_argv = dataclasses.replace(args, **{field.name: _other(value)}).render()
        assert (len(changed_keys), len(changed_argv)) == (len(keys), len(argv)), field.name
        key_slots = [i for i, (a, b) in enumerate(zip(keys, changed_keys, strict=True)) if a != b]
        arg_slots = [i for i, (a, b) in enumerate(zip(argv, changed_argv, strict=True)) if a != b]
        assert len(key_slots) + len(arg_slots) == 1, f"{field.name} fills KEYS {key_slots} and ARGV {arg_slots}"
        for slot in key_slots:
            by_key[slot] = field.name
        for slot in arg_slots:
            by_arg[slot] = field.name
    return by_key, by_arg


@pytest.mark.parametrize(("args", "keys_tail", "tail"), CASES, ids=[args.SCRIPT for args, *_ in CASES])
def test_each_argument_is_rendered_in_the_slot_the_script_names_it(
    args: Any, keys_tail: list[str], tail: list[ScriptArg]
) -> None:
    lua_keys, keys_go_on, lua_argv, argv_goes_on = lua_header(args.SCRIPT)
    keys, argv = args.render()
    by_key, by_arg = landing(args)

    assert [by_key.get(slot) for slot in range(len(lua_keys))] == lua_keys
    assert keys[len(lua_keys) :] == keys_tail
    assert keys_go_on is bool(keys_tail)
    for slot, name in enumerate(lua_argv):
        if name in DERIVED:
            assert slot not in by_arg and argv[slot] == DERIVED[name](args), name
        else:
            assert by_arg.get(slot) == name, f"ARGV {slot + 1}: the script reads {name!r}"
    assert max(by_arg) < len(lua_argv), "a field lands past the slots the script names"
    assert argv[len(lua_argv) :] == tail
    assert argv_goes_on is bool(tail)


@pytest.mark.parametrize(("args", "keys_tail", "tail"), CASES, ids=[args.SCRIPT for args, *_ in CASES])
def test_the_script_reads_no_slot_its_header_does_not_name(
    args: Any, keys_tail: list[str], tail: list[ScriptArg]
) -> None:
    lua_keys, _, lua_argv, argv_goes_on = lua_header(args.SCRIPT)
    body = (LUA_DIR / args.SCRIPT).read_text()
    assert max(int(i) for i in re.findall(r"KEYS\[(\d+)\]", body)) == len(lua_keys)
    assert max(int(i) for i in re.findall(r"ARGV\[(\d+)\]", body)) <= len(lua_argv)
    tail_starts = {int(i) for i in re.findall(r"unpack\(ARGV, (\d+)", body)}
    assert tail_starts == ({len(lua_argv) + 1} if argv_goes_on else set())


def test_every_script_has_a_description() -> None:
    described = {args.SCRIPT for args, *_ in CASES}
    assert {path.name for path in LUA_DIR.glob("*.lua")} == described | UNDESCRIBED.keys()
