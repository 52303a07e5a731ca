"""CPython's threading, socket and signal behaviour that needs its threads to be threads
(run by python_threads.sh natively and under the shim; the outputs must be the same).

faulthandler's watchdog thread blocks every signal; with signal masks per carrier, SIGALRM
then never reached main's blocking recv. A hang dumps the stacks and exits (30 s)."""
import faulthandler
import signal
import socket
import threading
import time

faulthandler.dump_traceback_later(30, exit=True)


class Alarm(Exception):
    pass


def on_alarm(signum, frame):
    raise Alarm()


signal.signal(signal.SIGALRM, on_alarm)
a, b = socket.socketpair()

# 1. alarm() interrupts main's blocking recv while the watchdog thread blocks every signal.
signal.alarm(1)
start = time.monotonic()
try:
    a.recv(10)
    print("recv returned without the alarm")
except Alarm:
    print("alarm interrupted recv after %d s" % round(time.monotonic() - start))

# 2. A blocking sendall of 10 MB to a thread that reads it all.
data = bytes(range(256)) * 40960
received = bytearray()


def read_all():
    while len(received) < len(data):
        chunk = b.recv(65536)
        if not chunk:
            break
        received.extend(chunk)


reader = threading.Thread(target=read_all)
reader.start()
a.sendall(data)
reader.join()
print("sendall delivered %d bytes, %s" % (len(received), "intact" if received == data else "CORRUPT"))

# 3. Every thread has its own native id, main's is not one of them.
ids = set()
lock = threading.Lock()


def note_id():
    with lock:
        ids.add(threading.get_native_id())
    time.sleep(0.1)


threads = [threading.Thread(target=note_id) for _ in range(20)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("native ids distinct: %s" % (len(ids) == 20 and threading.get_native_id() not in ids))
faulthandler.cancel_dump_traceback_later()
