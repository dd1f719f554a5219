"Per-evaluation and import cost of the two CEL packages on one typical rule (run in a venv with common-expression-language==0.10.0 and cel-python==0.5.0: python reports/bench/policy_cel_measure.py)"
import subprocess, sys, time, statistics, json
def imp(mod):
    ts = []
    for _ in range(3):
        t = time.perf_counter(); subprocess.run([sys.executable, '-c', f'import {mod}'], check=True); ts.append(time.perf_counter() - t)
    base = []
    for _ in range(3):
        t = time.perf_counter(); subprocess.run([sys.executable, '-c', 'pass'], check=True); base.append(time.perf_counter() - t)
    return (min(ts) - min(base)) * 1000
expr = 'Amount >= 1000.0 && hour_of_day in [0, 1, 2, 3, 4, 5]'
ctx = {f'V{i}': 0.1 * i for i in range(1, 29)} | {'Time': 7200.0, 'Amount': 1500.0, 'hour_of_day': 2,
       'fraud_probability': 0.05, 'model_decision': 'approve'}
def timeit(fn, n):
    for _ in range(200): fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter_ns(); fn(); ts.append(time.perf_counter_ns() - t)
    ts.sort(); return ts[len(ts) // 2] / 1000
out = {}
import cel
prog = cel.compile(expr)
c = cel.Context(variables=ctx) if hasattr(cel, 'Context') else None
try: out['common-expression-language (cel) per eval us, context built once'] = timeit(lambda: prog.execute(c), 5000)
except Exception as e: out['cel error'] = repr(e)
try: out['common-expression-language (cel) per eval us, context per call'] = timeit(lambda: prog.execute(cel.Context(variables=ctx)), 5000)
except Exception as e: out['cel error2'] = repr(e)
print('cel result', prog.execute(cel.Context(variables=ctx)))
import celpy
env = celpy.Environment()
p2 = env.program(env.compile(expr))
act = {k: celpy.json_to_cel(v) for k, v in ctx.items()}
out['cel-python (celpy) per eval us, activation built once'] = timeit(lambda: p2.evaluate(act), 2000)
out['cel-python (celpy) per eval us, activation per call'] = timeit(lambda: p2.evaluate({k: celpy.json_to_cel(v) for k, v in ctx.items()}), 1000)
print('celpy result', p2.evaluate(act))
out['import cel ms'] = imp('cel')
out['import celpy ms'] = imp('celpy')
print(json.dumps(out, indent=1))
