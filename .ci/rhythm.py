"""Notebook rhythm figures over nbs/*.ipynb of a checkout (usage: python .ci/rhythm.py ROOT [GLOB], e.g. . '10*'): median export-cell lines, definitions per export cell,
share of export cells followed (next code cell) by a test-like cell, per notebook group."""
import json, sys, ast, statistics, re
from pathlib import Path
root = Path(sys.argv[1]); pat = sys.argv[2] if len(sys.argv) > 2 else '*'
lines, defs, followed, total = [], [], 0, 0
for nb in sorted((root/'nbs').glob(pat + '.ipynb')):
    if nb.name == 'index.ipynb': continue
    cells = json.loads(nb.read_text())['cells']
    code = [''.join(c['source']) for c in cells if c['cell_type'] == 'code']
    for i, src in enumerate(code):
        first = src.split('\n', 1)[0]
        if not re.match(r'#\|\s*export', first): continue
        body = [l for l in src.split('\n')[1:] if l.strip()]
        try: tree = ast.parse('\n'.join(l for l in src.split('\n') if not l.startswith('#|')))
        except SyntaxError: continue
        n = sum(isinstance(x, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) for x in tree.body)
        if n == 0: continue   # imports / constants cells
        lines.append(len(body)); defs.append(n); total += 1
        nxt = code[i + 1] if i + 1 < len(code) else ''
        if not re.match(r'#\|\s*export', nxt.split('\n', 1)[0]) and re.search(r'test_eq|test_fail|assert|test_close|test_ne', nxt):
            followed += 1
print(f"{pat}: export cells with definitions {total}, median lines {statistics.median(lines)}, "
      f"definitions per cell {statistics.mean(defs):.2f}, followed by a test {followed/total:.0%}")
