#!/usr/bin/env python3
"""The layer rules of docs/design.md ("Layout"), checked by a machine.

  1. #include lines: a file in folder F includes only headers of F or of a
     folder F may use; <cubeid/X.h> counts as a header of the folder that
     implements X.h (OWNER below).  Public headers follow the same table.
  2. Objects: each library holds objects of its own folders only, and an
     object calls only into folders its folder may use (nm, so a call hidden
     behind a weak symbol counts too).  The CLI calls only cubeid_* in
     libcubeid.
     No library calls into a program's main file.  The files of the
     folders in ACYCLIC do not call each other in a circle.
  3. libcubeid.so exports only cubeid_* (nm -D --defined-only).
  4. A public header that names a style guide names a file that exists.

Usage: layering.py SRCDIR BUILDDIR.  Prints every broken rule; exits 1 if
there is one.
"""
import glob
import os
import re
import subprocess
import sys

# The table of docs/design.md: folder -> the folders it may use.
LIB = ["common", "pkcs11", "spiffe", "tls", "keycloak", "picod", "cluster"]
USES = {
    "common": [],
    "pkcs11": ["common"],
    "spiffe": ["common", "pkcs11"],
    "tls": ["common", "pkcs11", "spiffe"],
    "keycloak": ["common", "pkcs11", "spiffe"],
    "cluster": ["common", "pkcs11", "spiffe"],
    "picod": ["common", "pkcs11", "spiffe", "tls"],
    "agent": LIB,
    "cli": [],  # the public API only: <cubeid/*.h>, cubeid_* symbols
    "examples": [],  # the reference Router and WorkloadManager: the same
}

# The folders of programs that may use the public API only.
PUBLIC_ONLY = ("cli", "examples")

# Which folder implements each public header.
OWNER = {
    "error.h": "common",
    "log.h": "common",
    "atomic-dir.h": "common",
    "b64url.h": "common",
    "file.h": "common",
    "os.h": "common",
    "token.h": "pkcs11",
    "key-wrap.h": "spiffe",  # the document; the token work is pkcs11/p11-wrap.h
    "token-info.h": "pkcs11",
    "spiffe.h": "spiffe",
    "jwt.h": "spiffe",
    "jwt-keys.h": "spiffe",
    "ca.h": "spiffe",
    "x509svid.h": "spiffe",
    "workloadapi.h": "spiffe",
    "tls.h": "tls",
    "oidc.h": "keycloak",
    "picod.h": "picod",
    "picod-auth.h": "picod",
    "cluster.h": "cluster",
}

# Known debts, each a (folder, what it uses) pair that breaks the table
# today, with the files (by name, without .c/.o) allowed to break it.  The
# list only shrinks: remove a line when its debt is paid.  A line that no
# longer matches anything is reported, so it cannot linger.
DEBTS = {
    # `cubeid entry` loads the agent's config and entries and attests a pid
    # with the agent's parts (agent/config.c, entries*.c, attest*.c); the
    # global --config of every command (tool-common) loads the same config.
    ("cli", "agent"): {"tool-entry", "tool-common"},
}

# Library code never calls back into a program's main file: a service gets
# what it needs through an ops struct (agent/daemon.h, struct agent_ops) or
# its arguments.  Known debts, as symbols; the same rules as DEBTS apply.
CALLBACK_DEBTS = set()

# Folders whose files call each other without a circle (spiffe/: the CA,
# its state directory and the JWT keys once called each other in one).
# pkcs11/ still has one among its files.
ACYCLIC = {"common", "spiffe", "tls", "keycloak", "picod", "cluster"}

problems = []
used_debts = set()
used_callbacks = set()


def allowed(frm, to, rel):
    if frm == to or to in USES.get(frm, []):
        return True
    stem = os.path.splitext(os.path.basename(rel))[0]
    if any(stem == f or stem.endswith("-" + f) for f in DEBTS.get((frm, to), ())):
        used_debts.add((frm, to))
        return True
    return False


