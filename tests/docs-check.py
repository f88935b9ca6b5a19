#!/usr/bin/env python3
"""The documentation agrees with the code, mechanically:
  docs-check.py SRCROOT ALLOCD ALLOCCTL BUILDROOT
- config: the keys and sections daemon/config*.c accept (their tables, and the keys the daemon's own
  "unknown key" errors list) are those of allocd.conf(5) and docs/configuration.md; a file that
  gives every documented key, and each value allocd.conf(5) spells out, is valid for
  `allocd --check-config`; each kind of pool takes the keys docs/configuration.md gives it; the
  limits' defaults are the documented ones;
- options: allocd's and allocctl's getopt tables (allocctl map's too) are named in their man pages
  and --help, and every option the man pages name is accepted; allocctl's commands are those of
  allocctl(1) and docs/cli.md, and every key its --json prints is in docs/cli.md; allocd(8) names
  every [Service] setting of allocd.service;
- environment: every variable client/, common/ and daemon/ read is in an ENVIRONMENT section
  (the daemon's in allocd(8)'s), and every variable those sections name is read;
- symbols: every function liballoc-client.sym exports is declared in include/alloc/*.h and in a
  man/*.3.scd SYNOPSIS, with the same declaration; every errno allocd's errors become
  (common/wire.c) is in liballoc-client(3)'s RETURN VALUE;
- python: every function, method, attribute and constant of client/python/ is in docs/python.md;
- references: NAME(N) of one of the project's pages names a man/NAME.N.scd;
- commands: what README.md and docs/*.md have a user type exists (dev.sh subcommands, meson
  -D options, bench and fuzz targets, meson test names and suites, script and program paths).
A new key, option, variable or function without its docs fails here, saying which."""
import atexit
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

src, allocd, allocctl, build = sys.argv[1:5]
failures = []


def fail(msg):
    failures.append(msg)


def read(path):
    with open(os.path.join(src, path), encoding="utf-8") as f:
        return f.read()


def section(scd, name):
    """The text of a man page's '# NAME' section."""
    m = re.search(r"^# " + re.escape(name) + r"\n(.*?)(?=^# |\Z)", scd, re.M | re.S)
    return m.group(1) if m else ""


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)


# ---- configuration keys ----
config_c = read("daemon/config.c")
pool_c = read("daemon/config-pool.c")
table = re.search(r"const struct limit_key limit_keys\[\] = \{.*?\n\};\n", config_c, re.S)
m = re.search(r"static int limit_key\(.*?\n}\n", config_c, re.S)
code_daemon = set(re.findall(r'\{"([a-z_]+)", "[a-z]*", offsetof', table.group(0))) if table and m else set()
code_daemon |= set(re.findall(r'strcmp\(key, "([a-z_]+)"\)', m.group(0))) if m else set()
code_pool = set(re.findall(r'\[KEY_[A-Z_]+\] = \{"([a-z_]+)"', pool_c))
if len(code_daemon) < 5 or len(code_pool) < 5:
    fail("config: cannot find the key tables in daemon/config.c and daemon/config-pool.c; update docs-check.py")

conf5 = read("man/allocd.conf.5.scd")
man_daemon = set(re.findall(r"^\*([a-z_]+)\* =", section(conf5, "[daemon]"), re.M))
man_pool = set()
for line in section(conf5, "[pool NAME]").splitlines():
    if line and not line[0].isspace():
        man_pool |= set(re.findall(r"\*([a-z_]+)\* =", line))
confmd = read("docs/configuration.md")


def md_keys(title):
    m = re.search(r"^## " + re.escape(title) + r"\n(.*?)(?=^## |\Z)", confmd, re.M | re.S)
    return set(re.findall(r"^\| `([a-z_]+)` \|", m.group(1) if m else "", re.M))


md_daemon, md_pool = md_keys("[daemon]"), md_keys("[pool NAME]")


def compare(what, code, docs, where):
    for k in sorted(code - docs):
        fail(f"config: {what} key '{k}' is accepted by the daemon but not documented in {where}")
    for k in sorted(docs - code):
        fail(f"config: {what} key '{k}' is documented in {where} but the daemon does not accept it")


