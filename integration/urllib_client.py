"""A threaded urllib client: N threads, each fetching BASE/i once, all at once.

Plain Debian python3, no knowledge of libgreen. Prints one line:
    fetched=N failed=N sha256=<of the bodies in index order>
"""
import hashlib
import sys
import threading
import urllib.request

base, count = sys.argv[1], int(sys.argv[2])
bodies = [None] * count


def fetch(i):
    try:
        with urllib.request.urlopen(f"{base}/{i}", timeout=30) as response:
            bodies[i] = response.read()
    except OSError as error:
        print(f"{i}: {error}", file=sys.stderr)


threads = [threading.Thread(target=fetch, args=(i,)) for i in range(count)]
for t in threads:
    t.start()
for t in threads:
    t.join()
fetched = sum(body is not None for body in bodies)
digest = hashlib.sha256(b"".join(body or b"" for body in bodies)).hexdigest()
print(f"fetched={fetched} failed={count - fetched} sha256={digest}")
