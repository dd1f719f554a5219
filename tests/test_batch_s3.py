"""`fraud-lambda score` with s3:// input and output against a real moto_server over HTTP (see tests/conftest.py):
CSV streamed from S3, Parquet downloaded, outputs and the bad-row sidecar uploaded, and nothing written on failure."""
import io
import boto3, numpy as np, pandas as pd, pytest
from fraud_lambda.batch import BatchError, score_file
from fraud_lambda.cli import main
from fraud_lambda.data import synthetic_transactions
from fraud_lambda.scorer import Scorer
from handler_support import make_bundle

pytestmark = pytest.mark.timeout(120)
BUCKET = 'fraud-batch'

@pytest.fixture(scope='module')
def bundle(tmp_path_factory): return make_bundle(tmp_path_factory.mktemp('b')/'bundle')

@pytest.fixture()
def s3(aws_env):
    c = boto3.client('s3')
    c.create_bucket(Bucket=BUCKET)
    return c

def _frame(n=2_000):
    df = synthetic_transactions(n, fraud_rate=0.05, seed=3).drop(columns='Class')
    df.insert(0, 'transaction_id', [f'tx-{i:06d}' for i in range(n)])
    return df.astype({'V7': object})

def _get(s3, key, **kw): return pd.read_csv(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)['Body'].read()), **kw)

def test_csv_from_s3_to_s3_matches_local_scoring(s3, bundle, tmp_path):
    df = _frame()
    df.loc[10, 'V7'] = '1,5'
    s3.put_object(Bucket=BUCKET, Key='in/month.csv', Body=df.to_csv(index=False).encode())
    s = score_file(f's3://{BUCKET}/in/month.csv', f's3://{BUCKET}/out/month.csv', Scorer.from_path(bundle),
                   chunk_rows=300, progress=False)
    assert (s['rows'], s['scored'], s['bad_rows'], s['id_column']) == (2_000, 1_999, 1, 'transaction_id')
    out = _get(s3, 'out/month.csv', dtype={'transaction_id': str})
    err = _get(s3, 'out/month.csv.errors.csv')
    assert err.to_dict('records') == [{'row': 11, 'transaction_id': 'tx-000010', 'error': "V7 must be a number, got '1,5'"}]
    df.to_csv(tmp_path/'month.csv', index=False)
    score_file(tmp_path/'month.csv', tmp_path/'local.csv', Scorer.from_path(bundle), progress=False)
    local = pd.read_csv(tmp_path/'local.csv', dtype={'transaction_id': str})
    assert out['transaction_id'].tolist() == local['transaction_id'].tolist() and len(out) == 1_999
    assert np.allclose(out['fraud_probability'], local['fraud_probability'], rtol=0, atol=1e-12)
    assert (out['decision'] == local['decision']).all()

def test_parquet_on_s3_through_the_cli(s3, bundle, capsys):
    df = _frame(500).astype({'V7': float})
    buf = io.BytesIO()
    df.to_parquet(buf)
    s3.put_object(Bucket=BUCKET, Key='in/p.parquet', Body=buf.getvalue())
    rc = main(['score', f's3://{BUCKET}/in/p.parquet', '--out', f's3://{BUCKET}/out/p.parquet', '--bundle', str(bundle), '-q'])
    assert rc == 0, capsys.readouterr()
    assert '500 scored, 0 bad' in capsys.readouterr().out
    back = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=BUCKET, Key='out/p.parquet')['Body'].read()))
    assert len(back) == 500 and back['transaction_id'].iloc[0] == 'tx-000000'
    assert _get(s3, 'out/p.parquet.errors.csv').empty

def test_missing_object_and_bucket_write_nothing(s3, bundle):
    with pytest.raises(BatchError, match=r's3://fraud-batch/in/none.csv: cannot read it'):
        score_file(f's3://{BUCKET}/in/none.csv', f's3://{BUCKET}/out/x.csv', Scorer.from_path(bundle), progress=False)
    s3.put_object(Bucket=BUCKET, Key='in/ok.csv', Body=_frame(50).to_csv(index=False).encode())
    with pytest.raises(BatchError, match=r's3://no-such-bucket/x.csv: cannot write it'):
        score_file(f's3://{BUCKET}/in/ok.csv', 's3://no-such-bucket/x.csv', Scorer.from_path(bundle), progress=False)
    assert 'Contents' not in s3.list_objects_v2(Bucket=BUCKET, Prefix='out/')
