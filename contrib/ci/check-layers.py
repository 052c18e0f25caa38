#!/usr/bin/env python3
"""The kernel's layering, checked (docs/architecture.md).

Each folder of server/ is one layer and may use only the layers listed for
it below. Two graphs are checked:
  - includes: every `#include "LAYER/..."` in server/LAYER2/ must name LAYER2
    itself or a layer it may use;
  - symbols (with a build folder): every function or variable a layer's
    library needs from another layer's library must come from a layer it
    may use, so an upward call hidden behind a hand-written declaration is
    caught too.
Neither graph may have a cycle between folders. Modules may include only
the SDK (<xmppd/...>), system headers and files of modules/.

    contrib/ci/check-layers.py [BUILD_DIR]
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Layer -> the layers it may use (bottom first). The programs in server/
# itself (main.c, xmppctl.c) may use every layer.
ALLOWED = {
    "util": set(),
    "xml": {"util"},
    "sasl": {"util"},
    "core": {"util", "xml"},
    "net": {"core", "xml", "util"},
    "session": {"core", "xml", "util"},
    "c2s": {"session", "net", "sasl", "core", "xml", "util"},
    "s2s": {"session", "net", "sasl", "core", "xml", "util"},
    "http": {"c2s", "session", "net", "sasl", "core", "xml", "util"},
    "cluster": {"session", "core", "xml", "util"},
    "admin": {"cluster", "http", "s2s", "c2s", "session", "net", "sasl", "core", "xml", "util"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def cycles(graph):
    """Every cycle of a {node: set(nodes)} graph, as lists."""
    found, state = [], {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return found


def check_graph(kind, edges, errors):
    graph = {}
    for (a, b), where in sorted(edges.items()):
        graph.setdefault(a, set()).add(b)
        if b not in ALLOWED[a]:
            errors.append("%s: layer %s uses %s (%s), which it may not" % (kind, a, b, where))
    for c in cycles(graph):
        errors.append("%s: cycle between folders: %s" % (kind, " -> ".join(c)))


def include_edges(errors):
    edges = {}
    for path in sorted((ROOT / "server").glob("*/*.[ch]")):
        layer = path.parent.name
        if layer not in ALLOWED:
            errors.append("%s: folder %s is not a known layer (add it to %s)"
                          % (path.relative_to(ROOT), layer, Path(__file__).name))
            continue
        for inc in INCLUDE.findall(path.read_text()):
            if inc.startswith("xmppd/"):
                continue
            if "/" not in inc:
                errors.append("%s: include \"%s\" without its layer folder"
                              % (path.relative_to(ROOT), inc))
                continue
            target = inc.split("/")[0]
            if target not in ALLOWED:
                errors.append("%s: include \"%s\" names no layer" % (path.relative_to(ROOT), inc))
            elif target != layer:
                edges.setdefault((layer, target), "%s includes %s" % (path.relative_to(ROOT), inc))
    return edges


def nm(args):
    out = subprocess.run(["nm"] + args, capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def symbol_edges(build, errors):
    defined, needed = {}, {}
    for layer in ALLOWED:
        lib = build / "server" / layer / ("lib%s.a" % layer)
        if not lib.exists():
            errors.append("symbols: %s not built" % lib)
            continue
        for fields in nm(["--defined-only", "-g", str(lib)]):
            if len(fields) == 3 and fields[1] in "TDBRVWC":
                defined[fields[2]] = layer
        for fields in nm(["-u", str(lib)]):
            if len(fields) == 2:
                needed.setdefault(layer, set()).add(fields[1])
    edges = {}
    for layer, syms in needed.items():
        for sym in sorted(syms):
            owner = defined.get(sym)
            if owner and owner != layer:
                edges.setdefault((layer, owner), "lib%s.a needs %s" % (layer, sym))
    return edges


def module_includes(errors):
    kernel_headers = {p.name for p in (ROOT / "server").glob("*/*.h")}
    for path in sorted((ROOT / "modules").glob("*/*.[ch]")):
        for inc in INCLUDE.findall(path.read_text()):
            target = (path.parent / inc).resolve()
            inside_modules = str(target).startswith(str(ROOT / "modules") + "/")
            if inc.startswith("xmppd/"):
                continue
            if not inside_modules or Path(inc).name in kernel_headers and not target.exists():
                errors.append("%s: include \"%s\": modules include only the SDK (<xmppd/...>) "
                              "and files of modules/" % (path.relative_to(ROOT), inc))


def main():
    errors = []
    check_graph("includes", include_edges(errors), errors)
    if len(sys.argv) > 1:
        check_graph("symbols", symbol_edges(Path(sys.argv[1]).resolve(), errors), errors)
    module_includes(errors)
    for e in errors:
        print(e)
    if errors:
        return 1
    print("layers: %d folders, no upward use, no cycle%s" %
          (len(ALLOWED), " (includes and symbols)" if len(sys.argv) > 1 else " (includes)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
