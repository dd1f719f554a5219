"""The package layout: no import cycle (imports inside functions count), one home for the input names."""
from pathlib import Path
from fraud_lambda.imports import import_cycles, import_graph, module_imports

PKG = Path(__file__).resolve().parents[1]/'fraud_lambda'

def test_no_import_cycle_among_package_modules():
    g = import_graph(PKG)
    assert len(g) > 20 and 'handler' in g and g['handler'], g
    assert import_cycles(g) == []

def test_cycle_detection_sees_function_level_imports(tmp_path):
    "The check above can fail: a cycle closed only inside a function is found"
    pkg = tmp_path/'fraud_lambda'; pkg.mkdir()
    (pkg/'__init__.py').write_text('')
    (pkg/'a.py').write_text('from .b import x\n')
    (pkg/'b.py').write_text('def x():\n    from fraud_lambda import a\n    return a\n')
    assert module_imports(pkg/'b.py') == {'a'}
    assert import_cycles(import_graph(pkg)) == [['a', 'b']]

def test_the_30_input_names_are_defined_once():
    "Only schema.py spells out the input names; every other module imports them"
    homes = []
    for p in sorted(PKG.glob('*.py')):
        src = p.read_text()
        if "'V28'" in src or '"V28"' in src or "range(1, 29)" in src: homes.append(p.name)
    assert homes == ['schema.py'], homes

def _default_exp(nb):
    import json
    for c in json.loads(nb.read_text())['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'code' and src.startswith('#| default_exp '): return src.split()[2]

def test_modules_are_small():
    "No module over 600 lines (the generated _modidx aside) and a thin handler"
    sizes = {p.name: len(p.read_text().splitlines()) for p in PKG.glob('*.py') if p.name != '_modidx.py'}
    assert not {n: s for n, s in sizes.items() if s > 600}, sizes
    assert sizes['handler.py'] <= 200, sizes['handler.py']

def test_readme_table_is_one_to_one_with_the_notebooks():
    "Every notebook that exports a module has one row in the README's notebook -> module table, and nothing else does"
    nbs = {p.stem: _default_exp(p) for p in sorted((PKG.parent/'nbs').glob('*.ipynb'))}
    nbs = {k: v for k, v in nbs.items() if v}
    rows = {}
    for line in (PKG.parent/'README.md').read_text().splitlines():
        cells = [c.strip().strip('`') for c in line.strip().strip('|').split('|')]
        if len(cells) == 3 and cells[0] in nbs or (len(cells) == 3 and cells[0][:2].isdigit()):
            assert cells[0] not in rows, f'{cells[0]} twice in the README table'
            rows[cells[0]] = cells[1]
    assert rows == nbs
    assert len(set(nbs.values())) == len(nbs), 'two notebooks export one module'
    assert set(nbs.values()) == {p.stem for p in PKG.glob('*.py')} - {'__init__', '_modidx'}
