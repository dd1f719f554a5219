"""fraud_lambda.store against a real moto_server over HTTP on 127.0.0.1 (see tests/conftest.py)."""
import json, socket, threading, time, urllib.request, uuid
from pathlib import Path

import boto3, numpy as np, pytest

from fraud_lambda.bundle import MANIFEST, load_bundle, write_bundle
from fraud_lambda.store import (NO_CHAMPION, POINTER, S3Backend, ModelStore, StoreAccessDenied, StoreConflict, StoreCorrupt,
                                StoreError, StoreNotFound, StoreUnavailable, open_store)
from conftest import MotoServer, free_port

pytestmark = pytest.mark.timeout(60)
BUCKET, PREFIX = 'fraud-models', 'prod'


def make_bundle(parent, ap, version=None):
    "A tiny bundle with holdout metrics"
    v = version or f'20260101T{uuid.uuid4().int % 10**6:06d}Z-{uuid.uuid4().hex[:8]}'
    man = {'model_version': v, 'metrics': {'holdout': {'average_precision': ap, 'roc_auc': 0.98}}}
    arrays = {'coef': np.linspace(0, ap, 50_000), 'bias': np.array([ap])}
    return write_bundle(Path(parent)/f'b-{uuid.uuid4().hex[:6]}', man, arrays), v


def files_in(d):
    return sorted(p.relative_to(d).as_posix() for p in Path(d).rglob('*') if p.is_file()) if Path(d).exists() else []


@pytest.fixture()
def s3(aws_env):
    "A boto3 client on the session moto_server, with the bucket created"
    c = boto3.client('s3')
    c.create_bucket(Bucket=BUCKET)
    return c


@pytest.fixture()
def store(s3):
    return open_store(f's3://{BUCKET}/{PREFIX}')


def key(*parts): return '/'.join([PREFIX, 'models', *parts])


def test_publish_pointer_pull_verify_roundtrip_with_sse(store, s3, tmp_path):
    b, v = make_bundle(tmp_path, 0.8)
    steps = []
    r = store.publish('fraud', b, promote=True, progress=lambda d, t: steps.append((d, t)))
    assert (r['status'], r['champion']['version'], r['champion']['previous']) == ('published', v, None)
    # progress: one pass over the bytes actually sent (not the SigV4 hashing pass), ending at the total
    assert steps[-1] == (r['bytes'], r['bytes']) and all(a[0] <= b_[0] for a, b_ in zip(steps, steps[1:]))
    ptr = json.loads(s3.get_object(Bucket=BUCKET, Key=key('fraud', POINTER))['Body'].read())
    assert ptr['version'] == v and ptr['manifest_sha256'] == r['manifest_sha256']
    keys = [o['Key'] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f'{PREFIX}/')['Contents']]
    assert {key('fraud', v, 'model.npz'), key('fraud', v, MANIFEST), key('fraud', POINTER)} <= set(keys)
    assert any('/_log/' in k for k in keys)
    for k in keys: assert s3.head_object(Bucket=BUCKET, Key=k)['ServerSideEncryption'] == 'AES256', k
    path = store.pull('fraud', cache_dir=tmp_path/'cache')
    np.testing.assert_array_equal(load_bundle(path).arrays['coef'], load_bundle(b).arrays['coef'])
    assert store.verify('fraud')['files'] == ['manifest.json', 'model.npz']


def test_kms_encryption_when_a_key_is_configured(s3, tmp_path):
    st = open_store(f's3://{BUCKET}/kms', kms_key_id='alias/fraud-models')
    b, v = make_bundle(tmp_path, 0.8)
    st.publish('fraud', b, promote=True)
    h = s3.head_object(Bucket=BUCKET, Key=f'kms/models/fraud/{v}/model.npz')
    assert (h['ServerSideEncryption'], h['SSEKMSKeyId']) == ('aws:kms', 'alias/fraud-models')
    assert s3.head_object(Bucket=BUCKET, Key=f'kms/models/fraud/{POINTER}')['ServerSideEncryption'] == 'aws:kms'


