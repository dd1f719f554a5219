"""The cron line documented in nbs/14_retrain.ipynb: it has five valid cron fields, and its command, run with test paths
substituted (synthetic data, a temporary local store, tiny report parameters), exits with the documented codes."""
import json, re, shlex, subprocess, sys
from pathlib import Path

import pytest

from fraud_lambda.data import load_transactions, synthetic_transactions

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]
MONTHS = 'jan feb mar apr may jun jul aug sep oct nov dec'.split()
DAYS = 'sun mon tue wed thu fri sat'.split()
FIELDS = [('minute', 0, 59, None), ('hour', 0, 23, None), ('day of month', 1, 31, None), ('month', 1, 12, MONTHS), ('day of week', 0, 7, DAYS)]


def cron_value(v, lo, hi, names):
    "A number or a name within [lo, hi], else None"
    if v.isdigit(): n = int(v)
    elif names and v.lower() in names: n = names.index(v.lower()) + (1 if names is MONTHS else 0)
    else: return None
    return n if lo <= n <= hi else None


def valid_cron_field(text, lo, hi, names=None) -> bool:
    "One crontab time field: lists of *, N, N-M, each with an optional /step"
    for part in text.split(','):
        m = re.fullmatch(r'(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?', part)
        if not m: return False
        rng, step = m.groups()
        if step is not None and int(step) < 1: return False
        if rng == '*': continue
        ends = [cron_value(v, lo, hi, names) for v in rng.split('-')]
        if None in ends or (len(ends) == 2 and ends[0] > ends[1]): return False
    return True


def parse_cron_line(line):
    "(five time fields, command) of a crontab line; ValueError if the fields are not valid"
    parts = line.split(None, 5)
    if len(parts) < 6: raise ValueError(f"a cron line needs 5 time fields and a command, got {len(parts)} parts: {line!r}")
    fields, command = parts[:5], parts[5]
    for f, (what, lo, hi, names) in zip(fields, FIELDS):
        if not valid_cron_field(f, lo, hi, names): raise ValueError(f"invalid {what} field {f!r}")
    return fields, command


def documented_cron_line() -> str:
    "The one crontab line in the markdown of nbs/14_retrain.ipynb"
    nb = json.loads((ROOT/'nbs'/'14_retrain.ipynb').read_text())
    lines = [l.strip() for c in nb['cells'] if c['cell_type'] == 'markdown' for l in ''.join(c['source']).splitlines()]
    found = [l for l in lines if re.match(r'^(\S+\s+){5}cd \S+ && ', l)]
    assert len(found) == 1, found
    return found[0]


def test_cron_field_validator():
    assert parse_cron_line('*/15 0-6,22 1 jan-mar MON-fri cmd --x')[0] == ['*/15', '0-6,22', '1', 'jan-mar', 'MON-fri']
    for bad, msg in [('60 2 * * * cmd', 'minute'), ('15 24 * * * cmd', 'hour'), ('15 2 0 * * cmd', 'day of month'), ('15 2 * 13 * cmd', 'month'),
                     ('15 2 * * 8 cmd', 'day of week'), ('*/0 2 * * * cmd', 'minute'), ('15 6-2 * * * cmd', 'hour'), ('15 2 * * cmd', 'needs 5 time fields')]:
        with pytest.raises(ValueError, match=msg): parse_cron_line(bad)


def test_documented_line_is_valid_cron():
    fields, command = parse_cron_line(documented_cron_line())
    assert fields == ['15', '2', '*', '*', '*']                       # 02:15 every day
    words = shlex.split(command)
    assert words[0] == 'cd' and words[2] == '&&' and words[3].endswith('fraud-lambda') and words[4] == 'retrain'
    assert '--data' in words and '--store' in words and words[-3:] == ['>>', words[-2], '2>&1']


def retrain_executable():
    "The installed `fraud-lambda retrain` if the CLI wires it; else the same function through python -c"
    exe = Path(sys.executable).with_name('fraud-lambda')
    if exe.exists() and subprocess.run([str(exe), 'retrain', '--help'], capture_output=True).returncode == 0: return shlex.quote(str(exe)) + ' retrain'
    code = 'import sys; from fraud_lambda.retrain import main; sys.exit(main(sys.argv[1:]))'
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def substituted(command, data, store, log, extra):
    "The documented command with this test's checkout, executable, data, store and log, plus `extra` options"
    w = shlex.split(command)
    args = w[5:-3]
    args[args.index('--data') + 1] = str(data); args[args.index('--store') + 1] = str(store)
    return f"cd {shlex.quote(str(ROOT))} && {retrain_executable()} {' '.join(map(shlex.quote, args + extra))} >> {shlex.quote(str(log))} 2>&1"


def test_documented_command_exit_codes(tmp_path):
    _, command = parse_cron_line(documented_cron_line())
    good = tmp_path/'latest.csv'
    synthetic_transactions(8_000, fraud_rate=0.0125, seed=1).to_csv(good, index=False)
    df = load_transactions(good).sort_values('Time', kind='stable').reset_index(drop=True)
    cut, v = int(len(df) * 0.8), [f'V{i}' for i in range(1, 29)]
    df.loc[:cut - 1, v] = -df.loc[:cut - 1, v]                    # a broken export: the training part's V signs flipped
    broken = tmp_path/'broken.csv'; df.to_csv(broken, index=False)
    store, log = tmp_path/'store', tmp_path/'fraud-retrain.log'
    store.mkdir()
    extra = ['--reports-dir', str(tmp_path/'reports'), '--n-boot', '50', '--rf-trees', '5', '--gbm-trees', '40', '--no-html']
    codes = []
    for data, run_id in [(good, 'run-cron-1'), (broken, 'run-cron-2'), (tmp_path/'missing.csv', 'run-cron-3')]:
        r = subprocess.run(['/bin/sh', '-c', substituted(command, data, store, log, extra + ['--run-id', run_id])], timeout=500)
        codes.append(r.returncode)
    text = log.read_text()
    decisions = [json.loads(l)['decision'] for l in text.splitlines() if l.startswith('{"run_id"')]
    assert (codes, decisions) == ([0, 1, 2], ['promoted', 'kept', 'failed']), text[-3000:]
    assert 'error: DataError: ' in text and 'missing.csv: no such file' in text
    assert (tmp_path/'reports'/'run-cron-2'/'retrain.md').read_text().startswith('# Retrain run-cron-2: kept')
