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

def test_queue_over_dynamodb_and_cli_export(tables, tmp_path, monkeypatch):
    import argparse, csv, time
    from fraud_lambda.casequeue import ReviewQueue, queue_view
    from fraud_lambda.reviewcli import add_review_commands, review_command
    cases, labels = tables
    q = ReviewQueue(cases, labels)
    now = time.time()
    cases.claim('tx-0', 'bob', now=now)
    decide_case(cases, labels, 'tx-2', 'alice', 'legitimate', now=now)
    got = {c['transaction_id']: c for c in q.cases(now)}
    assert {t: c['status'] for t, c in got.items()} == {'tx-0': 'claimed', 'tx-1': 'open', 'tx-2': 'decided'}
    assert got['tx-1']['amount'] is None and [c['transaction_id'] for c in queue_view(list(got.values()))] == [
        'tx-1', 'tx-0']                                           # no decision records: probability order
    h = q.header(list(got.values()), now)
    assert (h['open'], h['decided_today'], h['precision']['review']) == (
        2, 1, {'precision': 0.0, 'fraud': 0, 'labelled': 1})
    p = argparse.ArgumentParser()
    add_review_commands(p.add_subparsers(dest='cmd'))
    monkeypatch.setenv('FRAUD_LAMBDA_STATE_DB', str(tmp_path/'state.db'))
    a = p.parse_args(['review', '--table', 'flagged', '--labels', 'dynamodb://labels', '--export',
                      str(tmp_path/'q.csv'), '--verdicts', str(tmp_path/'v.csv')])
    assert review_command(a) == 0
    assert [r['transaction_id'] for r in csv.DictReader(open(tmp_path/'q.csv'))] == ['tx-1', 'tx-0']
    assert [(r['transaction_id'], r['verdict'], r['analyst']) for r in csv.DictReader(open(tmp_path/'v.csv'))] == [
        ('tx-2', 'legitimate', 'alice')]