def test_list_promote_rollback_and_log(store, tmp_path):
    (b1, v1), (b2, v2), (b3, v3) = (make_bundle(tmp_path, ap) for ap in (0.7, 0.8, 0.75))
    for b in (b1, b2, b3): store.publish('fraud', b)
    assert store.champion('fraud') is None
    store.promote('fraud', v1, expected=NO_CHAMPION)
    p2 = store.promote('fraud', v2, expected=v1)
    with pytest.raises(StoreConflict, match=f'champion of model .fraud. is {v2}'): store.promote('fraud', v3, expected=v1)
    listed = {r['version']: r for r in store.list_versions('fraud')}
    assert set(listed) == {v1, v2, v3}
    assert [v for v, r in listed.items() if r['champion']] == [v2]
    assert listed[v1]['metrics'] == {'average_precision': 0.7, 'roc_auc': 0.98}
    assert store.rollback('fraud')['version'] == v1
    r = store.rollback('fraud', to=v3, reason='pin')
    assert (r['version'], r['previous'], r['history'][:3]) == (v3, v1, [v1, v2, v1])
    assert store.champion('fraud')['etag'] == r['etag'] != p2['etag']
    events = [(e['event'], e['version']) for e in store.read_log('fraud')]
    assert events[3:] == [('promote', v1), ('promote', v2), ('rollback', v1), ('rollback', v3)]
    assert store.models() == ['fraud']


def test_write_once_refuses_different_content(store, tmp_path):
    b, v = make_bundle(tmp_path, 0.7)
    store.publish('fraud', b)
    assert store.publish('fraud', b)['status'] == 'already published'
    clash, _ = make_bundle(tmp_path, 0.9, version=v)
    with pytest.raises(StoreError, match='already exists .* with a different manifest; versions are write-once'): store.publish('fraud', clash)
    assert load_bundle(store.pull('fraud', v, cache_dir=tmp_path/'c')).arrays['bias'][0] == 0.7


def test_crash_between_upload_and_pointer_switch(store, s3, tmp_path, monkeypatch):
    (b1, v1), (b2, v2) = make_bundle(tmp_path, 0.7), make_bundle(tmp_path, 0.8)
    store.publish('fraud', b1, promote=True)
    real_upload = S3Backend.upload
    def crash_before_manifest(self, k, path, *a, **kw):
        if k.endswith(MANIFEST): raise ConnectionResetError('simulated crash after the data files')
        return real_upload(self, k, path, *a, **kw)
    monkeypatch.setattr(S3Backend, 'upload', crash_before_manifest)
    with pytest.raises(ConnectionResetError): store.publish('fraud', b2, promote=True)
    monkeypatch.undo()
    assert store.champion('fraud')['version'] == v1
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key('fraud', v2) + '/')['KeyCount'] == 1   # model.npz only
    assert v2 not in [r['version'] for r in store.list_versions('fraud')]
    assert [r['complete'] for r in store.list_versions('fraud', include_partial=True) if r['version'] == v2] == [False]
    with pytest.raises(StoreNotFound, match='is incomplete .* a publish did not finish'): store.promote('fraud', v2)
    with pytest.raises(StoreNotFound, match='is incomplete'): store.pull('fraud', v2, cache_dir=tmp_path/'c')
    # crash after the manifest, before the pointer: the version is complete but not champion
    monkeypatch.setattr(ModelStore, '_write_pointer', lambda *a: (_ for _ in ()).throw(TimeoutError('simulated crash before the pointer')))
    with pytest.raises(TimeoutError): store.publish('fraud', b2, promote=True)
    monkeypatch.undo()
    assert store.champion('fraud')['version'] == v1
    assert [r['champion'] for r in store.list_versions('fraud') if r['version'] == v2] == [False]
    assert store.publish('fraud', b2, promote=True)['champion']['version'] == v2


