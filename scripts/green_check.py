#!/usr/bin/env python3
"""`green check PROGRAM|PID`: can the program run under libgreen, which blocking calls it and
its libraries import (with their status from hooks/compat.tsv, the table docs/compat.md is
written from), and for a running process whether libgreen is loaded and what its carriers do.

Run through the `green` launcher, which passes where the installed table and library are.
Reads files, /proc and the output of ldd and nm; never runs the program, and signals a
process only when asked to (--dump). Exit status: 0 the program can run under libgreen (or
the process runs it), 1 it cannot (or the process does not), 2 a usage error.
"""
import argparse
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compat_table import BLOCKING, load_table, status_key  # noqa: E402

# The order statuses are shown in: what needs attention first.
SHOWN = [BLOCKING, "not yet", "cooperative", "fiber-aware", "pass-through", "libgreen's own",
         "unknown"]
# glibc's own libraries: their calls to one another are glibc's business, not the program's.
GLIBC = re.compile(r"^(libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libnsl|"
                   r"libanl|libBrokenLocale|libthread_db|ld-linux[-\w.]*)\.so")
PT_INTERP, PT_DYNAMIC = 3, 2
MACHINES = {3: "i386", 62: "x86-64", 183: "aarch64", 40: "arm", 243: "riscv"}


def elf_header(path):
    """{'class', 'machine', 'interp', 'dynamic'} of an ELF file, or None when it is not one."""
    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if len(ident) < 52 or ident[:4] != b"\x7fELF":
                return None
            bits = 64 if ident[4] == 2 else 32
            end = "<" if ident[5] == 1 else ">"
            if bits == 64:
                machine, = struct.unpack_from(end + "H", ident, 18)
                phoff, = struct.unpack_from(end + "Q", ident, 32)
                phentsize, phnum = struct.unpack_from(end + "HH", ident, 54)
            else:
                machine, = struct.unpack_from(end + "H", ident, 18)
                phoff, = struct.unpack_from(end + "I", ident, 28)
                phentsize, phnum = struct.unpack_from(end + "HH", ident, 42)
            interp, dynamic = None, False
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                ph = f.read(phentsize)
                ptype, = struct.unpack_from(end + "I", ph, 0)
                if ptype == PT_DYNAMIC:
                    dynamic = True
                if ptype == PT_INTERP:
                    if bits == 64:
                        off, = struct.unpack_from(end + "Q", ph, 8)
                        size, = struct.unpack_from(end + "Q", ph, 32)
                    else:
                        off, = struct.unpack_from(end + "I", ph, 4)
                        size, = struct.unpack_from(end + "I", ph, 16)
                    f.seek(off)
                    interp = f.read(size).rstrip(b"\0").decode(errors="replace")
            return {"class": bits, "machine": MACHINES.get(machine, str(machine)),
                    "interp": interp, "dynamic": dynamic}
    except OSError:
        return None


def script_interpreter(path):
    """The interpreter a #! script runs under (resolved through env), or None."""
    try:
        with open(path, "rb") as f:
            line = f.readline(256).decode(errors="replace")
    except OSError:
        return None
    if not line.startswith("#!"):
        return None
    words = line[2:].split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return shutil.which(words[1]) or words[1]
    return words[0]


def secure_execution(path, st):
    """(why the loader would run this file in secure-execution mode for us, or None; a
    warning when it would only for other users, or None). The kernel asks for that mode
    (AT_SECURE) when a set-uid or set-gid bit changes the effective ids, or file
    capabilities add any: then LD_PRELOAD is ignored (ld.so(8))."""
    for bit, owner, mine, word, what in (
            (stat.S_ISUID, st.st_uid, os.geteuid(), "set-uid", "owner uid"),
            (stat.S_ISGID, st.st_gid, os.getegid(), "set-gid", "group gid")):
        if not st.st_mode & bit:
            continue
        if owner != mine:
            return f"it is {word} ({what} {owner})", None
        return None, (f"it is {word} ({what} {owner}, yours): preloading works when you run "
                      "it, and is ignored when anyone else does")
    try:
        if os.getxattr(path, "security.capability"):
            return "it has file capabilities (getcap)", None
    except OSError:
        pass
    return None, None


def libraries(path):
    """[(soname, path)] the loader maps for path, from ldd."""
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line) or re.match(r"\s*(/\S+) \(", line)
        if m:
            found.append((os.path.basename(m.group(1)), m.group(m.lastindex)))
    return found


