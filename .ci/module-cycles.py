#!/usr/bin/env python3
"""Fails if the crate's top-level modules import each other in a cycle.

Reads every `crate::NAME` path in src/ (code, not comments) and builds the graph
"module A mentions module B"; test-only code (`tests.rs`, `*_tests.rs`, after
`#[cfg(test)]`) is left out. Exits 1 and prints each cycle it finds."""
import pathlib, re, sys

src = pathlib.Path(__file__).resolve().parent.parent / "src"
tops = {p.stem if p.is_file() else p.name for p in src.iterdir()
        if p.suffix == ".rs" or p.is_dir()} - {"lib", "main"}
graph = {t: set() for t in tops}
for f in src.rglob("*.rs"):
    rel = f.relative_to(src).parts
    top = pathlib.Path(rel[0]).stem
    if top not in tops or f.name == "tests.rs" or f.name.endswith("_tests.rs"):
        continue
    text = f.read_text()
    text = text.split("#[cfg(test)]")[0]
    text = "\n".join(l.split("//")[0] for l in text.splitlines())
    for m in re.finditer(r"crate::([a-z_]+)", text):
        if m.group(1) in tops and m.group(1) != top:
            graph[top].add(m.group(1))

# Tarjan's strongly connected components.
index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in graph[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in sorted(graph):
    if v not in index: visit(v)
for c in sccs:
    print("import cycle among:", ", ".join(c))
    for a in c:
        print(f"  {a} -> {', '.join(sorted(graph[a] & set(c)))}")
if sccs:
    sys.exit(1)
print(f"no import cycles among {len(tops)} top-level modules")
