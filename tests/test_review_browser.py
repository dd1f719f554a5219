"""The review page in a real browser: Debian's Chromium driven by Playwright's Python API (pointed at the executable,
since Playwright cannot download its own browser here). The queue is built from a replayed holdout slice: holdout rows
sent through the Lambda handler in-process, whose review/block alerts land in the SQLite alert log and whose decision
records land in the decision log; `fraud-lambda review` then serves them. Set REVIEW_SCREENSHOTS=DIR to keep the
screenshots (the README's come from `REVIEW_SCREENSHOTS=reports/review pytest tests/test_review_browser.py`)."""
import os, shutil, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from fraud_lambda.motoserver import free_port
from handler_support import call, load_event, local_env, make_bundle, with_body

CHROMIUM = os.environ.get('CHROMIUM', '/usr/bin/chromium')
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = '<script>document.title="pwned"</script>'

def _holdout_slice(n=2500):
    "The first `n` holdout rows of the real data (out-of-time split), or of synthetic data when it is not fetched"
    from fraud_lambda.data import load_transactions, synthetic_transactions, time_split
    real = ROOT/'data'/'creditcard.csv'
    df = load_transactions(real) if real.exists() else synthetic_transactions(20_000, fraud_rate=0.02, seed=3)
    return time_split(df)[1].iloc[:n], ('real' if real.exists() else 'synthetic')

