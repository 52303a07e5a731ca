# gdb helper for libgreen: lists the fibers of a process running under LD_PRELOAD=libgreen.so
# and shows the backtrace of a parked fiber. Needs libgreen.so's debug info (the default
# RelWithDebInfo build) and a live process (not a core file: the backtrace borrows the
# carrier thread's registers for a moment). See docs/debugging.md.
#
#   (gdb) source scripts/gdb/green.py
#   (gdb) green fibers          every fiber: id, carrier thread, state, why parked, start
#   (gdb) green bt ID           the backtrace of fiber ID (a parked one, or the running one)
#   (gdb) green bt all          the backtraces of every fiber
import gdb

# Boost.Context's x86_64 SysV jump_fcontext saves, at the suspended fiber's context pointer:
# mxcsr/x87 cw (8 bytes), r12, r13, r14, r15, rbx, rbp, then the return address; the stack
# pointer after the return is context + 0x40.
SAVED = (("r12", 0x08), ("r13", 0x10), ("r14", 0x18), ("r15", 0x20), ("rbx", 0x28),
         ("rbp", 0x30), ("pc", 0x38))


def enum_name(value):
    return str(value).split("::")[-1].lstrip("k").lower()


def carriers():
    try:
        carrier = gdb.parse_and_eval("green::g_carriers")
    except gdb.error:
        raise gdb.GdbError("libgreen is not loaded here, or has no debug info")
    while int(carrier) != 0:
        yield carrier
        carrier = carrier["next_carrier_"]


def fibers():
    for carrier in carriers():
        fiber = carrier["all_fibers_"]
        while int(fiber) != 0:
            yield carrier, fiber
            fiber = fiber["next_on_carrier"]


def symbol(address):
    if address == 0:
        return "?"
    text = gdb.execute("info symbol 0x%x" % address, to_string=True).strip()
    return text.split(" in section")[0] if "No symbol" not in text else "0x%x" % address


def describe(carrier, fiber):
    state = enum_name(fiber["state"])
    reason = enum_name(fiber["park_reason"])
    if bool(fiber["is_root"]):
        start = "main (root)"
    else:
        start = symbol(int(fiber["start"]))
    name = fiber["name"].string()
    where = ""
    if state == "parked":
        where = " on %s" % reason
        obj = int(fiber["park_object"])
        if obj and reason == "join":
            where += " fiber %d" % int(gdb.Value(obj).cast(fiber.type)["id"])
        elif obj:
            where += " " + symbol(obj)
    elif state == "running":
        where = " (last parked on %s)" % reason
    return "fiber %-6d carrier %d thread %-7d %-9s%s  %s%s" % (
        int(fiber["id"]), int(carrier["index_"]), int(carrier["tid_"]), state, where, start,
        (' "%s"' % name) if name else "")


def thread_of(carrier):
    tid = int(carrier["tid_"])
    for thread in gdb.selected_inferior().threads():
        if thread.ptid[1] == tid:
            return thread
    raise gdb.GdbError("carrier thread %d not found" % tid)


def backtrace(carrier, fiber):
    print(describe(carrier, fiber))
    state = enum_name(fiber["state"])
    if state == "done":
        print("  (finished)")
        return
    thread_of(carrier).switch()
    gdb.execute("frame 0", to_string=True)
    if state == "running":  # its stack is the thread's own
        gdb.execute("bt")
        return
    context = int(fiber["context"])
    word = gdb.lookup_type("unsigned long").pointer()
    saved = {reg: int(gdb.parse_and_eval("$" + reg)) for reg, _ in SAVED + (("sp", 0),)}
    try:
        for reg, offset in SAVED:
            value = int(gdb.Value(context + offset).cast(word).dereference())
            gdb.execute("set $%s = 0x%x" % (reg, value), to_string=True)
        gdb.execute("set $sp = 0x%x" % (context + 0x40), to_string=True)
        gdb.execute("bt")
    finally:
        for reg, value in saved.items():
            gdb.execute("set $%s = 0x%x" % (reg, value), to_string=True)


class Green(gdb.Command):
    """libgreen fibers: green fibers | green bt ID | green bt all"""

    def __init__(self):
        super().__init__("green", gdb.COMMAND_USER, prefix=True)


class GreenFibers(gdb.Command):
    """List every fiber: id, carrier, OS thread, state, what it waits on, start routine."""

    def __init__(self):
        super().__init__("green fibers", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        for carrier, fiber in fibers():
            print(describe(carrier, fiber))


class GreenBt(gdb.Command):
    """Backtrace of fiber ID (green bt ID), or of every fiber (green bt all)."""

    def __init__(self):
        super().__init__("green bt", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        arg = arg.strip()
        if not arg:
            raise gdb.GdbError("usage: green bt ID | green bt all")
        found = False
        for carrier, fiber in fibers():
            if arg == "all" or int(fiber["id"]) == int(arg):
                found = True
                backtrace(carrier, fiber)
        if not found:
            raise gdb.GdbError("no fiber %s" % arg)


Green()
GreenFibers()
GreenBt()
