"""Settings files built to hurt a YAML parser, shared by the settings, watcher and chaos tests."""

from __future__ import annotations


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """ "Billion laughs": `levels` anchors, each a list of `width` aliases of the one before, so a
    few hundred bytes expand to width**levels strings. The last level sits under `workloads`,
    where validation would walk (and quote) all of it."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    lines.append(f"workloads: [*a{levels - 1}]")
    return "\n".join(lines) + "\n"


def oversize(megabytes: int) -> str:
    """A syntactically valid mapping of about `megabytes` MB (a wrong file mounted by mistake)."""
    line = "k{:08d}: " + "x" * 80 + "\n"
    return "".join(line.format(i) for i in range(megabytes * 1024 * 1024 // 91))
