"""The decision log end to end through the handler with real API Gateway events: one record per answer (replays
marked), counts that match the responses, the stdout sink, `POST /labels` with every bad-row class, and the
`decisions` / `labels push` commands."""
import collections, json
from pathlib import Path
import pytest
from fraud_lambda import handler as H
from fraud_lambda.cli import main
from fraud_lambda.data import synthetic_transactions, time_split, xy
from fraud_lambda.decisions import check_decision_record, decision_schema_json
from fraud_lambda.decisionlog import read_decisions
from fraud_lambda.schema import FEATURES
from fraud_lambda.store import open_store
from handler_support import call, load_event, local_env, make_bundle, with_body, with_route

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('decisions')
    open_store(tmp/'store').publish('fraud', make_bundle(tmp/'bundle'), promote=True)
    svc = H.init(local_env(tmp, tmp/'store'))
    assert svc.holder.scorer is not None, svc.holder.error
    X, _ = xy(time_split(synthetic_transactions(6000, fraud_rate=0.03, seed=7))[1])
    return {'tmp': tmp, 'db': tmp/'decisions.db', 'X': X}

def _tx(x, tid): return {'transaction_id': tid, **dict(zip(FEATURES, map(float, x)))}

def test_schema_file_is_current():
    assert (ROOT/'api'/'decision-record.schema.json').read_text() == decision_schema_json()

def test_one_record_per_answer_with_repeats(served):
    X, event = served['X'], load_event('rest_score_legit')
    txs = [_tx(x, f'dl-{i}') for i, x in enumerate(X[:190])]
    sends = txs[:150] + txs[:10] + txs[150:] + txs[150:155]            # 15 repeats of 190 transactions, ~7%
    answers = []
    for tx in sends[:170]:
        s, _, b = call(H.handler, with_body(event, tx))
        assert s == 200, b
        answers.append(b)
    for chunk in (sends[170:190], sends[190:]):
        s, _, b = call(H.handler, with_body(with_route(event, 'POST', '/score/batch'), {'transactions': chunk}))
        assert s == 200 and all(i['status'] == 200 for i in b['results']), b
        answers += [i['result'] for i in b['results']]
    records = [r for r in read_decisions(served['db']) if r['transaction_id'].startswith('dl-')]
    assert len(records) == len(sends) == 205
    assert sum(r['idempotent_replay'] for r in records) == sum(a['idempotent_replay'] for a in answers) == 15
    assert collections.Counter(r['decision'] for r in records) == collections.Counter(a['decision'] for a in answers)
    assert len({r['transaction_id'] for r in records if not r['idempotent_replay']}) == 190
    assert collections.Counter(r['source'] for r in records) == {'single': 170, 'batch': 35}
    for r in records: check_decision_record(r)
    first = next(r for r in records if r['transaction_id'] == 'dl-0' and not r['idempotent_replay'])
    assert first['request_id'] == event['requestContext']['requestId'] and first['latency_ms'] > 0
    assert first['inputs'] == {k: v for k, v in txs[0].items() if k != 'transaction_id'}
    assert first['thresholds'] == {'review': 0.5, 'block': 0.9} and len(first['manifest_sha256']) == 64

def test_conflict_and_bad_request_leave_no_record(served):
    event = load_event('rest_score_legit')
    tx = _tx(served['X'][0], 'dl-conflict')
    assert call(H.handler, with_body(event, tx))[0] == 200
    assert call(H.handler, with_body(event, {**tx, 'Amount': tx['Amount'] + 1}))[0] == 409
    assert call(H.handler, with_body(event, {**tx, 'V3': 'x'}))[0] == 400
    logged = [r['idempotent_replay'] for r in read_decisions(served['db']) if r['transaction_id'] == 'dl-conflict']
    assert logged == [False]

