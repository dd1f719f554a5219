"""The DynamoDB label store against moto_server over HTTP: conditional writes make a repeat idempotent, a later label
supersedes and both stay in history, precedence across sources, and `POST /labels` through the handler into the
table."""
import boto3
import pytest
from fraud_lambda import handler as H
from fraud_lambda.labels import LABELS_TABLE_SCHEMA, DynamoDBLabelStore
from fraud_lambda.store import open_store
from handler_support import call, load_event, local_env, make_bundle, with_body, with_route

LAB = {'transaction_id': 'tx-1', 'label': 'fraud', 'labelled_at': '2026-12-01T10:00:00Z', 'source': 'review'}

@pytest.fixture()
def table(aws_env):
    boto3.client('dynamodb').create_table(TableName='fraud-labels', **LABELS_TABLE_SCHEMA)
    return 'fraud-labels'

def test_put_repeat_supersede_history(table):
    st = DynamoDBLabelStore(table, known_ids=lambda ids: {'tx-1'})
    rows = [LAB, {**LAB, 'transaction_id': 'tx-2', 'source': 'customer', 'label': 'legitimate', 'note': 'me'}]
    rep = st.put_labels(rows)
    assert (rep['accepted'], rep['superseded'], rep['duplicates'], rep['unmatched']) == (2, 0, 0, ['tx-2'])
    assert st.put_labels(rows)['duplicates'] == 2                                 # conditional put refused: idempotent
    later = {**LAB, 'label': 'legitimate', 'labelled_at': '2026-12-03T00:00:00Z'}
    assert st.put_labels([later])['superseded'] == 1
    assert st.put_labels([{**LAB, 'label': 'legitimate'}])['conflicts'] == ['tx-1']
    assert [(h['label'], h['labelled_at']) for h in st.history('tx-1')] == [
        ('fraud', '2026-12-01T10:00:00.000Z'), ('legitimate', '2026-12-03T00:00:00.000Z')]
    assert st.current_labels()['tx-1']['label'] == 'legitimate'
    chargeback = {**LAB, 'source': 'chargeback', 'labelled_at': '2026-12-02T00:00:00Z'}
    assert st.put_labels([chargeback])['accepted'] == 1
    cur = st.current_labels()
    assert (cur['tx-1']['source'], cur['tx-1']['label'], cur['tx-2']['note']) == ('chargeback', 'fraud', 'me')
    assert set(st.current_labels(since='2026-12-02T00:00:00Z')) == {'tx-1'}
    bad = st.put_labels([LAB, {**LAB, 'source': 'bank'}])
    assert bad['accepted'] == 0 and bad['errors'][0]['field'] == 'source'

def test_labels_route_writes_the_table(table, tmp_path):
    open_store(tmp_path/'store').publish('fraud', make_bundle(tmp_path/'bundle'), promote=True)
    H.init(local_env(tmp_path, tmp_path/'store', FRAUD_LAMBDA_LABELS_TABLE=table))
    e = with_route(load_event('rest_score_legit'), 'POST', '/labels')
    s, _, b = call(H.handler, with_body(e, {'labels': [LAB]}))
    assert s == 200 and b['accepted'] == 1 and b['unmatched'] == ['tx-1'], b      # the local decision log has no tx-1
    s, _, b = call(H.handler, with_body(e, {'labels': [LAB]}))
    assert s == 200 and b['duplicates'] == 1, b
    items = boto3.client('dynamodb').scan(TableName=table)['Items']
    assert [(i['transaction_id']['S'], i['sk']['S']) for i in items] == [('tx-1', 'review#2026-12-01T10:00:00.000Z')]
