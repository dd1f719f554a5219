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