compare("[daemon]", code_daemon, man_daemon, "man/allocd.conf.5.scd")
compare("[pool NAME]", code_pool, man_pool, "man/allocd.conf.5.scd")
compare("[daemon]", code_daemon, md_daemon, "docs/configuration.md")
compare("[pool NAME]", code_pool, md_pool, "docs/configuration.md")
for s in re.findall(r"sections are ([^\"]*)\"", config_c):
    docs = set(re.findall(r"\[[a-z]+(?: NAME)?\]", s))
    if docs != {"[daemon]", "[pool NAME]"}:
        fail(f"config: the daemon says the sections are {s}")
for sec in ("[daemon]", "[pool NAME]"):
    if "# " + sec not in conf5 or "## " + sec not in confmd:
        fail(f"config: section {sec} has no heading in allocd.conf(5) or docs/configuration.md")

tmp = tempfile.mkdtemp(prefix="docs-check.")
atexit.register(shutil.rmtree, tmp, True)


def check_config(text):
    path = os.path.join(tmp, "allocd.conf")
    with open(path, "w") as f:
        f.write(text)
    r = run([allocd, "--check-config", "--config", path])
    return r.returncode, (r.stdout + r.stderr).strip()


# What the daemon's errors list as its keys: the tables above, as a user sees them.
for header, code in (("[daemon]", code_daemon), ("[pool p]\nkind = host\nsize = 4M", code_pool)):
    rc, out = check_config(f"{header}\nno_such_key = 1\n")
    m = re.search(r"keys are (.*)", out) or re.search(r"(?:accepted|keys)[^:]*: (.*)", out)
    said = set(re.findall(r"[a-z_]+", m.group(1))) if m else set()
    if rc != 78 or not said:
        fail(f"config: an unknown key in {header.splitlines()[0]} gave exit {rc} and no list of keys: {out}")
    elif said - {"and", "or"} != code:
        fail(f"config: the unknown-key error of {header.splitlines()[0]} lists {sorted(said - {'and', 'or'})}, "
             f"the code takes {sorted(code)}")

# Every documented key, with a value the docs allow, in the pool kind it is for.
values = {
    "wait_timeout": "10s", "hello_timeout": "5s", "reclaim_grace": "2min", "spin": "50us",
    "log_level": "info", "kind": None, "size": "4M", "quantum": "4K", "hugepages": "2M",
    "lock": "no", "numa_node": "0", "ranges": "0x100000000+4G", "owner": "0", "group": "0",
    "mode": "0660", "quota_per_uid": "4M", "backend": "memfd", "flags": "portable, devicemap",
    "device": "0", "isolation": "pool", "names": "job/*",
}
kinds = {"backend": "pinned", "flags": "pinned", "device": "gpu", "ranges": "fpga"}
daemon_lines = []
for k in sorted(man_daemon | md_daemon):
    if k not in values and not k.startswith("max_"):
        fail(f"config: docs-check.py has no example value for the documented key '{k}'; add one")
    daemon_lines.append(f"{k} = {values.get(k, '1')}")
rc, out = check_config("[daemon]\n" + "\n".join(daemon_lines) + "\n[pool p]\nkind = host\nsize = 4M\n")
if rc != 0:
    fail(f"config: a [daemon] with every documented key is refused: {out}")
pools = {"host": ["size = 4M", "quantum = 2M"], "pinned": ["size = 4M"], "gpu": ["size = 4M"],
         "fpga": ["ranges = 0x100000000+4G"]}
for k in sorted(man_pool | md_pool):
    if k == "kind":
        continue
    if k not in values:
        fail(f"config: docs-check.py has no example value for the documented key '{k}'; add one")
        continue
    lines = pools[kinds.get(k, "host")]
    if not any(line.startswith(k + " =") for line in lines):
        lines.append(f"{k} = {values[k]}")
text = "".join(f"[pool {kind}]\nkind = {kind}\n" + "\n".join(lines) + "\n" for kind, lines in pools.items())
rc, out = check_config(text)
if rc != 0:
    fail(f"config: pools with every documented key are refused: {out}\n{text}")

