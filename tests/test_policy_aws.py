"""fraud_lambda.policystore against a real moto_server over HTTP on 127.0.0.1: S3 conditional writes, STS identity."""
import json
from pathlib import Path

import boto3, pytest

from fraud_lambda.policy import PolicyError, read_policy
from fraud_lambda.policystore import NO_POLICY, PolicySelfApproval, caller_identity, open_policy_store
from fraud_lambda.store import StoreConflict, StoreCorrupt

pytestmark = pytest.mark.timeout(60)
BUCKET = 'fraud-models'
EXAMPLES = Path(__file__).resolve().parents[1]/'policies'/'examples'


@pytest.fixture()
def store(aws_env):
    boto3.client('s3').create_bucket(Bucket=BUCKET)
    return open_policy_store(f's3://{BUCKET}/prod')


def test_identity_is_the_sts_caller(store):
    arn = caller_identity(store.backend)
    assert arn.startswith('arn:aws:'), arn


def test_push_promote_rollback_on_s3(store):
    deny, night = read_policy(EXAMPLES/'deny_list.json'), read_policy(EXAMPLES/'night_high_amount.json')
    r1 = store.push('fraud', deny)                       # pushed by the STS caller
    with pytest.raises(PolicySelfApproval, match='cannot also approve it'):
        store.promote('fraud', r1['version'])             # the same caller: refused
    p = store.promote('fraud', r1['version'], expected=NO_POLICY, actor='arn:aws:iam::123456789012:role/approver')
    assert (p['status'], p['pushed_by']) == ('promoted', r1['pushed_by'])
    assert store.load_current('fraud') == (r1['version'], deny)
    r2 = store.push('fraud', night, actor='arn:aws:iam::123456789012:role/analyst')
    assert r2['version'] != r1['version']
    with pytest.raises(StoreConflict):
        store.promote('fraud', r2['version'], expected=NO_POLICY)
    store.promote('fraud', r2['version'], expected=r1['version'])     # STS caller approves the analyst's push
    assert store.load_current('fraud')[0] == r2['version']
    rb = store.rollback('fraud', reason='too many reviews')
    assert (rb['version'], rb['previous']) == (r1['version'], r2['version'])
    events = [(e['event'], e['version']) for e in store.read_log('fraud')]
    assert events == [('push', r1['version']), ('promote', r1['version']), ('push', r2['version']),
                      ('promote', r2['version']), ('rollback', r1['version'])]
    keys = [o['Key'] for o in boto3.client('s3').list_objects_v2(Bucket=BUCKET, Prefix='prod/policies/fraud/')['Contents']]
    assert f'prod/policies/fraud/current.json' in keys and f"prod/policies/fraud/{r1['version']}/policy.json" in keys


def test_bad_and_tampered_policies_are_refused(store):
    doc = read_policy(EXAMPLES/'deny_list.json')
    bad = json.loads(json.dumps(doc))
    bad['rules'][0]['condition'] = {'in_list': 'nope'}
    with pytest.raises(PolicyError, match="rule deny-stolen-cards: condition: unknown list 'nope'"):
        store.push('fraud', bad)
    r = store.push('fraud', doc, actor='a')
    store.promote('fraud', r['version'], actor='b')
    key = f"prod/policies/fraud/{r['version']}/policy.json"
    boto3.client('s3').put_object(Bucket=BUCKET, Key=key, Body=json.dumps(bad).encode())
    with pytest.raises(StoreCorrupt, match='recorded at push'):
        store.load_current('fraud')