def imports(path):
    """The undefined dynamic symbols of path, versions stripped; None without nm."""
    try:
        out = subprocess.run(["nm", "-D", "--undefined-only", path], capture_output=True,
                             text=True, timeout=20).stdout
    except FileNotFoundError:
        return None
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def check_program(path, table, library, name=None):
    """The verdict on one executable file, as a dict; name: what to call it (for
    /proc/PID/exe, the file it points to)."""
    report = {"program": path, "can_preload": False, "reasons": [], "warnings": [],
              "libraries": [], "imports": [], "notes": []}
    if not os.path.isfile(path):
        report["reasons"].append("no such file")
        return report
    run = path
    interp = script_interpreter(path)
    if interp:
        report["script_interpreter"] = interp
        report["notes"].append(f"a script: the loader runs {interp}, which is what is checked")
        run = interp
        if not os.path.isfile(run):
            report["reasons"].append(f"its interpreter {interp} does not exist")
            return report
    elf = elf_header(run)
    if elf is None:
        report["reasons"].append(f"{run} is not an ELF executable")
        return report
    report["elf"] = elf
    ours = elf_header(library) if library else None
    if ours and (ours["class"], ours["machine"]) != (elf["class"], elf["machine"]):
        report["reasons"].append("it is %d-bit %s and libgreen.so is %d-bit %s: the loader "
                                 "skips the library" % (elf["class"], elf["machine"],
                                                        ours["class"], ours["machine"]))
    if not elf["interp"]:
        report["reasons"].append("it is statically linked (no program interpreter): no dynamic "
                                 "loader runs, so LD_PRELOAD is ignored")
    elif not re.search(r"/ld-linux[-\w.]*\.so", elf["interp"]):
        report["reasons"].append(f"its interpreter {elf['interp']} is not glibc's loader: "
                                 "libgreen needs glibc")
    st = os.stat(run)
    why, warning = secure_execution(run, st)
    if warning:
        report["warnings"].append(warning)
    if why:
        report["reasons"].append(why + ": the loader runs it in secure-execution mode and "
                                 "ignores LD_PRELOAD")
    report["interpreter"] = elf["interp"]
    report["can_preload"] = not report["reasons"]
    if not elf["interp"]:
        return report

    modules = [(os.path.basename(name if name and run == path else run), run)] + [
        (name, lib) for name, lib in libraries(run)
        if not GLIBC.match(name) and "libgreen" not in name]
    report["libraries"] = [lib for _, lib in modules[1:]]
    by_name = {}
    for name, status, notes in table:
        # An interposed row wins over a "blocks the carrier" one left behind by a merge.
        if name not in by_name or status_key(by_name[name][0]) == BLOCKING:
            by_name[name] = (status, notes)
    used = {}
    for module, lib in modules:
        names = imports(lib)
        if names is None:
            report["notes"].append("nm (binutils) is not installed: imported calls not listed")
            break
        for name in names & by_name.keys():
            used.setdefault(name, []).append(module)
    for name in sorted(used):
        status, notes = by_name[name]
        report["imports"].append({"function": name, "status": status_key(status),
                                  "status_text": status, "notes": notes,
                                  "imported_by": used[name]})
    return report


def syscall_names(path):
    names = {}
    try:
        with open(path) as f:
            for m in re.finditer(r"GREEN_SYSCALL\((\d+), (\w+)\)", f.read()):
                names[int(m.group(1))] = m.group(2)
    except OSError:
        pass
    return names


