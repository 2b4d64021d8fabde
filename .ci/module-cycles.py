#!/usr/bin/env python3
"""The crate's import rules, checked from the source (run by .ci/run):

1. Top-level modules import only what ARCHITECTURE.md's table "Module dependencies" allows
   them (so the layering written there is the layering in the code), and never in a cycle.
2. Inside every folder, the files (sibling modules) never import each other in a cycle.

An import is a path in code (comments and test-only code left out: `tests.rs`,
`*_tests.rs`, `tests/` folders, everything after `#[cfg(test)]`): `crate::NAME` for rule 1;
for rule 2, `super::NAME` or `crate::<the folder's path>::NAME` in a sibling file, and in a
folder's `mod.rs` nothing (it declares and re-exports its children). Exits 1 on a break."""
import pathlib, re, sys

root = pathlib.Path(__file__).resolve().parent.parent
src = root / "src"


def code(f):
    text = f.read_text().split("#[cfg(test)]")[0]
    return "\n".join(l.split("//")[0] for l in text.splitlines())


def test_only(f):
    rel = f.relative_to(src).parts
    return f.name == "tests.rs" or f.name.endswith("_tests.rs") or "tests" in rel[:-1]


def cycles(graph):
    """Tarjan's strongly connected components of more than one node."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

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
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


failed = False

# 1. Top-level modules against the table.
tops = {p.stem if p.is_file() else p.name for p in src.iterdir()
        if p.suffix == ".rs" or p.is_dir()} - {"lib", "main"}
graph = {t: set() for t in tops}
for f in src.rglob("*.rs"):
    top = pathlib.Path(f.relative_to(src).parts[0]).stem
    if top not in tops or test_only(f):
        continue
    for m in re.finditer(r"crate::([a-z_]+)", code(f)):
        if m.group(1) in tops and m.group(1) != top:
            graph[top].add(m.group(1))

arch = (root / "ARCHITECTURE.md").read_text()
section = arch.split("\n## Module dependencies", 1)
if len(section) < 2:
    sys.exit("ARCHITECTURE.md has no section '## Module dependencies'")
allowed = {}
for line in section[1].split("\n## ")[0].splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) >= 2 and cells[0].startswith("`"):
        allowed[cells[0].strip("`")] = set(re.findall(r"`([a-z_]+)`", cells[1]))
for t in sorted(tops):
    if t not in allowed:
        print(f"ARCHITECTURE.md's module table has no row for `{t}`: add one")
        failed = True
        continue
    extra = graph[t] - allowed[t]
    if extra:
        print(f"`{t}` imports {', '.join(sorted(extra))}, which ARCHITECTURE.md does not allow it")
        failed = True
for t in sorted(set(allowed) - tops):
    print(f"ARCHITECTURE.md's module table names `{t}`, which is not a module")
    failed = True
for c in cycles(graph):
    print("import cycle among top-level modules:", ", ".join(c))
    failed = True

# 2. Sibling files inside each folder.
folders = 0
for d in sorted(p for p in src.rglob("*") if p.is_dir()):
    if "tests" in d.relative_to(src).parts:
        continue
    children = {p.stem if p.is_file() else p.name: p for p in d.iterdir()
                if (p.suffix == ".rs" and p.name != "mod.rs") or (p.is_dir() and (p / "mod.rs").exists())}
    if len(children) < 2:
        continue
    folders += 1
    dpath = "::".join(d.relative_to(src).parts)
    g = {c: set() for c in children}
    for name, p in children.items():
        files = [p] if p.is_file() else [x for x in p.rglob("*.rs")]
        for f in files:
            if test_only(f):
                continue
            text = code(f)
            # In a subfolder's own files, `super::` is that subfolder: only its mod.rs
            # speaks of this folder's children through `super::`.
            prefixes = [rf"crate::{dpath}::"]
            if p.is_file() or f.name == "mod.rs":
                prefixes.append(r"super::")
            for prefix in prefixes:
                for m in re.finditer(prefix + r"([a-z_]+)(::|\s*\})", text):
                    if m.group(1) in children and m.group(1) != name:
                        g[name].add(m.group(1))
                for m in re.finditer(prefix + r"\{([^}]*)\}", text):
                    for item in re.findall(r"(?:^|,)\s*([a-z_]+)\s*::", m.group(1)):
                        if item in children and item != name:
                            g[name].add(item)
    for c in cycles(g):
        print(f"import cycle among the files of src/{d.relative_to(src)}: {', '.join(c)}")
        for a in c:
            print(f"  {a} -> {', '.join(sorted(g[a] & set(c)))}")
        failed = True

if failed:
    sys.exit(1)
print(f"imports as ARCHITECTURE.md allows among {len(tops)} top-level modules; "
      f"no import cycle among the files of {folders} folders")
