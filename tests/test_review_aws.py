"""The review queue's DynamoDB path against moto_server over HTTP: claims with expiry and verdicts are conditional
UpdateItems on the flagged-transactions table, a late verdict is refused naming who decided, and each verdict writes
one label into the DynamoDB label store."""
import boto3
import pytest
from fraud_lambda.alerts import make_alert
from fraud_lambda.casestore import CaseError, CaseTaken, DynamoDBCaseStore, decide_case
from fraud_lambda.labels import LABELS_TABLE_SCHEMA, DynamoDBLabelStore
from fraud_lambda.sinks import ALERTS_TABLE_SCHEMA, DynamoDBSink

@pytest.fixture()
def tables(aws_env):
    ddb = boto3.client('dynamodb')
    ddb.create_table(TableName='flagged', **ALERTS_TABLE_SCHEMA)
    ddb.create_table(TableName='labels', **LABELS_TABLE_SCHEMA)
    sink = DynamoDBSink('flagged')
    for i, d in enumerate(['review', 'block', 'review']):
        assert sink.send(make_alert(f'tx-{i}', 0.6 + i / 10, d, 'm1', [('V14', 0.4)], {'card_id': 'c1'})) == 'stored'
    return DynamoDBCaseStore('flagged'), DynamoDBLabelStore('labels')

def test_claim_expiry_and_refusals(tables):
    cases, _ = tables
    assert cases.claim('tx-0', 'alice', ttl_s=600, now=1000)['claim_expires_at'] == 1600
    with pytest.raises(CaseTaken, match='taken by alice until'): cases.claim('tx-0', 'bob', now=1500)
    assert cases.claim('tx-0', 'bob', now=1600)['claimed_by'] == 'bob'          # alice's claim expired
    with pytest.raises(CaseTaken, match='taken by bob'): cases.decide('tx-0', 'alice', 'fraud', now=1700)
    assert cases.release('tx-0', 'alice') is False
    assert cases.release('tx-0', 'bob') is True
    assert 'tx-0' not in cases.states()                                      # nothing of the case is left
    with pytest.raises(CaseError, match="no flagged transaction 'tx-nope' in table flagged"):
        cases.claim('tx-nope', 'alice')

def test_verdict_writes_one_label_and_late_verdict_is_refused(tables):
    cases, labels = tables
    cases.claim('tx-1', 'alice', now=1000)
    s = decide_case(cases, labels, 'tx-1', 'alice', 'fraud', 'card testing', now=1100)
    assert (s['verdict'], s['analyst'], s['label']) == ('fraud', 'alice', 'accepted')
    assert decide_case(cases, labels, 'tx-1', 'alice', 'fraud', now=1200)['label'] == 'duplicate'
    with pytest.raises(CaseTaken, match='already decided fraud by alice at 1970-01-01T00:18:20.000Z'):
        decide_case(cases, labels, 'tx-1', 'bob', 'legitimate', now=1300)
    assert labels.history('tx-1') == [{'transaction_id': 'tx-1', 'label': 'fraud', 'source': 'review',
                                       'labelled_at': '1970-01-01T00:18:20.000Z', 'note': 'card testing',
                                       'analyst': 'alice'}]
    item = boto3.client('dynamodb').get_item(TableName='flagged', Key={'pk': {'S': 'tx-1'}})['Item']
    assert item['case_verdict'] == {'S': 'fraud'} and 'case_claimed_by' not in item and 'alert_json' in item

def test_escalate_and_alerts_scan(tables):
    cases, labels = tables
    s = decide_case(cases, labels, 'tx-2', 'alice', 'escalate', 'ask the card team')
    assert (s['verdict'], s['escalated_by'], s['note']) == (None, 'alice', 'ask the card team')
    assert labels.rows() == []
    alerts = {a['transaction_id']: a for a in cases.alerts()}
    assert sorted(alerts) == ['tx-0', 'tx-1', 'tx-2']
    assert alerts['tx-2']['_case']['escalated_by'] == 'alice' and alerts['tx-1']['decision'] == 'block'