def folder_of(path):
    return path.split("/", 1)[0]


def check_includes(src):
    folders = [f for f in USES if os.path.isdir(os.path.join(src, f))]
    files = []
    for f in folders:
        files += glob.glob(os.path.join(src, f, "*.[ch]"))
    files += glob.glob(os.path.join(src, "include", "cubeid", "*.h"))
    inc_re = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
    for path in sorted(files):
        rel = os.path.relpath(path, src)
        if rel.startswith("include/"):
            name = os.path.basename(rel)
            if name not in OWNER:
                problems.append(f"{rel}: a public header with no owner folder in tests/layering.py")
                continue
            frm = OWNER[name]
        else:
            frm = folder_of(rel)
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for kind, inc in inc_re.findall(text):
            if kind == "<" and inc.startswith("cubeid/"):
                to = OWNER.get(inc[len("cubeid/"):])
                if to is None:
                    problems.append(f"{rel}: includes <{inc}>, which is not a public header")
                    continue
                if frm in PUBLIC_ONLY:
                    continue  # the public API is the CLI's to use
            elif kind == '"' and frm in PUBLIC_ONLY and inc != "config.h" and not inc.startswith(frm + "/"):
                # a public-API-only folder includes its own headers and <cubeid/*.h> only
                if folder_of(inc) not in USES or "/" not in inc:
                    problems.append(f"{rel}: includes \"{inc}\"; {frm}/ includes only {frm}/ and <cubeid/*.h>")
                    continue
                to = folder_of(inc)
            elif kind == '"' and "/" in inc:
                to = folder_of(inc)
                if to not in USES and to != "tests":
                    continue  # config.h and the like
            else:
                continue
            if to == "tests":
                problems.append(f"{rel}: includes \"{inc}\" from tests/")
            elif not allowed(frm, to, rel):
                problems.append(f"{rel}: includes {inc} ({frm}/ may not use {to}/)")


