#!/usr/bin/env python3
"""Runs issue 18's query table against a running Ariadne and prints one JSON object per query.

  bench-query.py URL LABEL [PID]       time each query (one warm-up, then the median of 5),
                                       and the server's CPU time per query when given its PID
  bench-query.py --table BLOCKS HEAD   print the Markdown table of two runs
  bench-query.py --bucket-table LOCAL S3
                                       the table of a local-disk run and a query node's run over
                                       MinIO (scripts/bench-bucket)

With BENCH_METRICS=1 each query also reports, from the server's /metrics, the object-store
requests and bytes and the cache hits of its first run (cold: the node has not run this query
before) and of the median runs after it (warm).

Search and metrics windows are the last hour, as Grafana's default time picker sends them.
"""
import json
import os
import statistics
import sys
import time
import urllib.parse
import urllib.request

AND = '{ span.task.count = 7 && name = "render" }'
SEARCHES = [
    ('`{ resource.service.name = "loadgen-small" }` limit 20', '{ resource.service.name = "loadgen-small" }', 20),
    ('`{ span.task.count = 7 && name = "render" }` limit 20', AND, 20),
    ('`{ span.task.count = 4242 }` (no match)', '{ span.task.count = 4242 }', 20),
    ('`{ name = "GET /api/tasks" } >> { name = "render" && span.task.count = 7 }` limit 20',
     '{ name = "GET /api/tasks" } >> { name = "render" && span.task.count = 7 }', 20),
    ('`{ } | count() > 11` (no match)', '{ } | count() > 11', 20),
    ('the AND query, limit 1000', AND, 1000),
]


def get(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=900) as r:
        body = r.read()
    ms = (time.perf_counter() - t0) * 1000
    return ms, json.loads(body) if body else None


PID = None


