#!/usr/bin/env python3
"""Reports file-level import cycles and upward imports between Rust source files in src/.

A file depends on another when it names an item through `crate::a::b` or
`super::…` (in `use` lines or inline paths). `#[cfg(test)]` items are skipped: tests
may reach anywhere. A parent `mod.rs` (or `lib.rs`) naming its own children is the
module's facade and is not counted.

Usage: .ci/import_cycles.py [PREFIX ...]   (prefixes filter the reported cycles, e.g.
`src/promql src/config.rs`). Exits 1 when a reported cycle exists.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
ROOT = os.path.normpath(ROOT)


def module_of(path):
    """Module path (list) of a source file."""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def file_of(module):
    """The file defining `module` (list), or None when it is not a file module."""
    base = os.path.join(ROOT, *module) if module else ROOT
    for candidate in (base + ".rs", os.path.join(base, "mod.rs")):
        if os.path.isfile(candidate):
            return candidate
    if not module:
        return os.path.join(ROOT, "lib.rs")
    return None


def resolve(module_path):
    """The deepest file among the prefixes of `module_path`."""
    for end in range(len(module_path), -1, -1):
        found = file_of(module_path[:end])
        if found:
            return found
    return None


def strip_tests(text):
    """Drops `#[cfg(test)]` items (a `mod tests { … }` block, or a single item)."""
    out = []
    i = 0
    while True:
        at = text.find("#[cfg(test)]", i)
        if at < 0:
            out.append(text[i:])
            break
        out.append(text[i:at])
        brace = text.find("{", at)
        semi = text.find(";", at)
        if semi >= 0 and (brace < 0 or semi < brace):
            i = semi + 1
            continue
        depth = 0
        j = brace
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        i = j + 1
    return "".join(out)


PATH = re.compile(r"\b((?:crate|super)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))+)")
GROUP = re.compile(r"\buse\s+((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def paths_in(text):
    text = re.sub(r"//[^\n]*", "", text)
    found = [m.group(1) for m in PATH.finditer(text)]
    # `use crate::a::{b, c::d}`: each member extends the prefix
    for m in GROUP.finditer(text):
        for member in re.split(r",", re.sub(r"\{[^}]*\}", "", m.group(2))):
            member = member.strip().split(" as ")[0].strip()
            if member and member != "self":
                found.append(m.group(1) + "::" + member)
    return found


def edges():
    graph = {}
    for directory, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            if path == os.path.join(ROOT, "main.rs"):
                continue
            here = module_of(path)
            is_mod = name in ("mod.rs", "lib.rs")
            with open(path, encoding="utf-8") as source:
                text = strip_tests(source.read())
            targets = set()
            for found in paths_in(text):
                parts = found.split("::")
                if parts[0] == "crate":
                    module = parts[1:]
                else:
                    module = list(here) if is_mod else list(here[:-1])
                    # `super` from a.rs is a's parent; from a/mod.rs it is a's parent too
                    if is_mod:
                        module = module[:-1]
                    parts = parts[1:]
                    while parts and parts[0] == "super":
                        module = module[:-1]
                        parts = parts[1:]
                    module = module + parts
                target = resolve(module)
                if target and target != path:
                    targets.add(target)
            graph[path] = targets
    return graph


def cycles(graph):
    def counted(source, target):
        # a facade (mod.rs / lib.rs) naming its own descendants
        if os.path.basename(source) in ("mod.rs", "lib.rs"):
            parent = os.path.dirname(source)
            return not target.startswith(parent + os.sep)
        return True

    # Tarjan's strongly connected components
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if not counted(node, target):
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result, counted


def main():
    args = sys.argv[1:]
    prefixes = [a.rstrip("/") for a in args]
    graph = edges()
    found, counted = cycles(graph)
    rel = lambda p: os.path.relpath(p, os.path.dirname(ROOT))
    reported = 0
    for component in found:
        names = [rel(p) for p in component]
        if prefixes and not any(n.startswith(p) for n in names for p in prefixes):
            continue
        reported += 1
        print("cycle: " + ", ".join(names))
        members = set(component)
        for source in component:
            for target in sorted(graph[source]):
                if target in members and counted(source, target):
                    print(f"    {rel(source)} -> {rel(target)}")
    if not reported:
        print("no import cycles" + (f" touching {' '.join(prefixes)}" if prefixes else ""))
    return 1 if reported else 0


if __name__ == "__main__":
    sys.exit(main())
