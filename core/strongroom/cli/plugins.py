"""``strongroom plugins``: what is installed in each slot, from metadata alone.

Without ``--check`` nothing is imported; with it every backend and hook
plugin is imported and any failure makes the command exit 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from strongroom._loading import (
    HOOK_PLUGIN_GROUP,
    SLOTS,
    Registration,
    Slot,
    load_backend,
    load_hook_plugin,
    registrations,
)
from strongroom.cli._output import emit
from strongroom.errors import StrongroomError


@dataclass
class Row:
    registration: Registration
    #: None when not checked; "" when the check passed; else the error.
    problem: str | None = None


@dataclass
class Group:
    slot: str
    group: str
    rows: list[Row] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    groups = [Group(slot.table, slot.group) for slot in SLOTS]
    groups.append(Group("hooks", HOOK_PLUGIN_GROUP))
    for group, slot in zip(groups, [*SLOTS, None], strict=True):
        for reg in registrations(group.group):
            group.rows.append(Row(reg, _check(slot, reg) if args.check else None))

    failures = sum(bool(row.problem) for group in groups for row in group.rows)
    emit(args, {"groups": [_json(group) for group in groups], "failures": failures}, _text(groups))
    return 1 if failures else 0


def _json(group: Group) -> dict[str, object]:
    rows = []
    for row in group.rows:
        data: dict[str, object] = asdict(row.registration)
        if row.problem is not None:
            data |= {"ok": not row.problem, "error": row.problem or None}
        rows.append(data)
    return {"slot": group.slot, "group": group.group, "backends": rows}


def _check(slot: Slot | None, reg: Registration) -> str:
    try:
        if slot is None:
            load_hook_plugin(reg.name)
        else:
            load_backend(slot, reg.name)
    except StrongroomError as exc:
        return str(exc)
    return ""


def _text(groups: list[Group]) -> Iterator[str]:
    for group in groups:
        yield f"{group.slot} ({group.group})"
        if not group.rows:
            yield "  (none installed)"
        width = max((len(row.registration.name) for row in group.rows), default=0)
        for row in group.rows:
            reg = row.registration
            line = f"  {reg.name:<{width}}  {reg.distribution} {reg.version}"
            if reg.extras:
                line += f"  [extra: {', '.join(reg.extras)}]"
            if row.problem is not None:
                line += f"  FAILED: {row.problem}" if row.problem else "  ok"
            yield line
