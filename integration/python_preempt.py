"""CPython threads that must keep running while one thread never blocks (run by
python_preempt.sh natively and under the shim; the outputs must be the same).

A thread spins in pure Python for 1.5 s. Natively the GIL's switch interval (5 ms) lets every
other thread in; on fibers that only works if the spinning fiber is pre-empted, since it makes
no call that parks. Meanwhile a sleeper, a TCP ping-pong and a lock handed between two threads
each measure their longest wait; stdout says "never more than 500 ms late" or the worst figure,
so it is the same in every good run. Then a thread must reach main with _thread.interrupt_main()
while main spins in `while True: n += 1`; SIGALRM ends the wait after 10 s if it never does.
Details (the figures themselves) go to stderr. SIGUSR2 dumps every thread's stack."""
import _thread
import faulthandler
import signal
import socket
import sys
import threading
import time

BUSY_SECONDS = 1.5
LATE_LIMIT = 0.5  # generous: natively the worst is a few GIL switch intervals, 205 ms seen
# on a loaded machine; a thread starved by the busy loop waits for all of its 1.5 s
SLEEPS, SLEEP_SECONDS = 10, 0.05
CHUNKS, CHUNK_BYTES = 100, 4096
PASSES = 100

faulthandler.register(signal.SIGUSR2, all_threads=True)


def verdict(what, worst):
    """One line for stdout: the same whenever every wait stayed under LATE_LIMIT."""
    print("%s: worst %.0f ms" % (what, worst * 1000), file=sys.stderr)
    if worst < LATE_LIMIT:
        return "never more than %d ms late" % (LATE_LIMIT * 1000)
    return "once %.1f s late" % worst


# The thread that never blocks: pure Python, only a clock read every 10000 additions.
busy_window = []


def spin():
    n = 0
    start = time.monotonic()
    while time.monotonic() - start < BUSY_SECONDS:
        for _ in range(10000):
            n += 1
    busy_window.extend([start, time.monotonic()])


# (a) Sleeps of 50 ms on a fixed schedule from the moment the workers are started; lateness is
# the time past each deadline (a sleeper that cannot even start is late too).
def sleeper(results):
    worst = 0.0
    for k in range(1, SLEEPS + 1):
        deadline = launched_at + k * SLEEP_SECONDS
        time.sleep(max(0.0, deadline - time.monotonic()))
        worst = max(worst, time.monotonic() - deadline)
    results["sleeper"] = "sleeper woke %d times, %s" % (SLEEPS, verdict("sleeper", worst))


# (b) A feeder sends 4 KiB chunks over TCP on 127.0.0.1; the receiver answers each with one
# byte. A wait is the time from one answer to the next (from the start for the first: it
# includes starting the receiver and connecting).
def ping_pong(results):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()

    def receive():
        conn, _ = listener.accept()
        with conn:
            for _ in range(CHUNKS):
                want = len(received) + CHUNK_BYTES
                while len(received) < want:
                    chunk = conn.recv(want - len(received))
                    if not chunk:
                        return
                    received.extend(chunk)
                conn.sendall(b"k")

    receiver = threading.Thread(target=receive)
    receiver.start()
    sent = bytearray()
    worst, last = 0.0, launched_at
    with socket.create_connection(("127.0.0.1", port)) as feeder:
        for i in range(CHUNKS):
            chunk = bytes([i]) * CHUNK_BYTES
            feeder.sendall(chunk)
            if feeder.recv(1) != b"k":
                break
            worst, last = max(worst, time.monotonic() - last), time.monotonic()
            sent.extend(chunk)
    receiver.join()
    listener.close()
    state = "intact" if received == sent else "CORRUPT"
    results["recv"] = "recv got %d bytes in %d chunks, %s, round trips %s" % (
        len(received), CHUNKS, state, verdict("recv round trip", worst))


# (c) Two threads hand the turn back and forth through two locks; a wait is the time from one
# thread's release to the other's acquire (from the start for the first).
def lock_passing(results):
    turn = [threading.Lock(), threading.Lock()]
    turn[1].acquire()
    released_at = [launched_at]
    passes = [0]
    worst = [0.0]

    def player(me):
        other = 1 - me
        while True:
            turn[me].acquire()
            if passes[0] >= PASSES:
                turn[other].release()
                return
            worst[0] = max(worst[0], time.monotonic() - released_at[0])
            passes[0] += 1
            released_at[0] = time.monotonic()
            turn[other].release()

    players = [threading.Thread(target=player, args=(me,)) for me in (0, 1)]
    for p in players:
        p.start()
    for p in players:
        p.join()
    results["lock"] = "lock passed %d times, %s" % (passes[0], verdict("lock hand-off", worst[0]))


# The workers start first, so that each is already waiting when the spinning starts: under a
# scheduler that never pre-empts, main itself would not get to start them before it ends.
results = {}
launched_at = time.monotonic()
workers = [threading.Thread(target=part, args=(results,))
           for part in (sleeper, ping_pong, lock_passing)]
for w in workers:
    w.start()
busy = threading.Thread(target=spin)
busy.start()
for w in workers:
    w.join()
done_at = time.monotonic()
busy.join()
print("busy loop ran %.2f s from %.2f s; the others finished at %.2f s"
      % (busy_window[1] - busy_window[0], busy_window[0] - launched_at, done_at - launched_at),
      file=sys.stderr)
for key in ("sleeper", "recv", "lock"):
    print(results.get(key, "%s did not finish" % key))


# interrupt_main() from a thread while main spins without a single call.
class Alarm(Exception):
    pass


def on_alarm(signum, frame):
    raise Alarm()


def interrupt_soon():
    time.sleep(0.2)
    _thread.interrupt_main()


signal.signal(signal.SIGALRM, on_alarm)
interrupter = threading.Thread(target=interrupt_soon)
signal.alarm(10)
start = time.monotonic()
interrupter.start()
try:
    n = 0
    while True:
        n += 1
except KeyboardInterrupt:
    signal.alarm(0)
    print("interrupt_main reached the busy loop")
    print("interrupt_main: after %.0f ms" % ((time.monotonic() - start) * 1000), file=sys.stderr)
except Alarm:
    print("interrupt_main did not reach the busy loop within 10 s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late interrupt_main() now does nothing
interrupter.join()