# Every value allocd.conf(5) spells out for a key (*kind* = *host* | *pinned* ...) is accepted, each alone
# in the smallest pool of the kind the key is for.
minimal = {"host": ["size = 1G"], "pinned": ["size = 1G", "backend = memfd"], "gpu": ["size = 1G", "device = 0"],
           "fpga": ["ranges = 0x100000000+4G"]}
nvalues = 0
for line in conf5.splitlines():
    if not line.startswith("*") or " = " not in line:
        continue
    parts = re.split(r"\*([a-z_]+)\* = ", line)
    for k, rhs in zip(parts[1::2], parts[2::2]):
        for v in re.findall(r"\*([A-Za-z0-9]+)\*", rhs):
            nvalues += 1
            if k == "kind":
                text = f"[pool p]\nkind = {v}\n" + "\n".join(minimal.get(v, [])) + "\n"
            else:
                kind = kinds.get(k, "pinned" if k in ("backend", "flags") else "host")
                lines = [x for x in minimal[kind] if not x.startswith(k + " =")] + [f"{k} = {v}"]
                text = f"[pool p]\nkind = {kind}\n" + "\n".join(lines) + "\n"
            rc, out = check_config(text)
            if rc != 0:
                fail(f"config: allocd.conf(5) gives '{k} = {v}'; allocd refuses it: {out}")

# The keys that are lists (each line adds): config-pool.c's table against both docs' words for them.
code_lists = set(re.findall(r'\[KEY_[A-Z_]+\] = \{"([a-z_]+)", [^}]*, true\}', pool_c))
m5 = re.search(r"a list too long for one line \(([^)]*)\)", conf5.replace("\n", " "))
mmd = re.search(r"\n\s*([^\n]*?) may be given again in a section", confmd)
for where, m in (("allocd.conf(5)", m5), ("docs/configuration.md", mmd)):
    said = set(re.findall(r"[*`]([a-z_]+)[*`]", m.group(1))) if m else set()
    if said != code_lists:
        fail(f"config: {where} says the lists (a key given on several lines) are {sorted(said)}; "
             f"they are {sorted(code_lists)}")

# The limits' defaults: config.c's initializer, docs/configuration.md's default column and allocd.conf(5).
code_defaults = dict(re.findall(r"^\s*\.(max_[a-z_]+) = (\d+),", config_c, re.M))
md_defaults = dict(re.findall(r"^\| `(max_[a-z_]+)` \| (\d+) \|", confmd, re.M))
for k, v in sorted(code_defaults.items()):
    if md_defaults.get(k) != v:
        fail(f"config: {k} defaults to {v}; docs/configuration.md says {md_defaults.get(k)}")
    m = re.search(r"^\*" + k + r"\* = _N_\n(?:\t.*\n)*?\t.*\((\d+)\)", conf5, re.M)
    if not m or m.group(1) != v:
        fail(f"config: {k} defaults to {v}; allocd.conf(5) says {m.group(1) if m else 'nothing'}")
if len(code_defaults) < 5:
    fail("config: cannot find the limits' defaults in daemon/config.c; update docs-check.py")

# docs/configuration.md's "kinds" column: the kinds of pool that take each key, no more, no fewer.
m = re.search(r"^## \[pool NAME\]\n(.*?)(?=^## |\Z)", confmd, re.M | re.S)
for k, col in re.findall(r"^\| `([a-z_]+)` \| ([a-z, ]+) \|", m.group(1) if m else "", re.M):
    if k == "kind" or k not in values:
        continue
    takes = set(minimal) if col.strip() == "all" else {x.strip() for x in col.split(",")}
    for kind in minimal:
        lines = [x for x in minimal[kind] if not x.startswith(k + " =")] + [f"{k} = {values[k]}"]
        rc, out = check_config(f"[pool p]\nkind = {kind}\n" + "\n".join(lines) + "\n")
        refused = f"not a key of {kind} pools" in out
        if refused == (kind in takes):
            fail(f"config: docs/configuration.md says {kind} pools {'take' if kind in takes else 'do not take'} "
                 f"'{k}'; allocd says: {out or 'valid'}")