@pytest.fixture(scope='module')
def review_server(tmp_path_factory):
    "The handler replays a holdout slice into local stores; `fraud-lambda review` serves them on a free port"
    from fraud_lambda import handler as H
    from fraud_lambda.schema import FEATURES
    from fraud_lambda.store import open_store
    tmp = tmp_path_factory.mktemp('review')
    open_store(tmp/'store').publish('fraud', make_bundle(tmp/'bundle'), promote=True)
    env = local_env(tmp, tmp/'store', FRAUD_LAMBDA_LABELS_DB=tmp/'labels.db')
    H.init(env)
    rows, kind = _holdout_slice()
    ev, flagged = load_event('rest_score_legit'), 0
    for i, (_, r) in enumerate(rows.iterrows()):
        meta = {'card_id': f'card-{i % 40}', 'merchant_id': f'm-{i % 25}'}
        if i % 3 == 0: meta['comment'] = SCRIPT
        s, _, b = call(H.handler, with_body(ev, {**{f: float(r[f]) for f in FEATURES}, 'transaction_id': f'h-{i}',
                                                 'metadata': meta}))
        assert s == 200, b
        flagged += b['decision'] != 'approve'
    assert flagged >= 6, f'only {flagged} of {len(rows)} {kind} holdout rows were flagged'
    port = free_port()
    proc = subprocess.Popen([sys.executable, '-m', 'fraud_lambda.cli', 'review', '--port', str(port), '--analyst',
                             'alice'], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f'http://127.0.0.1:{port}'
    for _ in range(100):
        try:
            urllib.request.urlopen(url + '/static/review.css', timeout=1)
            break
        except OSError: time.sleep(0.1)
    else: pytest.fail(f'review did not start: {proc.stdout.read() if proc.poll() is not None else "still silent"}')
    yield {'url': url, 'tmp': tmp, 'flagged': flagged}
    proc.terminate()
    proc.wait(10)

@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    if not Path(CHROMIUM).exists():
        pytest.fail(f'no Chromium at {CHROMIUM}: `make pytest` installs it (apt-get install chromium), or set CHROMIUM')
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
        yield b
        b.close()

def _csp_watch(page, seen):
    page.on('console', lambda m: seen.append(m.text) if m.type == 'error' else None)

def test_three_cases_by_keyboard_claims_and_escaping(review_server, browser, tmp_path):
    from fraud_lambda.labels import SQLiteLabelStore
    url, shots = review_server['url'], Path(os.environ.get('REVIEW_SCREENSHOTS') or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    errors = []
    a = browser.new_context(viewport={'width': 1400, 'height': 900}).new_page()
    _csp_watch(a, errors)
    a.goto(url + '/')
    rows = a.locator('tr[data-case]')
    assert rows.count() == min(review_server['flagged'], 100)                # every flagged row, 100 to a page
    assert a.locator('#fig-open b').inner_text() == str(review_server['flagged'])
    first, second = rows.nth(0).get_attribute('data-case'), rows.nth(1).get_attribute('data-case')
    a.keyboard.press('j')
    assert 'sel' in rows.nth(1).get_attribute('class') and 'sel' not in (rows.nth(0).get_attribute('class') or '')
    a.keyboard.press('k')
    a.keyboard.press('Enter')                                                # open (and claim) the top case
    a.wait_for_url(f'**/case/{first}')
    assert a.locator('#state').inner_text() == 'claimed by you'
    assert a.locator('#reasons rect').count() >= 1                           # the reasons' bar chart
    worked = []
    for key in ('f', 'l', 'f'):                                              # fraud, legitimate, fraud by keyboard
        tid = a.locator('#case-id').inner_text()
        worked.append(tid)
        a.keyboard.press(key)
        a.wait_for_function('t => document.getElementById("case-id")?.textContent !== t', arg=tid)
    assert worked[:2] == [first, second]
    held = a.locator('#case-id').inner_text()                                # the 4th case, claimed by alice
    a.screenshot(path=str(shots/'case.png'), full_page=True)
    a.goto(url + '/')
    assert a.locator('#fig-today b').inner_text() == '3'
    assert 'taken by you' in a.locator(f'tr[data-case="{held}"]').inner_text()
    a.screenshot(path=str(shots/'queue.png'))

    labels = SQLiteLabelStore(review_server['tmp']/'labels.db')
    got = [labels.history(t) for t in worked]
    assert [[(r['label'], r['source'], r['analyst']) for r in h] for h in got] == [
        [('fraud', 'review', 'alice')], [('legitimate', 'review', 'alice')], [('fraud', 'review', 'alice')]]

    b = browser.new_context().new_page()                                     # a second analyst
    _csp_watch(b, errors)
    b.goto(url + '/')
    b.fill('#analyst', 'bob')
    b.click('header button')
    b.wait_for_load_state()
    assert b.locator('#analyst').input_value() == 'bob'
    assert 'taken by alice' in b.locator(f'tr[data-case="{held}"]').inner_text()
    b.goto(f'{url}/case/{held}')
    assert 'taken by alice' in b.locator('#taken').inner_text() and b.locator('#decide').count() == 0
    b.keyboard.press('f')                                                    # no form to submit: nothing happens
    assert labels.history(held) == []

    from fraud_lambda.sinks import read_alerts
    meta_case = next(x['transaction_id'] for x in read_alerts(review_server['tmp']/'state.db', limit=None)
                     if x['metadata'].get('comment') == SCRIPT)
    assert b.goto(f'{url}/case/{meta_case}').status == 200
    assert SCRIPT in b.locator('#metadata').inner_text()                     # shown as text
    assert b.locator('#metadata script').count() == 0 and b.title() == f'Case {meta_case}'
    assert not [e for e in errors if 'Content Security Policy' in e], errors  # the page itself breaks no CSP rule

    a.goto(f'{url}/case/{held}')                                             # j skips: alice gives held back
    a.keyboard.press('j')
    a.wait_for_function('t => document.getElementById("case-id")?.textContent !== t', arg=held)
    skipped_to = a.locator('#case-id').inner_text()
    assert a.locator('#state').inner_text() == 'claimed by you'
    b.goto(f'{url}/case/{held}')
    assert b.locator('#taken').count() == 0 and b.locator('#decide').count() == 1   # free for bob now
    a.keyboard.press('e')                                                    # escalate: no label, the case stays open
    a.wait_for_function('t => document.getElementById("case-id")?.textContent !== t', arg=skipped_to)
    assert labels.history(skipped_to) == []
    b.goto(f'{url}/?status=open')
    assert 'escalated by alice' in b.locator(f'tr[data-case="{skipped_to}"]').inner_text()
