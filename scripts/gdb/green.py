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
# pointer after the return is context + 0x40. `green bt` writes them into the carrier thread
# for one `bt` (gdb unwinds only from a thread's registers) and always writes the thread's own
# back, checking each one, before the process may run again.
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


# Every register `green bt` may change, directly or through gdb, with the thread's own values
# put back afterwards. orig_rax is the kernel's note of an interrupted system call, which it
# restarts on resume: gdb may clear it when the pc is written, so it is kept too.
KEPT = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
        "r12", "r13", "r14", "r15", "rip", "eflags", "orig_rax")
MASK = (1 << 64) - 1


def read_register(name):
    """The register's 64 bits as an unsigned number (gdb gives r8..r15 as signed longs)."""
    return int(gdb.parse_and_eval("$" + name)) & MASK


def write_register(name, value):
    """Sets a register of the innermost frame (a register of an outer frame is a stack slot)."""
    gdb.newest_frame().select()
    gdb.execute("set $%s = 0x%x" % (name, value & MASK), to_string=True)


def restore_registers(saved):
    """Puts back every register in `saved` that differs now, whatever fails on the way; says
    which could not be restored (then the process must not be resumed)."""
    failed = []
    for name, value in saved.items():
        try:
            if read_register(name) != value:
                write_register(name, value)
            if read_register(name) != value:
                failed.append(name)
        except gdb.error as e:
            failed.append("%s (%s)" % (name, e))
    if failed:
        raise gdb.GdbError("green: could not restore %s of thread %d: do not resume it" % (
            ", ".join(failed), gdb.selected_thread().ptid[1]))


def backtrace(carrier, fiber):
    print(describe(carrier, fiber))
    state = enum_name(fiber["state"])
    if state == "done":
        print("  (finished)")
        return
    thread_of(carrier).switch()
    gdb.newest_frame().select()
    if state == "running":  # its stack is the thread's own
        gdb.execute("bt")
        return
    context = int(fiber["context"])
    if context == 0:
        print("  (no saved context)")
        return
    word = gdb.lookup_type("unsigned long").pointer()
    # Read the whole saved frame before changing anything: a fault here changes nothing.
    values = [(reg, int(gdb.Value(context + offset).cast(word).dereference()) & MASK)
              for reg, offset in SAVED]
    saved = {}
    for name in KEPT:
        try:
            saved[name] = read_register(name)
        except gdb.error:
            pass  # not in this target's description: never written either
    try:
        for reg, value in values + [("sp", context + 0x40)]:
            write_register(reg, value)
        gdb.execute("bt")
    finally:
        restore_registers(saved)
        gdb.newest_frame().select()


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
        if arg != "all" and not arg.isdigit():
            raise gdb.GdbError("usage: green bt ID | green bt all")
        found = False
        selected = gdb.selected_thread()
        try:
            for carrier, fiber in fibers():
                if arg == "all" or int(fiber["id"]) == int(arg):
                    found = True
                    backtrace(carrier, fiber)
        finally:
            if selected is not None and selected.is_valid():
                selected.switch()
        if not found:
            raise gdb.GdbError("no fiber %s" % arg)


Green()
GreenFibers()
GreenBt()