# ---- command-line options ----


def getopt_table(path, func):
    c = read(path)
    m = re.search(re.escape(func) + r"\(.*?struct option opts\[\] = \{(.*?)\{0\}", c, re.S)
    longs = re.findall(r'\{"([a-z-]+)", (no|required|optional)_argument, NULL, \'(.)\'\}', m.group(1))
    m2 = re.search(r'getopt_long\([^"]*"([^"]*)"', c[m.end():])
    shorts = set(re.findall(r"([A-Za-z])", m2.group(1))) if m2 else set()
    return [(name, arg == "required", ch if ch in shorts else None) for name, arg, ch in longs]


def man_options(scd):
    """Options a man page names: in SYNOPSIS and as OPTIONS entries."""
    return set(re.findall(r"(?<!no )\*(?:-[A-Za-z], )?(--[a-z][a-z-]*)\*", scd))


allocd8, allocctl1 = read("man/allocd.8.scd"), read("man/allocctl.1.scd")
programs = [
    ("allocd", allocd8, getopt_table("daemon/main.c", "int main"), run([allocd, "--help"]).stdout),
    ("allocctl", allocctl1, getopt_table("client/allocctl.c", "static int run"), run([allocctl, "--help"]).stdout),
    ("allocctl map", allocctl1, getopt_table("client/map.c", "int map_args"),
     run([allocctl, "map", "--help"]).stdout),
]
for prog, scd, table, helptext in programs:
    named = man_options(scd)
    for name, _, short in table:
        if "--" + name not in named:
            fail(f"options: {prog} takes --{name} but its man page does not name it")
        if "--" + name not in helptext:
            fail(f"options: {prog} takes --{name} but its --help does not say so")
        if short and f"*-{short}, --{name}*" not in scd:
            fail(f"options: {prog} takes -{short} for --{name}; its man page does not say so")
        if short and f"-{short}, --{name}" not in helptext and prog != "allocctl map":
            fail(f"options: {prog} takes -{short} for --{name}; its --help does not say so")
    if prog != "allocctl map":
        for m in re.finditer(r"^\*-([A-Za-z]), --([a-z-]+)\*", scd, re.M):
            if (m.group(2), m.group(1)) not in {(n, s) for n, _, s in table}:
                fail(f"options: {prog}'s man page has -{m.group(1)} for --{m.group(2)}; the program does not")

# allocctl's commands (its commands[] table) are those of allocctl(1)'s SYNOPSIS and COMMANDS and docs/cli.md.
cli_table = read("docs/cli.md").split("| command |")[-1].split("\n\n")[0]
m = re.search(r"^\} commands\[\] = \{(.*?)^\};", read("client/allocctl.c"), re.M | re.S)
ctl_cmds = set(re.findall(r'^        \{"([a-z-]+)", cmd_', m.group(1), re.M)) if m else set()
if len(ctl_cmds) < 3:
    fail("options: cannot find allocctl's commands[] table in client/allocctl.c; update docs-check.py")
for where, named in (("allocctl(1) SYNOPSIS", set(re.findall(r"^\*allocctl\* \[\*--socket\* _PATH_\] (?:\[\*--json\*\] )?\*([a-z-]+)\*",
                                                             allocctl1, re.M))),
                     ("allocctl(1) COMMANDS", set(re.findall(r"^\*([a-z-]+)\*", section(allocctl1, "COMMANDS"), re.M))),
                     ("docs/cli.md", set(re.findall(r"^\| `([a-z-]+)[ `]", cli_table, re.M)))):
    for c in sorted(ctl_cmds - named):
        fail(f"options: allocctl has the command '{c}'; {where} does not give it")
    for c in sorted(named - ctl_cmds):
        fail(f"options: {where} gives the command '{c}'; allocctl has no such command")

