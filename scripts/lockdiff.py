"""Compare `pip freeze` output on stdin with a lock file: print each package whose version
differs (make test-latest shows what drifted from the lock). Always exits 0: the tests decide."""

import re
import sys


def pins(lines):
    out = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


locked = pins(open(sys.argv[1], encoding="utf-8"))
latest = pins(sys.stdin)
changed = [(n, locked.get(n, "-"), v) for n, v in sorted(latest.items()) if locked.get(n) != v and n not in ("torch", "pip", "uv")]
print(f"test-latest: {len(changed)} of {len(latest)} packages differ from {sys.argv[1]}")
for name, old, new in changed:
    print(f"  {name}: {old} -> {new}")