def test_corrupted_object_in_s3(store, s3, tmp_path):
    (b0, v0), (b, v) = make_bundle(tmp_path, 0.6), make_bundle(tmp_path, 0.7)
    store.publish('fraud', b0, promote=True); store.publish('fraud', b, promote=True)
    k = key('fraud', v, 'model.npz')
    good = s3.get_object(Bucket=BUCKET, Key=k)['Body'].read()
    bad = bytearray(good); bad[-100] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=k, Body=bytes(bad))      # same size, different bytes
    cache = tmp_path/'cache'
    with pytest.raises(StoreCorrupt, match=f's3://{BUCKET}/{k}: downloaded {len(good):,} bytes with sha256 .* corrupted or replaced in the store; nothing was cached'):
        store.pull('fraud', cache_dir=cache)
    assert files_in(cache) == []
    with pytest.raises(StoreCorrupt): store.verify('fraud')
    # a rollback verifies its target first: to a corrupted version it is refused and the pointer stays
    k0 = key('fraud', v0, 'model.npz'); good0 = s3.get_object(Bucket=BUCKET, Key=k0)['Body'].read()
    s3.put_object(Bucket=BUCKET, Key=k0, Body=good0[:-10])
    with pytest.raises(StoreCorrupt, match=f'{v0}/model.npz: downloaded'): store.rollback('fraud')
    assert store.champion('fraud')['version'] == v
    s3.put_object(Bucket=BUCKET, Key=k, Body=good)
    assert load_bundle(store.pull('fraud', cache_dir=cache)).version == v


def test_cache_reused_and_corrupted_cache_redownloaded(store, tmp_path, monkeypatch):
    b, v = make_bundle(tmp_path, 0.7)
    store.publish('fraud', b, promote=True)
    path = store.pull('fraud', cache_dir=tmp_path/'cache')
    calls = []
    real = S3Backend.download
    monkeypatch.setattr(S3Backend, 'download', lambda self, k, *a, **kw: calls.append(k) or real(self, k, *a, **kw))
    assert store.pull('fraud', cache_dir=tmp_path/'cache') == path and calls == []
    blob = bytearray((path/'model.npz').read_bytes()); blob[-100] ^= 1; (path/'model.npz').write_bytes(bytes(blob))
    assert load_bundle(store.pull('fraud', cache_dir=tmp_path/'cache')).version == v
    assert any(c.endswith('model.npz') for c in calls)


def test_missing_version_dangling_pointer_and_missing_bucket(store, s3, tmp_path):
    b, v = make_bundle(tmp_path, 0.7)
    store.publish('fraud', b)
    with pytest.raises(StoreNotFound, match="model 'fraud' has no champion"): store.pull('fraud', cache_dir=tmp_path/'c')
    with pytest.raises(StoreNotFound, match="model 'fraud' version 'nope-1' is missing"): store.pull('fraud', 'nope-1', cache_dir=tmp_path/'c')
    with pytest.raises(StoreNotFound, match="version 'nope-1' is missing"): store.promote('fraud', 'nope-1')
    s3.put_object(Bucket=BUCKET, Key=key('fraud', POINTER), Body=json.dumps({'version': 'ghost-1'}).encode())
    with pytest.raises(StoreNotFound, match=f's3://{BUCKET}/{key("fraud", POINTER)} points at version ghost-1, which is missing'):
        store.pull('fraud', cache_dir=tmp_path/'c')
    s3.put_object(Bucket=BUCKET, Key=key('fraud', POINTER), Body=b'<html>')
    with pytest.raises(StoreCorrupt, match='not a valid champion pointer'): store.champion('fraud')
    assert store.promote('fraud', v)['version'] == v   # a promotion replaces an unreadable pointer (still by compare-and-swap)
    with pytest.raises(StoreNotFound, match="S3 bucket 'no-such-bucket' does not exist at http://127.0.0.1"):
        open_store('s3://no-such-bucket/x').list_versions('fraud')
    assert files_in(tmp_path/'c') == []


def _post(url, body):
    req = urllib.request.Request(url, data=body, method='POST', headers={'Content-Type': 'text/plain'})
    urllib.request.urlopen(req, timeout=5).read()


