#!/usr/bin/env python3
"""Writes docs/compat.md's function tables from hooks/compat.tsv, the one status table.

    scripts/compat_table.py            rewrite the generated parts of docs/compat.md
    scripts/compat_table.py --check    exit 1 (with a diff) when docs/compat.md is out of date
    scripts/compat_table.py --adopt    move rows written by hand into docs/compat.md's table
                                       (after a merge) into hooks/compat.tsv, then rewrite

Tolerant by design, because hooks/symbols.def, hooks/compat.tsv and docs/compat.md are edited
on several branches at once: an unknown hook macro, a status word it does not know, a blocking
row for a call that has since been interposed, or a symbol with a hand-written row only in
docs/compat.md all give a warning on stderr instead of a crash. --check fails only when the
file would change. Also imported by scripts/green_check.py (load_table, status_key).
"""
import difflib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Status words, in the order they are matched against the start of a status cell.
STATUSES = [
    ("cooperative", "cooperative"),
    ("fiber-aware", "fiber-aware"),
    ("pass-through", "pass-through"),
    ("passed through", "pass-through"),
    ("not yet", "not yet"),
    ("libgreen's own", "libgreen's own"),
    ("blocks the carrier", "blocks the carrier"),
]
BLOCKING = "blocks the carrier"

BEGIN = "<!-- BEGIN {} table: generated from hooks/compat.tsv by scripts/compat_table.py -->"
END = "<!-- END {} table -->"
SECTIONS = ("interposed", "blocking")


def warn(message):
    print("compat_table: " + message, file=sys.stderr)


def status_key(cell):
    """The status word a status cell starts with, or 'unknown'."""
    for prefix, key in STATUSES:
        if cell.startswith(prefix):
            return key
    return "unknown"


def load_table(path):
    """[(function, status cell, notes)] in file order; comments and the header skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#") or line.startswith("function\t"):
                continue
            cells = line.split("\t")
            if len(cells) < 2:
                warn(f"{path}:{number}: no status column, line ignored")
                continue
            name, status = cells[0].strip(), cells[1].strip()
            notes = "\t".join(cells[2:]).strip()  # a stray tab in the notes is kept
            if status_key(status) == "unknown":
                warn(f"{path}:{number}: {name}: status '{status}' is none of the known words")
            rows.append((name, status, notes))
    return rows


def hooked_symbols(path):
    """The interposed names of hooks/symbols.def, whatever GREEN_HOOK* macro lists them: the
    name is the argument just before the first parenthesised one (the parameter list)."""
    names = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not re.match(r"^\s*GREEN_HOOK\w*\(", line):
                continue
            args, depth, current = [], 0, ""
            for ch in line[line.index("(") + 1:]:
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    if depth == 0:
                        break
                    depth -= 1
                if ch == "," and depth == 0:
                    args.append(current.strip())
                    current = ""
                    continue
                current += ch
            args.append(current.strip())
            first_list = next((i for i, a in enumerate(args) if a.startswith("(")), None)
            if first_list is None or first_list == 0:
                warn(f"cannot read a symbol name from: {line.strip()}")
                continue
            names.append(args[first_list - 1])
    return names


def hand_rows(markdown):
    """The rows of docs/compat.md's interposed-functions table as they are now, in order."""
    rows, inside = [], False
    for line in markdown.split("\n"):
        if line.startswith("## "):
            inside = line.startswith("## Interposed functions")
            continue
        m = re.match(r"^\| `([A-Za-z_0-9]+)` \|(.*)\|\s*$", line)
        if inside and m:
            cells = m.group(2).split("|")
            rows.append((m.group(1), cells[0].strip(), "|".join(cells[1:]).strip()))
    return rows


def place_after(rows, order, name):
    """Where name goes in rows: after the nearest name that precedes it in order."""
    for prev in reversed(order[:order.index(name)]):
        hits = [i for i, r in enumerate(rows) if r[0] == prev]
        if hits:
            return hits[0] + 1
    return len(rows)


def md_row(names, status, notes):
    return "| {} | {} | {} |".format(", ".join(f"`{n}`" for n in names), status, notes).replace(
        "|  |", "| |")