def cpu_ns():
    """The server's CPU time so far, all threads, in nanoseconds (0 without a PID)."""
    if PID is None:
        return 0
    total = 0
    for task in os.listdir('/proc/%s/task' % PID):
        try:
            with open('/proc/%s/task/%s/schedstat' % (PID, task)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # the thread ended
    return total


METRICS = os.environ.get('BENCH_METRICS') == '1'
BASE = None
COUNTERS = ('ariadne_objstore_requests_total', 'ariadne_objstore_read_bytes_total', 'ariadne_cache_hits_total',
            'ariadne_cache_misses_total')


def counters():
    """The object-store and cache counters of the server, or {} without BENCH_METRICS."""
    if not METRICS:
        return {}
    with urllib.request.urlopen(BASE + '/metrics', timeout=60) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in COUNTERS:
            out[parts[0]] = float(parts[1])
    return out


IO = []  # per query: (cold counters delta, warm counters delta per run)


def delta(a, b, runs=1):
    return {k: (b.get(k, 0) - a.get(k, 0)) / runs for k in COUNTERS} if METRICS else {}


def timed(url, answer):
    """Median of 5 after a warm-up (wall ms, server CPU ms), and a short description of the
    answer. A query whose warm-up takes over 5 s is reported from that one run."""
    m0 = counters()
    c0 = cpu_ns()
    ms, body = get(url)
    cpu = (cpu_ns() - c0) / 1e6
    m1 = counters()
    cold_ms = ms
    if ms > 5000:
        IO.append((cold_ms, delta(m0, m1), delta(m1, m1)))
        return ms, cpu, answer(body) + ' (1 run)'
    runs, cpus = [], []
    out = None
    for _ in range(5):
        c0 = cpu_ns()
        ms, body = get(url)
        cpus.append((cpu_ns() - c0) / 1e6)
        runs.append(ms)
        out = answer(body)
    IO.append((cold_ms, delta(m0, m1), delta(m1, counters(), 5)))
    return statistics.median(runs), statistics.median(cpus), out


def settle(limit_s=120):
    """Waits until the server is nearly idle (under a tenth of a core over half a second), so
    that the figures are the queries' and not what the load left behind (garbage collection of
    the ingest's allocations, WAL and flush work)."""
    if PID is None:
        return
    t0 = time.time()
    while time.time() - t0 < limit_s:
        c0 = cpu_ns()
        time.sleep(0.5)
        if (cpu_ns() - c0) / 1e6 < 50:
            break
    print('settled after %.1f s' % (time.time() - t0), file=sys.stderr)


def run(base, label):
    global BASE
    BASE = base
    settle()
    now = int(time.time())
    start, end = now - 3600, now
    # The head builds its search index on the first read (it keeps none while nobody reads):
    # that one-time cost is reported apart, not charged to the first query of the table.
    c0 = cpu_ns()
    ms, _ = get(base + '/api/search?' + urllib.parse.urlencode({'q': '{ name = "x" }', 'limit': 1, 'start': start, 'end': end}))
    print('%s: first search after the load %.0f ms, %.0f ms server CPU' % (label, ms, (cpu_ns() - c0) / 1e6), file=sys.stderr)
    settle()
    rows = []
    for name, q, limit in SEARCHES:
        url = base + '/api/search?' + urllib.parse.urlencode({'q': q, 'limit': limit, 'start': start, 'end': end})
        ms, cpu, n = timed(url, lambda b: '%d traces' % len(b.get('traces') or []))
        rows.append((name, ms, cpu, n))
    url = base + '/api/metrics/query_range?' + urllib.parse.urlencode(
        {'q': '{ } | rate() by (name)', 'start': start, 'end': end, 'step': '60s'})
    ms, cpu, n = timed(url, lambda b: '%d series' % len(b.get('series') or []))
    rows.append(('`/api/metrics/query_range` `{ } | rate() by (name)`, 1 h, step 60s', ms, cpu, n))
    url = base + '/api/v2/search/tags?' + urllib.parse.urlencode({'start': start, 'end': end})
    ms, cpu, n = timed(url, lambda b: '%d names' % sum(len(s.get('tags') or []) for s in b.get('scopes') or []))
    rows.append(('`/api/v2/search/tags`', ms, cpu, n))
    url = base + '/api/v2/search/tag/span.task.count/values?' + urllib.parse.urlencode({'start': start, 'end': end})
    ms, cpu, n = timed(url, lambda b: '%d values' % len(b.get('tagValues') or []))
    rows.append(('`/api/v2/search/tag/span.task.count/values`', ms, cpu, n))
    # Trace by ID: 20 IDs of the newest traces, each fetched 5 times; median and max over all.
    _, body = get(base + '/api/search?' + urllib.parse.urlencode({'q': '{ }', 'limit': 20, 'start': start, 'end': end}))
    ids = [t['traceID'] for t in body.get('traces') or []]
    times, cpus, colds = [], [], []
    spans = 0
    m0 = counters()
    cold_io = delta(m0, m0)
    warm_io = delta(m0, m0)
    for tid in ids:
        a = counters()
        colds.append(get(base + '/api/traces/' + tid)[0])
        after_cold = counters()
        for k, v in delta(a, after_cold).items():
            cold_io[k] += v / len(ids)
        for _ in range(5):
            c0 = cpu_ns()
            ms, b = get(base + '/api/traces/' + tid)
            cpus.append((cpu_ns() - c0) / 1e6)
            times.append(ms)
        for k, v in delta(after_cold, counters(), 5).items():
            warm_io[k] += v / len(ids)
        spans += sum(len(ss.get('spans') or []) for rs in (b.get('batches') or b.get('resourceSpans') or []) for ss in rs.get('scopeSpans') or [])
    if times:
        IO.append((statistics.median(colds), cold_io, warm_io))
        rows.append(('trace by ID (%d IDs)' % len(ids), statistics.median(times), statistics.median(cpus),
                     '%d spans, max %.1f ms' % (spans, max(times))))
    for i, (name, ms, cpu, n) in enumerate(rows):
        row = {'label': label, 'query': name, 'ms': round(ms, 1), 'cpu': round(cpu, 1), 'answer': n}
        if METRICS and i < len(IO):
            row['cold_ms'] = round(IO[i][0], 1)
            row['cold'], row['warm'] = IO[i][1], IO[i][2]
        print(json.dumps(row))


def table(blocks_file, head_file):
    def load(f):
        return [json.loads(l) for l in open(f) if l.strip()]
    b, h = load(blocks_file), load(head_file)
    print('| query | Ariadne (blocks / head), wall | server CPU (blocks / head) | answer (blocks / head) |')
    print('|---|---|---|---|')
    for rb, rh in zip(b, h):
        same = rb['answer'] if rb['answer'] == rh['answer'] else '%s / %s' % (rb['answer'], rh['answer'])
        print('| %s | %s / %s ms | %s / %s ms | %s |' % (rb['query'].replace('|', '\\|'), fmt(rb['ms']), fmt(rh['ms']),
                                                        fmt(rb['cpu']), fmt(rh['cpu']), same))


def bucket_table(local_file, s3_file):
    def load(f):
        return [json.loads(l) for l in open(f) if l.strip()]

    def io(d):
        hits, misses = d['ariadne_cache_hits_total'], d['ariadne_cache_misses_total']
        rate = '%.0f%%' % (100 * hits / (hits + misses)) if hits + misses else '—'
        return '%.1f req, %s, hits %s' % (d['ariadne_objstore_requests_total'], size(d['ariadne_objstore_read_bytes_total']), rate)

    print('| query | local disk | MinIO cold (first run) | MinIO warm (median of 5) | answer (local / MinIO) |')
    print('|---|---|---|---|---|')
    for rl, rs in zip(load(local_file), load(s3_file)):
        same = rl['answer'] if rl['answer'] == rs['answer'] else '%s / %s' % (rl['answer'], rs['answer'])
        print('| %s | %s ms | %s ms; %s | %s ms; %s | %s |' % (rl['query'].replace('|', '\\|'), fmt(rl['ms']), fmt(rs['cold_ms']),
                                                           io(rs['cold']), fmt(rs['ms']), io(rs['warm']), same))


def size(b):
    if b >= 1 << 20:
        return '%.1f MiB' % (b / (1 << 20))
    return '%.0f KiB' % (b / 1024)


def fmt(ms):
    return '%.1f' % ms if ms < 10 else '%.0f' % ms


if __name__ == '__main__':
    if sys.argv[1] == '--table':
        table(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == '--bucket-table':
        bucket_table(sys.argv[2], sys.argv[3])
    else:
        if len(sys.argv) > 3:
            PID = sys.argv[3]
        run(sys.argv[1], sys.argv[2])