# Every key allocctl --json prints is in docs/cli.md (its schema is stable: a new key is documented).
cli_words = set(re.findall(r'`"?([a-z_]+)"?`|"([a-z_]+)"', read("docs/cli.md")))
cli_words = {a or b for a, b in cli_words}
for path in sorted(glob.glob("client/allocctl*.c", root_dir=src) + ["client/map.c"]):
    for k in sorted(set(re.findall(r'json_object_object_add\(\w+, "([a-z_]+)"', read(path)))):
        if k not in cli_words:
            fail(f"options: {path} prints the JSON key '{k}'; docs/cli.md does not document it")

# Every option the man pages name is accepted: getopt says "unrecognized" otherwise.
code_opts = {prog: {"--" + n: req for n, req, _ in table} for prog, _, table, _ in programs}
for opt in sorted(man_options(allocd8)):
    arg = {"--config": [os.path.join(tmp, "allocd.conf")], "--socket": [os.path.join(tmp, "s")],
           "--log-level": ["debug"]}.get(opt, [])
    r = run([allocd, "--check-config", opt] + arg)
    if r.returncode == 2 or "unrecognized" in r.stderr or opt not in code_opts["allocd"]:
        fail(f"options: allocd(8) names {opt}; allocd refuses it: {r.stderr.strip()}")
m = re.search(r"\*map\* _POOL_ (.*)", allocctl1)
map_opts = set(m.group(1).split("*")[1::2]) if m else set()
for opt in sorted(man_options(allocctl1)):
    if opt in map_opts:
        arg = {"--svg": os.path.join(tmp, "m.svg"), "--width": "80"}.get(opt, "4")
        r = run([allocctl, "--socket", os.path.join(tmp, "none"), "map", "p", opt, arg])
        known = opt in code_opts["allocctl map"]
    else:
        r = run([allocctl, "--socket", os.path.join(tmp, "none"), opt, "status"] if opt != "--socket" else
                [allocctl, opt, os.path.join(tmp, "none"), "status"])
        known = opt in code_opts["allocctl"]
    if r.returncode == 2 or "unrecognized" in r.stderr or not known:
        fail(f"options: allocctl(1) names {opt}; allocctl refuses it: {r.stderr.strip()}")

# allocd(8) says what each setting of allocd.service's [Service] is for.
unit = read("systemd/allocd.service.in")
service = re.search(r"^\[Service\]\n(.*?)(?=^\[|\Z)", unit, re.M | re.S)
for k in sorted(set(re.findall(r"^([A-Z][A-Za-z]+)=", service.group(1) if service else "", re.M))):
    if "*" + k + "=" not in allocd8:
        fail(f"options: allocd.service sets {k}=; allocd(8) does not say why")

# ---- environment ----


def env_read(dirs):
    found = {}
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(src, d, "**", "*.c"), recursive=True)):
            c = read(os.path.relpath(path, src))
            names = re.findall(r'getenv\("([A-Z_0-9]+)"\)', c) + re.findall(r'env_switch\("([A-Z_0-9]+)"', c)
            names += [n + "<device>" for n in re.findall(r'"([A-Z_0-9]+_)%d"', c) if "getenv(var)" in c]
            for n in names:
                found.setdefault(n, os.path.relpath(path, src))
    return found


def env_documented(scd):
    return set(re.findall(r"\*\$?([A-Z][A-Z_0-9]+(?:<device>)?)\*", section(scd, "ENVIRONMENT")))


man_env = {p: env_documented(read(p)) for p in sorted(glob.glob("man/*.scd", root_dir=src))}
all_env = set().union(*man_env.values())
code_env = env_read(["client", "common", "daemon"])
for n, where in sorted(code_env.items()):
    if n not in all_env:
        fail(f"environment: {where} reads {n}, which no man page's ENVIRONMENT section describes")
for n, where in sorted(env_read(["daemon", "common"]).items()):
    if n not in man_env["man/allocd.8.scd"]:
        fail(f"environment: allocd reads {n} ({where}); allocd(8)'s ENVIRONMENT does not describe it")
for p, names in man_env.items():
    for n in sorted(names - set(code_env)):
        fail(f"environment: {p}'s ENVIRONMENT describes {n}, which nothing in client/, common/ or daemon/ reads")

# ---- exported symbols ----


HEADER_ONLY = set()