def test_wrong_credentials_and_access_denied(moto_private, monkeypatch, tmp_path):
    """moto accepts any credentials unless IAM auth is on: set up a bucket and a read-only IAM user while it is off,
    then switch it on with moto's /moto-api/reset-auth (what INITIAL_NO_AUTH_ACTION_COUNT does at start-up)"""
    ep = moto_private.endpoint
    for k, val in {'AWS_ACCESS_KEY_ID': 'setup', 'AWS_SECRET_ACCESS_KEY': 'setup', 'AWS_DEFAULT_REGION': 'us-east-1', 'AWS_ENDPOINT_URL': ep}.items():
        monkeypatch.setenv(k, val)
    monkeypatch.delenv('AWS_SESSION_TOKEN', raising=False); monkeypatch.delenv('AWS_PROFILE', raising=False)
    boto3.client('s3').create_bucket(Bucket=BUCKET)
    b, v = make_bundle(tmp_path, 0.7)
    open_store(f's3://{BUCKET}/{PREFIX}').publish('fraud', b, promote=True)
    iam = boto3.client('iam')
    iam.create_user(UserName='reader')
    iam.put_user_policy(UserName='reader', PolicyName='read-models', PolicyDocument=json.dumps({'Version': '2012-10-17', 'Statement': [
        {'Effect': 'Allow', 'Action': ['s3:GetObject', 's3:ListBucket'], 'Resource': '*'}]}))
    reader = iam.create_access_key(UserName='reader')['AccessKey']
    _post(ep + '/moto-api/reset-auth', b'0')
    def as_(key_id, secret):
        monkeypatch.setenv('AWS_ACCESS_KEY_ID', key_id); monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', secret)
        return open_store(f's3://{BUCKET}/{PREFIX}')
    timings = {}
    for label, key_id, secret, code in [('unknown key', 'AKIAUNKNOWNUNKNOWN12', 'x', 'InvalidAccessKeyId'),
                                        ('wrong secret', reader['AccessKeyId'], 'not-the-secret', 'SignatureDoesNotMatch')]:
        st = as_(key_id, secret); t0 = time.monotonic()
        with pytest.raises(StoreAccessDenied, match=f'access denied by {ep} \\({code}.*check the AWS credentials'): st.pull('fraud', cache_dir=tmp_path/'c')
        timings[label] = time.monotonic() - t0
    ro = as_(reader['AccessKeyId'], reader['SecretAccessKey'])
    assert load_bundle(ro.pull('fraud', cache_dir=tmp_path/'c')).version == v     # reading is allowed
    b2, v2 = make_bundle(tmp_path, 0.8)
    t0 = time.monotonic()
    with pytest.raises(StoreAccessDenied, match=f'{v2}/model.npz: access denied .*AccessDenied'): ro.publish('fraud', b2, promote=True)
    timings['no permission'] = time.monotonic() - t0
    assert v2 not in [r['version'] for r in ro.list_versions('fraud', include_partial=True)]
    assert ro.champion('fraud')['version'] == v
    print('access errors after (s):', {k: round(t, 3) for k, t in timings.items()})
    assert max(timings.values()) < 10, timings


def test_unreachable_endpoint_fails_fast(monkeypatch, tmp_path, aws_env):
    port = free_port()    # nothing listens here
    monkeypatch.setenv('AWS_ENDPOINT_URL', f'http://127.0.0.1:{port}')
    st = open_store(f's3://{BUCKET}/{PREFIX}')
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f'S3 endpoint http://127.0.0.1:{port} is unreachable or did not answer in time \\(EndpointConnectionError\\); check AWS_ENDPOINT_URL'):
        st.pull('fraud', cache_dir=tmp_path/'c')
    refused = time.monotonic() - t0
    # a server that accepts connections and never answers: only read_timeout ends the wait
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0)); silent.listen(16)
        monkeypatch.setenv('AWS_ENDPOINT_URL', f'http://127.0.0.1:{silent.getsockname()[1]}')
        st = open_store(f's3://{BUCKET}/{PREFIX}', read_timeout=1, max_attempts=2)
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match='did not answer in time \\(ReadTimeoutError\\)'): st.champion('fraud')
        silent_s = time.monotonic() - t0
    print(f'closed port (defaults: connect 2 s, 3 attempts): {refused:.2f} s; silent server (read_timeout=1, 2 attempts): {silent_s:.2f} s')
    assert refused < 10 and silent_s < 10, (refused, silent_s)
    assert files_in(tmp_path/'c') == []


