#!/bin/bash
# docs/troubleshooting.md lists every error code of include/cubeid/error.h
# with the exact message of common/error.c, so a new code cannot ship
# without its fix written down.  And every page under docs/ is reachable
# from README.md, and every relative link in README.md and docs/*.md
# points at a file that exists.
set -u
srcdir=${CUBEID_SRCDIR:-.}
PY=
for p in python3 /usr/bin/python3; do
	command -v "$p" >/dev/null 2>&1 && PY=$p && break
done
[ -n "$PY" ] || {
	echo "SKIP: python3 not found"
	exit 77
}
"$PY" - "$srcdir" <<'PYEOF'
import glob, os, re, sys

src = sys.argv[1]
n = fails = 0

def ok(cond, what):
    global n, fails
    n += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (n, what))
    fails += not cond

hdr = open(os.path.join(src, "include/cubeid/error.h")).read()
codes = re.findall(r"^#define (CUBEID_(?:OK|ERR_[A-Z0-9_]+))\s+-?\d+", hdr, re.M)
codes = [c for c in codes if c != "CUBEID_ERR_MIN"]
c_src = open(os.path.join(src, "common/error.c")).read()
msgs = {}
for m in re.finditer(r'\{(CUBEID_[A-Z0-9_]+),\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\}', c_src):
    msgs[m.group(1)] = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2)))
doc = open(os.path.join(src, "docs/troubleshooting.md")).read()
rows = {}
for line in doc.splitlines():
    m = re.match(r"\| `(CUBEID_[A-Z0-9_]+)` \| (.*?) \| (.*) \|$", line)
    if m:
        rows[m.group(1)] = (m.group(2), m.group(3))
ok(len(codes) >= 60, "%d codes in error.h" % len(codes))
missing = [c for c in codes if c not in rows]
ok(not missing, "every code has a row in docs/troubleshooting.md %s" % (missing or ""))
stale = [c for c in codes if c in rows and msgs.get(c) != rows[c][0]]
ok(not stale, "every row quotes common/error.c's message exactly %s" %
   ["%s: doc '%s', code '%s'" % (c, rows[c][0], msgs.get(c)) for c in stale] if stale else
   "every row quotes common/error.c's message exactly")
nofix = [c for c in rows if len(rows[c][1].strip()) < 10]
ok(not nofix, "every row says what to do %s" % (nofix or ""))
extra = [c for c in rows if c not in codes]
ok(not extra, "no row for a code that does not exist %s" % (extra or ""))

# reachability and links
readme = open(os.path.join(src, "README.md")).read()
pages = sorted(os.path.relpath(p, src) for p in glob.glob(os.path.join(src, "docs/*.md")))
unlinked = [p for p in pages if "(" + p + ")" not in readme and "(" + p + "#" not in readme]
ok(not unlinked, "every docs/*.md is linked from README.md %s" % (unlinked or ""))
broken = []
for f in ["README.md"] + pages:
    text = open(os.path.join(src, f)).read()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(os.path.join(src, f)), target.split("#")[0]))
        if not os.path.exists(path):
            broken.append("%s -> %s" % (f, target))
ok(not broken, "every relative link resolves %s" % (broken or ""))
print("1..%d" % n)
sys.exit(1 if fails else 0)
PYEOF