def test_stdout_sink_prints_one_line_per_record(tmp_path, capsys):
    open_store(tmp_path/'store').publish('fraud', make_bundle(tmp_path/'bundle'), promote=True)
    H.init(local_env(tmp_path, tmp_path/'store', FRAUD_LAMBDA_DECISION_LOG='stdout'))
    event = load_event('rest_score_fraud')
    X, _ = xy(time_split(synthetic_transactions(3000, seed=3))[1])
    capsys.readouterr()
    for i in range(5): call(H.handler, with_body(event, _tx(X[i], f'so-{i}')))
    call(H.handler, with_body(event, _tx(X[0], 'so-0')))
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith('{"decision_record"')]
    assert [d['decision_record']['transaction_id'] for d in lines] == [f'so-{i}' for i in range(5)] + ['so-0']
    assert [d['decision_record']['idempotent_replay'] for d in lines] == [False] * 5 + [True]
    assert not (tmp_path/'decisions.db').exists()

# ---------------------------------------------------------------- labels

LAB = {'transaction_id': 'dl-1', 'label': 'fraud', 'labelled_at': '2026-12-01T10:00:00Z', 'source': 'chargeback'}

def _post_labels(body):
    return call(H.handler, with_body(with_route(load_event('rest_score_legit'), 'POST', '/labels'), body))

@pytest.mark.parametrize('row, field', [
    ({k: v for k, v in LAB.items() if k != 'labelled_at'}, 'labels.1.labelled_at'),   # missing field
    ({**LAB, 'label': 'maybe'}, 'labels.1.label'), ({**LAB, 'source': 'bank'}, 'labels.1.source'),
    ({**LAB, 'labelled_at': '2026-13-01T00:00:00Z'}, 'labels.1.labelled_at'),
    ({**LAB, 'labelled_at': '2026-12-01T00:00:00'}, 'labels.1.labelled_at'),         # no zone
    ({**LAB, 'transaction_id': 'a b'}, 'labels.1.transaction_id'), ('dl-1,fraud', 'labels.1'),   # non-object
    ({**LAB, 'extra': 1}, 'labels.1.extra')])
def test_labels_bad_rows_are_400_naming_row_and_field(served, row, field):
    H.init(local_env(served['tmp'], served['tmp']/'store'))
    s, _, b = _post_labels({'labels': [LAB, row]})
    assert s == 400 and b['error']['code'] == 'invalid_request', b
    assert b['error']['errors'][0]['field'] == field, b
    assert H.service().labels is None or H.service().labels.history('dl-1') == []        # nothing stored

def test_labels_batch_limits(served):
    s, _, b = _post_labels({'labels': [LAB] * 1001})
    assert s == 400 and b['error']['errors'][0]['field'] == 'labels' and '1000' in b['error']['errors'][0]['problem']
    assert _post_labels({'labels': []})[0] == 400
    assert _post_labels({'rows': [LAB]})[0] == 400
    assert call(H.handler, with_route(load_event('rest_health'), 'GET', '/labels'))[0] == 405

def test_labels_idempotent_superseding_unmatched(served):
    H.init(local_env(served['tmp'], served['tmp']/'store'))
    rows = [LAB, {**LAB, 'transaction_id': 'dl-2', 'label': 'legitimate', 'source': 'review'},
            {**LAB, 'transaction_id': 'never-scored', 'source': 'customer'}]
    s, _, b = _post_labels({'labels': rows})
    assert s == 200 and (b['accepted'], b['duplicates'], b['unmatched']) == (3, 0, ['never-scored']), b
    s, _, b = _post_labels({'labels': rows})
    assert s == 200 and (b['accepted'], b['duplicates']) == (0, 3), b
    later = {**rows[1], 'label': 'fraud', 'labelled_at': '2026-12-05T00:00:00Z', 'note': 'analyst corrected'}
    s, _, b = _post_labels({'labels': [later]})
    assert s == 200 and (b['accepted'], b['superseded']) == (1, 1), b
    store = H.service().labels
    assert store.current_labels()['dl-2']['label'] == 'fraud'
    assert [h['label'] for h in store.history('dl-2')] == ['legitimate', 'fraud']

# ---------------------------------------------------------------- the commands