def nm(path, *args):
    out = subprocess.run(["nm", *args, path], capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            syms.append((parts[-2], parts[-1]))
    return syms


def members(src, build, archive, prefix):
    """The objects in a libtool convenience archive, as build-tree paths."""
    names = subprocess.run(["ar", "t", os.path.join(build, ".libs", archive)],
                           capture_output=True, text=True, check=True).stdout.split()
    objs = {}
    for n in names:
        if not n.startswith(prefix):
            problems.append(f"{archive}: holds {n}, an object of another library")
            continue
        stem = n[len(prefix):-len(".o")]
        hits = glob.glob(os.path.join(build, "*", ".libs", n)) + \
            glob.glob(os.path.join(build, "*", "*", ".libs", n))
        # An object left over from a file that moved has no source beside it.
        hits = [h for h in hits
                if any(os.path.exists(os.path.join(top, os.path.dirname(os.path.dirname(
                    os.path.relpath(h, build))), stem + ".c")) for top in (src, build))]
        if len(hits) != 1:
            problems.append(f"{archive}: cannot tell which folder {n} comes from ({len(hits)} candidates)")
            continue
        rel = os.path.relpath(hits[0], build)
        objs[rel] = "spiffe" if rel.startswith("google/") else folder_of(rel)
    return objs


def check_objects(src, build):
    lib = members(src, build, "libcubeid-internal.a", "libcubeid_internal_la-")
    agent = members(src, build, "libagent.a", "libagent_la-")
    helper = members(src, build, "libhelper.a", "libhelper_la-")
    for rel, f in lib.items():
        if f not in LIB:
            problems.append(f"libcubeid: holds {rel}, which is not in a library folder")
    for rel, f in agent.items():
        if f != "agent":
            problems.append(f"libagent: holds {rel}, which is not in agent/")
    for rel, f in helper.items():
        if f != "cli":
            problems.append(f"libhelper: holds {rel}, which is not in cli/")
    # The programs' own objects.
    progs = {}
    for pat, f in (("agent/cubeid_agent-*.o", "agent"), ("cli/cubeid-*.o", "cli"),
                   ("examples/*-*.o", "examples")):
        for p in glob.glob(os.path.join(build, pat)):
            progs[os.path.relpath(p, build)] = f
    if not any(f == "cli" for f in progs.values()):
        problems.append("the CLI's objects (cli/cubeid-*.o) are not in the build tree")

    defined = {}  # symbol -> folder
    in_main = set()  # symbols the programs' own objects define
    for rel in progs:
        for t, s in nm(os.path.join(build, rel), "--defined-only", "-g"):
            in_main.add(s)
    for group in (lib, agent, helper):
        for rel, f in group.items():
            for t, s in nm(os.path.join(build, rel), "-u"):
                if s in in_main:
                    if s in CALLBACK_DEBTS:
                        used_callbacks.add(s)
                    else:
                        problems.append(f"{rel}: calls {s}, which a program's main file defines")
    for group in (lib, agent, helper, progs):
        for rel, f in group.items():
            for t, s in nm(os.path.join(build, rel), "--defined-only", "-g"):
                defined.setdefault(s, f)
    # Calls between the files of one folder, for the circle check.
    owner = {}
    for rel in lib:
        for t, s in nm(os.path.join(build, rel), "--defined-only", "-g"):
            owner.setdefault(s, rel)
    calls = {rel: set() for rel in lib}
    for rel, f in lib.items():
        for t, s in nm(os.path.join(build, rel), "-u"):
            to = owner.get(s)
            if to is not None and to != rel and lib[to] == f and f in ACYCLIC:
                calls[rel].add(to)
    for cycle in circles(calls):
        names = ", ".join(sorted(os.path.basename(c).split("-", 1)[1] for c in cycle))
        problems.append(f"{lib[cycle[0]]}/: these files call each other in a circle: {names}")

    for group in (lib, agent, helper, progs):
        for rel, f in group.items():
            for t, s in nm(os.path.join(build, rel), "-u"):
                to = defined.get(s)
                if to is None or to == f:
                    continue
                if f in PUBLIC_ONLY and to in LIB:
                    if s.startswith("cubeid_"):
                        continue
                    if not allowed(f, to, rel):
                        problems.append(f"{rel}: calls {s} ({to}/), not the public API")
                    continue
                if not allowed(f, to, rel):
                    problems.append(f"{rel}: uses {s} ({f}/ may not use {to}/)")


def circles(graph):
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def check_exports(build):
    so = os.path.join(build, ".libs", "libcubeid.so")
    if not os.path.exists(so):
        problems.append(".libs/libcubeid.so is not in the build tree")
        return
    bad = [s for t, s in nm(so, "-D", "--defined-only") if not s.startswith("cubeid_")]
    for s in sorted(bad):
        problems.append(f"libcubeid.so exports {s}, which is not cubeid_*")


def check_style_refs(src):
    ref = re.compile(r"\b([\w./-]*[Ss][Tt][Yy][Ll][Ee][\w./-]*\.md)\b")
    for path in sorted(glob.glob(os.path.join(src, "include", "cubeid", "*.h"))):
        with open(path, encoding="utf-8") as fh:
            for name in ref.findall(fh.read()):
                if not os.path.exists(os.path.join(src, name)):
                    problems.append(f"{os.path.relpath(path, src)}: points at {name}, which does not exist")


def main():
    src, build = sys.argv[1], sys.argv[2]
    check_includes(src)
    check_objects(src, build)
    check_exports(build)
    check_style_refs(src)
    for d in sorted(set(DEBTS) - used_debts):
        problems.append(f"tests/layering.py: the debt {d[0]}/ -> {d[1]}/ is paid; remove it from DEBTS")
    for s in sorted(CALLBACK_DEBTS - used_callbacks):
        problems.append(f"tests/layering.py: the callback {s} is gone; remove it from CALLBACK_DEBTS")
    for p in problems:
        print("FAIL:", p)
    if problems:
        return 1
    print(f"layering: {len(USES)} folders, includes, objects and exports as docs/design.md says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
