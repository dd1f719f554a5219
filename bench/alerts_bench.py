"""Benchmark of fraud_lambda.alerts on this machine: dispatcher latency (healthy, dead and hanging sinks), traffic-log and
idempotency-store throughput. Run: `.venv/bin/python bench/alerts_bench.py` (about 30 s; local only, no AWS)."""
import os, socket, statistics, sys, tempfile, threading, time
from pathlib import Path
from fraud_lambda.alerts import (AlertDispatcher, SNSSink, SQLiteIdempotencyStore, SQLiteSink, SQLiteSpool, TrafficLog,
                                 aws_client, hash_payload, make_alert)

TOPIC = 'arn:aws:sns:us-east-1:123456789012:bench'

def pct(xs, q): xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))]

def dispatch_latency(tmp, label, sinks, n, budget_ms=250, **kw):
    "Wall-clock ms of n dispatches, one alert each"
    key = label.split(':')[0].replace(' ', '-') + str(time.time_ns())
    disp = AlertDispatcher(sinks, SQLiteSpool(tmp/f'{key}.db'), budget_ms=budget_ms, **kw)
    walls, spooled = [], 0
    for i in range(n):
        a = make_alert(f'{key}-{i}', 0.9, 'block', 'bench', [('V14', -2.0)])
        t0 = time.perf_counter(); out = disp.dispatch(a); walls.append((time.perf_counter() - t0) * 1000)
        spooled += bool(out.spooled)
    disp.close(wait=False)
    print(f'dispatch {label:<46} n={n:<4} median {statistics.median(walls):7.1f} ms   p95 {pct(walls, .95):7.1f} ms   max {max(walls):7.1f} ms   spooled {spooled}/{n}')

def traffic_rate(tmp, threads, rows):
    "Rows per second through TrafficLog.record from `threads` threads"
    log, x = TrafficLog(tmp/f'traffic-{threads}-{time.time_ns()}.db'), [0.5] * 30
    per = rows // threads
    def work(k):
        for i in range(per): log.record(f't{k}-{i}', x, 0.01, 'approve', 'bench')
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    dt = time.perf_counter() - t0
    assert log.count() == per * threads
    return per * threads / dt

def idempotency_rate(tmp, threads, n):
    "put_if_absent + get pairs per second (new ids) from `threads` threads"
    store, h = SQLiteIdempotencyStore(tmp/f'idem-{threads}-{time.time_ns()}.db'), hash_payload({'x': 1})
    per = n // threads
    def work(k):
        for i in range(per):
            tid = f'i{k}-{i}'
            if store.get(tid) is None: store.put_if_absent(tid, h, {'decision': 'approve'}, ttl_s=3600)
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    return per * threads / (time.perf_counter() - t0)

def main():
    tmp = Path(tempfile.mkdtemp(prefix='alerts-bench-'))
    os.environ.setdefault('AWS_ACCESS_KEY_ID', 'x'); os.environ.setdefault('AWS_SECRET_ACCESS_KEY', 'x')
    print(f'python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}, tmp {tmp}')
    dispatch_latency(tmp, 'healthy: sqlite sink', [SQLiteSink(tmp/'ok.db')], 200)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); closed = s.getsockname()[1]
    dead = SNSSink(TOPIC, client=aws_client('sns', 0.5, 1.0, 'us-east-1', f'http://127.0.0.1:{closed}'))
    dispatch_latency(tmp, 'dead, no breaker: sns refused + sqlite', [dead, SQLiteSink(tmp/'dead.db')], 50, breaker_failures=None)
    dispatch_latency(tmp, 'dead, breaker (default 5/30 s): same', [dead, SQLiteSink(tmp/'dead2.db')], 50)
    with socket.socket() as hole:
        hole.bind(('127.0.0.1', 0)); hole.listen(256)
        hang = SNSSink(TOPIC, client=aws_client('sns', 0.5, 1.0, 'us-east-1', f'http://127.0.0.1:{hole.getsockname()[1]}'))
        dispatch_latency(tmp, 'hanging, no breaker: sns never answers', [hang], 20, breaker_failures=None)
        dispatch_latency(tmp, 'hanging, breaker (default 5/30 s): same', [hang], 20)
    for th in (1, 8):
        rates = [traffic_rate(tmp, th, 20_000) for _ in range(3)]
        print(f'traffic log record(), {th} thread(s): median {statistics.median(rates):,.0f} rows/s (3 runs of 20,000: {", ".join(f"{r:,.0f}" for r in rates)})')
    for th in (1, 8):
        rates = [idempotency_rate(tmp, th, 10_000) for _ in range(3)]
        print(f'idempotency get+put_if_absent (sqlite), {th} thread(s): median {statistics.median(rates):,.0f} requests/s (3 runs of 10,000)')

if __name__ == '__main__': main()