def declarations(text):
    """name -> normalized declaration, from C text (a header, a SYNOPSIS block)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)
    out = {}
    header_only = HEADER_ONLY
    for stmt in re.split(r"[;{}]", text):
        s = " ".join(stmt.split())
        s = re.sub(r"__attribute__\s*\(\(.*?\)\)\s*", "", s)
        inline = re.search(r"\b(?:static inline|FALLOC_FN|FALLOC_HOST_FN)\b", s) is not None
        s = re.sub(r"\b(?:extern|static inline|FALLOC_FN|FALLOC_HOST_FN)\s+", "", s).strip()
        m = re.match(r"^[A-Za-z_][\w\s\*]*?\b([a-z_][a-z_0-9]*)\s*\((.*)\)$", s, re.S)
        if m and not s.startswith(("typedef", "return", "struct alloc_", "if", "while")) or (
                m and s.startswith("struct alloc_") and "(" in s):
            out[m.group(1)] = re.sub(r"\s*([(),*])\s*", r"\1", s)
            if inline:
                header_only.add(m.group(1))
    return out


headers, header_only = {}, HEADER_ONLY
for h in sorted(glob.glob(os.path.join(src, "include/alloc/*.h"))):
    headers.update(declarations(read(os.path.relpath(h, src))))
man3 = {}
for p in sorted(glob.glob("man/*.3.scd", root_dir=src)):
    for block in re.findall(r"^```\n(.*?)^```", section(read(p), "SYNOPSIS"), re.M | re.S):
        for name, decl in declarations(block).items():
            man3[name] = (p, decl)
sym = re.sub(r"/\*.*?\*/", "", read("client/liballoc-client.sym"), flags=re.S)
patterns = re.findall(r"^\s*([a-z_*][a-z_0-9*]*);", sym.split("local:")[0], re.M)
for pat in patterns:
    rx = re.compile("^" + pat.replace("*", "[a-z_0-9]*") + "$")
    names = [n for n in headers if rx.match(n)]
    if not names:
        fail(f"symbols: liballoc-client.sym exports {pat}, which include/alloc/*.h do not declare")
    for n in names:
        if n not in man3:
            fail(f"symbols: {n} is exported and declared in include/alloc but in no man/*.3.scd SYNOPSIS")
        elif man3[n][1] != headers[n]:
            fail(f"symbols: {n}: {man3[n][0]} says\n    {man3[n][1]}\n  include/alloc says\n    {headers[n]}")
for n, (p, _) in sorted(man3.items()):
    exported = any(re.match("^" + pat.replace("*", "[a-z_0-9]*") + "$", n) for pat in patterns)
    if n in headers and n not in header_only and not exported:
        fail(f"symbols: {p} documents {n}, which liballoc-client.sym does not export")
    elif n not in headers and not n.startswith(("falloc_", "cu")):
        fail(f"symbols: {p} documents {n}, which include/alloc/*.h do not declare")
wire = read("common/wire.c")
rv = section(read("man/liballoc-client.3.scd"), "RETURN VALUE")
for name, e in re.findall(r'\{"([A-Z_]+)", (E[A-Z0-9]+)\}', wire):
    if f"*-{e}*" not in rv:
        fail(f"symbols: allocd's error {name} is -{e} in liballoc-client; its RETURN VALUE does not list -{e}")
if len(patterns) != len(set(patterns)):
    fail(f"symbols: liballoc-client.sym names {sorted({p for p in patterns if patterns.count(p) > 1})} twice")

# ---- the Python module ----
# Every function, method, attribute and constant of client/python/ is named in docs/python.md (a client's
# __enter__ and __exit__: "a context manager").
pydoc = read("docs/python.md")
for path in sorted(glob.glob("client/python/*.c", root_dir=src)):
    c = read(path)
    names = set(re.findall(r'PyModule_AddIntConstant\(\w+, "([A-Za-z_0-9]+)"', c))
    for block in re.findall(r"Py(?:Method|Member|GetSet)Def \w+\[\] = \{(.*?)\n\};", c, re.S):
        names |= set(re.findall(r'\{"([A-Za-z_][A-Za-z_0-9]*)"', block))
    for n in sorted(names - {"__enter__", "__exit__"}):
        if not re.search(r"\b" + re.escape(n) + r"\b", pydoc):
            fail(f"python: {path} defines {n}; docs/python.md does not name it")

# ---- references between pages ----
# NAME(N) of the project's own (allocd*, alloc*, falloc*, liballoc*) is a man/NAME.N.scd.
for doc in ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=src)) + sorted(glob.glob("man/*.scd", root_dir=src)):
    for name, n in sorted(set(re.findall(r"\b((?:lib)?f?alloc[a-z_.-]*)\*?\(([1-9])\)", read(doc)))):
        if not os.path.exists(os.path.join(src, f"man/{name}.{n}.scd")):
            fail(f"references: {doc} refers to {name}({n}); there is no man/{name}.{n}.scd")

# ---- commands a user types ----
devsh = read("dev.sh")
m = re.search(r'case "\$cmd" in\n(.*?)\nesac', devsh, re.S)
dev_cmds = set(re.findall(r"^([a-z|-]+)\)", m.group(1), re.M)) if m else set()
dev_cmds = {c for g in dev_cmds for c in g.split("|")}
meson_opts = set(re.findall(r"option\('([a-z_]+)'", read("meson_options.txt")))
builtin = {"buildtype", "b_sanitize", "b_lundef", "prefix", "sysconfdir", "localstatedir", "libdir", "werror",
           "b_coverage", "debug", "optimization", "c_args", "default_library", "warning_level", "b_ndebug",
           "python.install_env", "pkg_config_path", "cpp_args", "c_link_args", "b_lto", "bindir"}
checked_commands = 0
try:  # what `meson introspect --tests` prints, written at setup
    with open(os.path.join(build, "meson-info", "intro-tests.json"), encoding="utf-8") as f:
        tests = json.load(f)
except (OSError, ValueError) as e:
    tests = None
    fail(f"commands: cannot read the build's list of tests ({e}); cannot check the test names the docs give")
test_names = {t["name"] for t in tests or []}
suites = {su.split(":")[-1] for t in tests or [] for su in t["suite"]}
# A test this build leaves out (-Dpython=disabled, a sanitized build) is still one the docs may name.
for d in ["."] + [d for d in sorted(os.listdir(src)) if os.path.isdir(os.path.join(src, d))
                 and not d.startswith((".", "build", "subprojects"))]:
    mb = os.path.join(d, "meson.build")
    if not os.path.exists(os.path.join(src, mb)):
        continue
    test_names |= set(re.findall(r"\btest\('([a-z][a-z0-9-]*)'", read(mb)))
    suites |= set(re.findall(r"suite: '([a-z][a-z0-9-]*)'", read(mb)))
m = re.search(r"^fuzz\)\n\s*targets=\(([a-z ]+)\)", devsh, re.M)
fuzz_targets = set(m.group(1).split()) if m else set()
for t in sorted(fuzz_targets):
    if not os.path.exists(os.path.join(src, f"fuzz/fuzz-{t}.c")):
        fail(f"commands: dev.sh fuzzes '{t}', which has no fuzz/fuzz-{t}.c")
for t in glob.glob("fuzz/fuzz-*.c", root_dir=src):
    if t[10:-2] not in fuzz_targets:
        fail(f"commands: {t} is not among dev.sh fuzz's targets")
m = re.search(r"^dev\.sh +(.*)$", read("docs/HACKING.md"), re.M)
listed = set(re.findall(r"(?:^|\| )([a-z]+)", m.group(1))) if m else set()
if listed != dev_cmds:
    fail(f"commands: docs/HACKING.md says dev.sh takes {sorted(listed)}; it takes {sorted(dev_cmds)}")
paths = (r"(?<![\w/.-])((?:\./)?(?:tests|bench|scripts|fuzz|tools|systemd|docs|man)/[\w./-]+"
         r"\.(?:sh|py|c|md|scd|service|socket|in)|\.ci/run)")


def built(d, n):
    """build*/D/N: something in D/ it is built from; True for a directory only a test makes (build/nspawn/)."""
    return not os.path.isdir(os.path.join(src, d)) or any(
        glob.glob(os.path.join(src, d, x)) for x in (n, n + ".*", n.removeprefix("test-") + ".*"))


# Options the docs name to say that they do not exist (allocd(8): "no --takeover").
not_options = {"--takeover"}

# (what a user types, its regex, whether it exists, what to say when not); each regex's group is the word to check.
typed = [
    ("./dev.sh COMMAND", r"\./dev\.sh ([a-z][a-z-]*)", lambda c: c in dev_cmds,
     f"dev.sh has no such command ({sorted(dev_cmds)})"),
    ("./dev.sh bench NAME", r"\./dev\.sh bench ([a-z][a-z-]*)",
     lambda b: b == "python" or os.path.exists(f"{src}/bench/{b}-bench.c"),
     "there is no bench/NAME-bench.c"),
    ("./dev.sh fuzz TARGET", r"\./dev\.sh fuzz ([a-z][a-z-]*)", lambda t: t in fuzz_targets,
     f"dev.sh fuzzes {sorted(fuzz_targets)}"),
    ("meson test NAME", r"meson test (?:-C \S+ )?([a-z][a-z0-9-]*)", lambda t: tests is None or t in test_names,
     "there is no such test"),
    ("--suite NAME", r"--suite ([a-z][a-z0-9-]*)", lambda t: tests is None or t in suites,
     f"the suites are {sorted(suites)}"),
    ("a built program", r"\b(build[a-z-]*/[a-z]+/[a-z][a-z0-9-]*)(?![\w-])", lambda b: built(*b.split("/")[1:]),
     "nothing in the source tree builds it"),
    ("allocctl COMMAND", r"^(?:\S*/)?allocctl (?:--json |-j |--socket \S+ )*([a-z][a-z-]*)", lambda c: c in ctl_cmds,
     "allocctl has no such command"),
    ("allocd OPTION", r"^(?:\S*/)?(?:allocd|\./dev\.sh run)(?: --[a-z-]+(?: [A-Za-z0-9_./]+)?)*? (--[a-z][a-z-]*)",
     lambda o: o in code_opts["allocd"] or o in not_options, "allocd has no such option"),
    ("-DOPTION=", r"-D ?([a-z_.]+)=", lambda o: o in meson_opts or o in builtin,
     "meson_options.txt has no such option"),
    ("a path", paths, lambda p: os.path.exists(os.path.join(src, p)), "it does not exist"),
]
for doc in ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=src)):
    text = read(doc)
    code = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text))
    for name, opts in re.findall(r"\./dev\.sh bench ([a-z]+)((?: --?[a-z-]+(?: [^ #`-][^ #`]*)?)+)", code):
        src_c = os.path.join(src, f"bench/{name}-bench.c")
        text_c = read(f"bench/{name}-bench.c") + read("bench/bench-util.c") if os.path.exists(src_c) else ""
        for o in re.findall(r"(--[a-z-]+)", opts):
            checked_commands += 1
            if text_c and f'"{o[2:]}"' not in text_c and f'"{o}' not in text_c:
                fail(f"commands: {doc} has ./dev.sh bench {name} {o}; bench/{name}-bench.c takes no {o}")
    for what, rx, exists, why in typed:
        for word in sorted(set(re.findall(rx, code, re.M))):
            checked_commands += 1
            if not exists(word):
                fail(f"commands: {doc} has `{word}` ({what}); {why}")

for f in failures:
    print("docs-check:", f, file=sys.stderr)
if failures:
    print(f"docs-check: {len(failures)} disagreements between the docs and the code", file=sys.stderr)
    sys.exit(1)
print(f"docs-check: {len(code_daemon)} [daemon] and {len(code_pool)} pool keys ({nvalues} values), "
      f"{sum(len(t) for _, _, t, _ in programs)} options, {len(code_env)} environment variables, "
      f"{len(man3)} documented functions ({len(patterns)} patterns of liballoc-client.sym), "
      f"{checked_commands} commands in README.md and docs/*.md: the docs and the code agree")
