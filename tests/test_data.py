"""The data module from the outside: the loader's one-line errors on bad files, and the fetch command's refusals."""
import subprocess, sys
import numpy as np, pandas as pd
import pytest
from fraud_lambda.data import (COLUMNS, FEATURES, DataError, load_transactions, synthetic_transactions,
                               fetch_dataset, file_sha256, time_split)

@pytest.fixture()
def good_csv(tmp_path):
    p = tmp_path/'tx.csv'
    synthetic_transactions(2000, fraud_rate=0.01, seed=3).to_csv(p, index=False)
    return p

def _rewrite(src, dst, fn):
    df = pd.read_csv(src, dtype=str); fn(df); df.to_csv(dst, index=False); return dst

@pytest.mark.parametrize('mutate,message', [
    (lambda d: d.pop('V9'), 'missing column(s): V9'),
    (lambda d: d.insert(3, 'merchant', 'x'), 'unexpected column(s): merchant'),
    (lambda d: d.__setitem__('V2', d['V2'].where(d.index != 10, '12,5')), "non-numeric value '12,5' at line 12"),
    (lambda d: d.__setitem__('V4', d['V4'].where(d.index != 5, '')), 'column V4 has 1 missing/NaN value(s), first at line 7'),
    (lambda d: d.__setitem__('V4', d['V4'].where(d.index != 5, 'inf')), 'column V4 has 1 infinite value(s), first at line 7'),
    (lambda d: d.__setitem__('Amount', d['Amount'].where(d.index != 0, '-12.5')), 'Amount must be >= 0; 1 negative value(s), first -12.5 at line 2'),
    (lambda d: d.__setitem__('Class', d['Class'].where(d.index != 3, '7')), 'Class must be 0 or 1; found 7 at line 5'),
])
def test_bad_files_fail_with_one_line(good_csv, tmp_path, mutate, message):
    bad = _rewrite(good_csv, tmp_path/'bad.csv', mutate)
    with pytest.raises(DataError) as e: load_transactions(bad)
    assert message in str(e.value) and 'bad.csv' in str(e.value)
    assert '\n' not in str(e.value)

def test_real_format_quoted_header_and_class(good_csv, tmp_path):
    df = pd.read_csv(good_csv)
    p = tmp_path/'quoted.csv'
    df.to_csv(p, index=False, quoting=2)  # QUOTE_NONNUMERIC: header and strings quoted
    txt = p.read_text().replace(',0\n', ',"0"\n').replace(',1\n', ',"1"\n')
    p.write_text(txt)
    out = load_transactions(p)
    assert list(out.columns) == COLUMNS and out['Class'].sum() == df['Class'].sum()

def test_cli_fetch_rejects_bad_checksum(good_csv, tmp_path):
    r = subprocess.run([sys.executable, '-m', 'fraud_lambda.cli', 'data', 'fetch', '--path', str(good_csv),
                        '--dest', str(tmp_path/'cache')], capture_output=True, text=True)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith('error: checksum mismatch'), r.stderr
    assert 'Traceback' not in r.stderr
    assert not any((tmp_path/'cache').glob('*'))

def test_cli_validate_names_problem(good_csv, tmp_path):
    bad = _rewrite(good_csv, tmp_path/'bad.csv', lambda d: d.pop('Amount'))
    r = subprocess.run([sys.executable, '-m', 'fraud_lambda.cli', 'data', 'validate', str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == f'error: {bad}: missing column(s): Amount (expected 31 columns: Time, V1..V28, Amount, Class)'

def test_truncated_wheel_not_cached(tmp_path, good_csv):
    import zipfile
    from fraud_lambda.data import _from_zip
    z = tmp_path/'w.whl'
    with zipfile.ZipFile(z, 'w', zipfile.ZIP_DEFLATED) as f: f.write(good_csv, 'fraud_analysis/datasets/raw/creditcard.csv')
    blob = z.read_bytes(); z.write_bytes(blob[:len(blob)*2//3])
    with pytest.raises(DataError, match='truncated or corrupt'): _from_zip(z, tmp_path/'x.part', False)
    assert not (tmp_path/'x.part').exists()