def render(rows, hooked, fallback, adoptable):
    """The two generated tables, as lists of lines; adoptable collects the hooked names that
    only docs/compat.md has a row for."""
    hooked_set = set(hooked)
    interposed, blocking, seen = [], [], set()
    for name, status, notes in rows:
        if status_key(status) == BLOCKING:
            continue
        interposed.append((name, status, notes))
        seen.add(name)
        if name not in hooked_set and status_key(status) != "libgreen's own":
            warn(f"{name} has an interposed status but is not in hooks/symbols.def")
    for name in hooked:
        if name in seen:
            continue
        if name in fallback:
            warn(f"{name}: no row in hooks/compat.tsv; keeping docs/compat.md's own row "
                 "(run scripts/compat_table.py --adopt)")
            interposed.insert(place_after(interposed, list(fallback), name), fallback[name])
            adoptable.append(name)
        else:
            warn(f"{name} is interposed (hooks/symbols.def) but has no row in hooks/compat.tsv")
            interposed.append((name, "unknown", "no row in hooks/compat.tsv yet"))
        seen.add(name)
    for name, status, notes in rows:
        if status_key(status) != BLOCKING:
            continue
        if name in seen:
            warn(f"{name} is interposed now: drop its '{BLOCKING}' row from hooks/compat.tsv")
            continue
        if blocking and blocking[-1][1:] == [status, notes]:
            blocking[-1][0].append(name)  # one line for calls that share their note
        else:
            blocking.append([[name], status, notes])
    head = ["| function | status | notes |", "|---|---|---|"]
    return {
        "interposed": head + [md_row([n], s, t) for n, s, t in interposed],
        "blocking": head + [md_row(n, s, t) for n, s, t in blocking],
    }


def splice(markdown, tables):
    lines = markdown.split("\n")
    for section in SECTIONS:
        begin, end = BEGIN.format(section), END.format(section)
        if begin not in lines or end not in lines:
            warn(f"docs/compat.md has no '{begin}' marker: its {section} table is not generated")
            continue
        b, e = lines.index(begin), lines.index(end)
        lines[b + 1:e] = tables[section]
    return "\n".join(lines)


def adopt(tsv_path, rows, hooked, fallback):
    """Inserts each hooked symbol that has only a hand-written row after its predecessor,
    and drops its "blocks the carrier" row: it is interposed now."""
    have = {r[0] for r in rows if status_key(r[1]) != BLOCKING}
    missing = [n for n in hooked if n not in have and n in fallback]
    if not missing:
        return False
    with open(tsv_path, encoding="utf-8") as f:
        text = [l for l in f.read().rstrip("\n").split("\n")
                if not (l.split("\t")[0] in missing and status_key(
                    (l.split("\t") + [""])[1]) == BLOCKING)]
    for name in missing:
        cells = [l.split("\t") for l in text]
        text.insert(place_after(cells, list(fallback), name), "\t".join(fallback[name]))
        print(f"compat_table: adopted {name} into {os.path.relpath(tsv_path, ROOT)}")
    with open(tsv_path, "w", encoding="utf-8") as f:
        f.write("\n".join(text) + "\n")
    return True


def main(argv):
    mode = argv[1] if len(argv) > 1 else "--write"
    if mode not in ("--write", "--check", "--adopt"):
        print(__doc__, file=sys.stderr)
        return 2
    tsv = os.path.join(ROOT, "hooks", "compat.tsv")
    compat = os.path.join(ROOT, "docs", "compat.md")
    hooked = hooked_symbols(os.path.join(ROOT, "hooks", "symbols.def"))
    with open(compat, encoding="utf-8") as f:
        current = f.read()
    fallback = {r[0]: r for r in hand_rows(current)}
    rows = load_table(tsv)
    if mode == "--adopt" and adopt(tsv, rows, hooked, fallback):
        rows = load_table(tsv)
    adoptable = []
    wanted = splice(current, render(rows, hooked, fallback, adoptable))
    if mode == "--check":
        if adoptable:
            print("hooks/compat.tsv has no row for " + ", ".join(adoptable) + ", which "
                  "docs/compat.md documents by hand: run scripts/compat_table.py --adopt")
            return 1
        if wanted == current:
            print(f"docs/compat.md is up to date with hooks/compat.tsv ({len(rows)} rows)")
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            current.splitlines(True), wanted.splitlines(True), "docs/compat.md",
            "docs/compat.md as scripts/compat_table.py would write it"))
        print("docs/compat.md is out of date: run scripts/compat_table.py (after a merge that "
              "added rows by hand: scripts/compat_table.py --adopt)")
        return 1
    if wanted != current:
        with open(compat, "w", encoding="utf-8") as f:
            f.write(wanted)
        print("compat_table: rewrote docs/compat.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