def read_proc(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def last_stats(path, pid):
    """The last complete GREEN_STATS dump of pid in a file: {key: value} and the summary."""
    text = read_proc(path)
    if not text:
        return None
    start = text.rfind(f"green.stats.pid={pid}\n")
    if start < 0:
        return None
    end = text.find("green.stats.end=1", start)
    if end < 0:
        return None
    values, summary = {}, None
    for line in text[start:end].splitlines():
        if line.startswith("green.stats."):
            key, _, value = line[len("green.stats."):].partition("=")
            values[key] = value
        elif line.startswith("green: stats"):
            summary = line
    return {"values": values, "summary": summary, "file": path}


def signal_number(name):
    name = name.strip().upper().removeprefix("SIG")
    if name.isdigit():
        return int(name)
    m = re.match(r"RTMIN\+(\d+)$", name)
    if m:
        return signal.SIGRTMIN + int(m.group(1))
    if name == "RTMIN":
        return signal.SIGRTMIN
    return getattr(signal, "SIG" + name, None)


def check_process(pid, table, library, syscalls, dump):
    proc = f"/proc/{pid}"
    if not os.path.isdir(proc):
        return {"pid": pid, "running": False, "reasons": ["no such process"]}
    exe = f"{proc}/exe"
    try:
        exe_path = os.readlink(exe)
    except OSError:
        exe_path = None
    report = {"pid": pid, "running": True, "exe": exe_path}
    program = check_program(exe if exe_path else "", table, library, exe_path)
    program["program"] = exe_path
    report["program_check"] = program
    maps = read_proc(f"{proc}/maps") or ""
    mapped = sorted({line.split(None, 5)[5] for line in maps.splitlines()
                     if len(line.split(None, 5)) == 6 and
                     os.path.basename(line.split(None, 5)[5]).startswith("libgreen.so")})
    report["libgreen_mapped"] = mapped
    environ = read_proc(f"{proc}/environ")
    settings = {}
    if environ is not None:
        for entry in environ.split("\0"):
            if entry.startswith("GREEN_") and "=" in entry:
                key, _, value = entry.partition("=")
                settings[key] = value
    else:
        report["environ_unreadable"] = True
    report["settings"] = settings
    disabled = settings.get("GREEN_DISABLE", "").lower() in ("1", "yes", "true")
    report["active"] = bool(mapped) and not disabled
    status_text = read_proc(f"{proc}/status") or ""
    m = re.search(r"^Threads:\s*(\d+)", status_text, re.M)
    report["os_threads"] = int(m.group(1)) if m else None

    # The stats: a file named by GREEN_STATS, or stderr when that is a regular file.
    stats_to = settings.get("GREEN_STATS", "")
    stats_file = None
    if stats_to and stats_to.lower() not in ("0", "no", "false"):
        if stats_to.lower() in ("1", "yes", "true", "stderr"):
            target = settings.get("GREEN_LOG_FILE") or f"{proc}/fd/2"
            target = target.replace("%p", str(pid))
            try:
                if stat.S_ISREG(os.stat(target).st_mode):
                    stats_file = target
            except OSError:
                pass
        else:
            stats_file = stats_to.replace("%p", str(pid))
    report["stats_file"] = stats_file
    if dump and mapped:
        signo = signal_number(settings.get("GREEN_STATS_SIGNAL", ""))
        if signo is None:
            report["dump"] = "not sent: the process has no GREEN_STATS_SIGNAL"
        else:
            before = last_stats(stats_file, pid) if stats_file else None
            os.kill(pid, signo)
            report["dump"] = f"sent signal {signo}"
            deadline = time.monotonic() + 5
            while stats_file and time.monotonic() < deadline:
                now = last_stats(stats_file, pid)
                if now and (before is None or now["values"] != before["values"]):
                    break
                time.sleep(0.05)
    report["stats"] = last_stats(stats_file, pid) if stats_file else None

    carrier_tids = {}
    if report["stats"]:
        for key, value in report["stats"]["values"].items():
            m = re.match(r"carrier(\d+)\.tid$", key)
            if m:
                carrier_tids[int(value)] = int(m.group(1))
    threads = []
    try:
        tids = sorted(int(t) for t in os.listdir(f"{proc}/task"))
    except OSError:
        tids = []
    for tid in tids:
        task = f"{proc}/task/{tid}"
        comm = (read_proc(f"{task}/comm") or "?").strip()
        stat_line = read_proc(f"{task}/stat") or ""
        state = stat_line.rsplit(")", 1)[-1].split()[0] if ")" in stat_line else "?"
        sc = (read_proc(f"{task}/syscall") or "").split()
        if not sc:
            doing = "unknown (no access to its syscall file)"
        elif sc[0] == "running":
            doing = "running"
        elif sc[0] == "-1":
            doing = "in user code"
        else:
            number = int(sc[0])
            doing = f"in the {syscalls.get(number, 'syscall %d' % number)} system call"
        entry = {"tid": tid, "name": comm, "state": state, "doing": doing}
        if tid in carrier_tids:
            entry["carrier"] = carrier_tids[tid]
        threads.append(entry)
    report["threads"] = threads
    return report


def plain(markdown):
    return markdown.replace("`", "").replace("**", "")


def print_program(r, out, indent=""):
    p = out.write
    if r.get("script_interpreter"):
        p(f"{indent}script, run by {r['script_interpreter']}\n")
    elf = r.get("elf")
    if elf:
        kind = "dynamic" if elf["interp"] else "static"
        p(f"{indent}ELF {elf['class']}-bit {elf['machine']}, {kind}"
          + (f", interpreter {elf['interp']}" if elf["interp"] else "") + "\n")
    if r["can_preload"]:
        p(f"{indent}preload: yes, LD_PRELOAD reaches it\n")
    else:
        for reason in r["reasons"]:
            p(f"{indent}preload: NO, {reason}\n")
    for warning in r["warnings"]:
        p(f"{indent}warning: {warning}\n")
    for note in r["notes"]:
        p(f"{indent}note: {note}\n")
    if r["libraries"]:
        p(f"{indent}libraries checked besides glibc's: {len(r['libraries'])} "
          f"({', '.join(os.path.basename(l) for l in r['libraries'])})\n")
    by_status = {}
    for imp in r["imports"]:
        by_status.setdefault(imp["status"], []).append(imp)
    if r["imports"]:
        p(f"{indent}calls it imports that libgreen knows (docs/compat.md):\n")
    for status in SHOWN:
        items = by_status.get(status, [])
        if not items:
            continue
        if status in (BLOCKING, "not yet", "unknown"):
            p(f"{indent}  {status} ({len(items)}):\n")
            by_note = {}  # calls that share a note are shown on one line
            for imp in items:
                by_note.setdefault(imp["notes"], []).append(imp)
            for note, group in by_note.items():
                calls = ", ".join(f"{i['function']} ({', '.join(i['imported_by'])})"
                                  for i in group)
                p(f"{indent}    {calls}: {plain(note)}\n")
        else:
            p(f"{indent}  {status} ({len(items)}): "
              f"{', '.join(i['function'] for i in items)}\n")


def verdict(r):
    if not r["can_preload"]:
        return "cannot run under libgreen: LD_PRELOAD would be ignored"
    held = [i["function"] for i in r["imports"] if i["status"] in (BLOCKING, "not yet")]
    if held:
        return ("can run under libgreen; %d imported calls can hold a carrier or are not "
                "handled yet (listed above)" % len(held))
    return "can run under libgreen; no imported call is known to hold a carrier"


def print_process(r, out):
    p = out.write
    p(f"process {r['pid']}: {r.get('exe') or '?'}\n")
    if not r["running"]:
        p("  not running\n")
        return
    if r["libgreen_mapped"]:
        p(f"  libgreen: loaded ({', '.join(r['libgreen_mapped'])})"
          + (", but GREEN_DISABLE is on: every call passes through\n"
             if not r["active"] else ", active\n"))
    else:
        p("  libgreen: not loaded (not in /proc/PID/maps)\n")
    if r.get("environ_unreadable"):
        p("  settings: its environment is not readable by this user\n")
    elif r["settings"]:
        p("  settings: " + " ".join(f"{k}={v}" for k, v in sorted(r["settings"].items())) + "\n")
    p(f"  OS threads: {r['os_threads']}\n")
    for t in r["threads"]:
        role = f"carrier {t['carrier']}" if "carrier" in t else t["name"]
        p(f"    thread {t['tid']} ({role}): state {t['state']}, {t['doing']}\n")
    if r.get("dump"):
        p(f"  stats dump: {r['dump']}\n")
    if r["stats"]:
        s = r["stats"]
        p(f"  last stats ({s['values'].get('reason', '?')}, from {s['file']}):\n")
        if s["summary"]:
            p(f"    {s['summary']}\n")
        for key in sorted(s["values"]):
            if re.match(r"carrier\d+\.(tid|fibers_live|switches|blocked_calls)$", key):
                p(f"    {key}={s['values'][key]}\n")
    elif r["libgreen_mapped"]:
        p("  stats: none readable (start it with GREEN_STATS=FILE and GREEN_STATS_SIGNAL=USR2, "
          "then `green check --dump PID`)\n")
    p("  the program:\n")
    print_program(r["program_check"], out, "    ")


def main(argv):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `green check ... | head` ends quietly
    ap = argparse.ArgumentParser(prog="green check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--dump", action="store_true",
                    help="for a PID: send its GREEN_STATS_SIGNAL first, for fresh stats")
    ap.add_argument("--table", required=True, help=argparse.SUPPRESS)
    ap.add_argument("--library", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--syscalls", default="", help=argparse.SUPPRESS)
    ap.add_argument("target", help="a program (path or name in PATH) or a process id")
    args = ap.parse_args(argv[1:])
    table = load_table(args.table)
    if args.target.isdigit():
        report = check_process(int(args.target), table, args.library,
                               syscall_names(args.syscalls), args.dump)
        ok = report.get("active", False)
        report["verdict"] = ("libgreen is active" if ok else "libgreen is not active")
    else:
        path = args.target if "/" in args.target else shutil.which(args.target)
        if not path or not os.path.exists(path):
            print(f"green check: {args.target}: no such program", file=sys.stderr)
            return 2
        report = check_program(os.path.abspath(path), table, args.library)
        ok = report["can_preload"]
        report["verdict"] = verdict(report)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        if "pid" in report:
            print_process(report, sys.stdout)
        else:
            sys.stdout.write(f"{report['program']}\n")
            print_program(report, sys.stdout, "  ")
        print(f"verdict: {report['verdict']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