def test_concurrent_promotes_exactly_one_wins(store, tmp_path, monkeypatch):
    """Each thread has its own store (own boto3 client and connections). A barrier after the pointer read makes every
    thread hold the same ETag and pass the `expected` check, so only S3's If-Match can reject the losers."""
    bundles = [make_bundle(tmp_path, 0.5 + i / 100) for i in range(5)]
    for b, _ in bundles: store.publish('fraud', b)
    versions = [v for _, v in bundles]
    store.promote('fraud', versions[0])
    n, barrier = 4, threading.Barrier(4, timeout=20)
    real_read = ModelStore._read_pointer
    def read_then_wait(self, name):
        got = real_read(self, name); barrier.wait(); return got
    monkeypatch.setattr(ModelStore, '_read_pointer', read_then_wait)
    wins, conflicts = [], []
    def go(v):
        st = open_store(f's3://{BUCKET}/{PREFIX}')
        try: wins.append(st.promote('fraud', v, expected=versions[0], verify=False)['version'])
        except StoreConflict as e: conflicts.append(str(e))
    ts = [threading.Thread(target=go, args=(v,)) for v in versions[1:]]
    for t in ts: t.start()
    for t in ts: t.join()
    monkeypatch.undo()
    assert len(wins) == 1 and len(conflicts) == n - 1, (wins, conflicts)
    assert all('another promotion won' in c for c in conflicts)
    ch = store.champion('fraud')
    assert (ch['version'], ch['previous']) == (wins[0], versions[0])
    assert [(e['event'], e['version']) for e in store.read_log('fraud') if e['event'] == 'promote'] == [('promote', versions[0]), ('promote', wins[0])]


def test_concurrent_promotes_free_running_and_unconditional(store, tmp_path):
    bundles = [make_bundle(tmp_path, 0.5 + i / 100) for i in range(5)]
    for b, _ in bundles: store.publish('fraud', b)
    versions = [v for _, v in bundles]
    def run(expected, vs):
        wins, conflicts, barrier = [], [], threading.Barrier(len(vs), timeout=20)
        def go(v):
            st = open_store(f's3://{BUCKET}/{PREFIX}'); barrier.wait()
            try: wins.append(st.promote('fraud', v, expected=expected, verify=False))
            except StoreConflict: conflicts.append(v)
        ts = [threading.Thread(target=go, args=(v,)) for v in vs]
        for t in ts: t.start()
        for t in ts: t.join()
        return wins, conflicts
    store.promote('fraud', versions[0])
    for _ in range(3):     # free-running rounds, all expecting the current champion
        cur = store.champion('fraud')['version']
        wins, conflicts = run(cur, [v for v in versions if v != cur])
        assert len(wins) == 1 and len(conflicts) == 3 and store.champion('fraud')['version'] == wins[0]['version']
    # no expectation: every promotion lands, one after another, and each one's `previous` is the one before it
    cur = store.champion('fraud')['version']
    others = [v for v in versions if v != cur]
    wins, conflicts = run(None, others)
    assert conflicts == [] and sorted(w['version'] for w in wins) == sorted(others)
    assert all(w['status'] == 'promoted' for w in wins)
    chain = sorted(wins, key=lambda w: w['updated_at'])
    assert [w['previous'] for w in chain] == [cur] + [w['version'] for w in chain[:-1]]
    ch = store.champion('fraud')
    assert ch['version'] == chain[-1]['version'] and ch['history'][:4] == [w['version'] for w in chain[-2::-1]] + [cur]


def test_concurrent_append_log_loses_nothing(store):
    def writer(i):
        st = open_store(f's3://{BUCKET}/{PREFIX}')
        for j in range(20): st.append_log('fraud', {'event': 'test', 'writer': i, 'n': j})
    ts = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in ts: t.start()
    for t in ts: t.join()
    recs = store.read_log('fraud')
    assert sorted((r['writer'], r['n']) for r in recs) == [(i, j) for i in range(8) for j in range(20)]
    assert len({r['id'] for r in recs}) == 160