def test_decisions_get_export_sql(served, tmp_path, capsys):
    db = str(served['db'])
    assert main(['decisions', 'get', 'dl-3', '--log', db]) == 0
    out = capsys.readouterr().out
    assert 'transaction dl-3:' in out and 'manifest sha256' in out and 'review 0.500000, block 0.900000' in out
    assert main(['decisions', 'get', 'nope', '--log', db]) == 1
    assert "no decision record for transaction_id 'nope'" in capsys.readouterr().err
    assert main(['decisions', 'export', '--log', db, '--out', str(tmp_path/'exp')]) == 0
    res = json.loads(capsys.readouterr().out)
    total = sum(1 for _ in read_decisions(db))
    assert res['records'] == total and all(Path(f).is_file() for f in res['files'])
    assert all('/decisions/' in f and f.endswith('/export.jsonl') for f in res['files'])
    assert main(['decisions', 'sql', '--log', str(tmp_path/'exp'),
                 "SELECT COUNT(*) AS n FROM decisions WHERE transaction_id LIKE 'dl-%' "
                 "AND NOT idempotent_replay"]) == 0
    assert capsys.readouterr().out.splitlines() == ['n', str(190 + 1)]                 # + dl-conflict
    assert main(['decisions', 'export', '--log', db, '--out', str(tmp_path/'pq'), '--format', 'parquet']) == 0
    assert len(list((tmp_path/'pq').rglob('*.parquet'))) == len(res['files'])
    assert main(['decisions', 'sql', '--log', db, 'SELECT nope FROM decisions']) == 2
    assert 'the query failed' in capsys.readouterr().err

def test_labels_push_csv(served, tmp_path, capsys):
    good = tmp_path/'labels.csv'
    good.write_text('transaction_id,label,labelled_at,source,note\ndl-4,fraud,2026-12-01T00:00:00Z,chargeback,\n'
                    'zz-1,legitimate,2026-12-01T00:00:00Z,review,checked\n')
    args = ['labels', 'push', str(good), '--db', str(tmp_path/'l.db'), '--log', str(served['db'])]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep['accepted'], rep['unmatched']) == (2, ['zz-1'])
    assert main(args) == 0 and json.loads(capsys.readouterr().out)['duplicates'] == 2
    bad = tmp_path/'bad.csv'
    bad.write_text('transaction_id,label,labelled_at,source\ndl-5,fraud,2026-12-01T00:00:00Z,bank\n')
    assert main(['labels', 'push', str(bad), '--db', str(tmp_path/'l.db')]) == 2
    assert 'row 0: source must be one of' in capsys.readouterr().err

def test_drift_and_labels_merge_read_the_decision_log(served, tmp_path, capsys):
    from fraud_lambda.decisionsql import export_decisions
    from fraud_lambda.drift import traffic_frame
    db, event = served['db'], load_event('rest_score_legit')
    H.init(local_env(served['tmp'], served['tmp']/'store'))
    for i, x in enumerate(served['X'][200:210]): assert call(H.handler, with_body(event, _tx(x, f'dm-{i}')))[0] == 200
    export_decisions(db, tmp_path/'files')
    a, b = traffic_frame(db), traffic_frame(tmp_path/'files')                  # one reader: SQLite and the S3 layout
    assert len(a) == len(b) == sum(1 for r in read_decisions(db) if not r['idempotent_replay'])
    assert a.transaction_id.tolist() == b.transaction_id.tolist()
    assert (a[FEATURES].to_numpy() == b[FEATURES].to_numpy()).all()
    labels = tmp_path/'labels.csv'
    labels.write_text('transaction_id,label,labelled_at,source\ndm-1,fraud,2026-12-01T00:00:00Z,chargeback\n'
                      'dm-2,legitimate,2026-12-01T00:00:00Z,review\ndm-2,fraud,2026-12-02T00:00:00Z,review\n')
    assert main(['labels', 'push', str(labels), '--db', str(tmp_path/'labels.db')]) == 0
    capsys.readouterr()
    out = tmp_path/'merged.csv'
    assert main(['labels', 'merge', '--decisions', str(tmp_path/'files'), '--labels', str(tmp_path/'labels.db'),
                 '--out', str(out)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep['labelled_traffic_rows'], rep['frauds']) == (2, 2), rep                 # dm-2's later review wins
