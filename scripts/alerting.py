"""The live alerting test (issue 17): Prometheus and Alertmanager scrape real
`fraudlens serve` processes (two replicas, one with a shadow model) and a real
`fraudlens detect` (on the Kafka-compatible broker tansu, fed by the
simulator and by a producer with a clock years ahead, whose records are
dead-lettered) with the rules of deploy/prometheus/rules, and two alerts must
reach a webhook receiver run here:

- APIServiceDown: one of the two API replicas is killed (SIGKILL);
- HighRiskFraudSpike: after minutes of ordinary simulated traffic on the other
  replica, a burst of fraudulent transactions (copies of the simulator's fraud
  rows) joins it.

Then every query of every panel of the Grafana dashboards
(deploy/grafana/dashboards) runs against this Prometheus: none may error or
return nothing.

Run by scripts/alerting, which installs Prometheus and Alertmanager and builds
fraudlens; usage: alerting.py FRAUDLENS_BIN TANSU_BIN WORK_DIR
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(REPO, "deploy", "prometheus", "rules", "fraudlens.yml")
DASHBOARDS = os.path.join(REPO, "deploy", "grafana", "dashboards")
TRAIN_TO = "2026-02-05"
BURST_UNTIL = "2026-02-09"
# ordinary traffic, and the burst's fraudulent transactions added to it (per second)
BASELINE_RATE = 20
BURST_RATE = 20
# ordinary traffic before the burst: the spike rule compares with the median of what came before
BASELINE_SECONDS = 240
KILL_AFTER = 20
DOWN_DEADLINE = 240
SPIKE_DEADLINE = 600

started = time.monotonic()
processes = []


def log(message):
    print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)


def fail(message):
    log(f"FAILED: {message}")
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, args, work):
    out = open(os.path.join(work, f"{name}.log"), "w")
    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    processes.append((name, process))
    return process


def stop_all():
    for _, process in processes:
        if process.poll() is None:
            process.terminate()
    for _, process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def http(method, url, body=None, headers=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def wait_until(what, check, deadline):
    last_error = [None]
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        try:
            if check():
                return
        except urllib.error.HTTPError as error:
            last_error[0] = f"HTTP {error.code}: {error.read().decode(errors='replace')[:200]}"
        except (urllib.error.URLError, ConnectionError, OSError, subprocess.TimeoutExpired) as error:
            last_error[0] = str(error)
        time.sleep(0.5)
    fail(f"{what}: not within {deadline} s" + (f" (last error: {last_error[0]})" if last_error[0] else ""))


class Receiver(BaseHTTPRequestHandler):
    """Alertmanager's webhook: every alert received, with when."""

    alerts = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with Receiver.lock:
            for alert in body["alerts"]:
                Receiver.alerts.append((time.monotonic(), alert))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def received(name, status="firing", **labels):
    with Receiver.lock:
        for at, alert in Receiver.alerts:
            if (
                alert["labels"].get("alertname") == name
                and alert["status"] == status
                and all(alert["labels"].get(k) == v for k, v in labels.items())
            ):
                return at, alert
    return None


def rows(path):
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            row["amount"] = float(row["amount"])
            yield row


def main():
    binary, tansu, work = sys.argv[1], sys.argv[2], sys.argv[3]

    def fl(*args, timeout=300):
        """One fraudlens command to its end; its output is shown when it fails."""
        try:
            return subprocess.run([binary, *args], cwd=work, check=True, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.CalledProcessError as error:
            fail(f"fraudlens {' '.join(args)} exited {error.returncode}:\n{error.stdout}{error.stderr}")
        except subprocess.TimeoutExpired:
            fail(f"fraudlens {' '.join(args)} took over {timeout} s")

    # --- data, a model, and a shadow candidate that reads the same rows
    fl("simulate", "--customers", "1500", "--terminals", "3000", "--days", "45", "--seed", "21",
       "--stolen-card-rate", "0.003", "--out", "tx.csv")
    fl("train", "--data", "tx.csv", "--train-to", TRAIN_TO, "--trees", "60", "--out", "model")
    fl("train", "--data", "tx.csv", "--train-to", TRAIN_TO, "--trees", "30", "--num-leaves", "15",
       "--out", "shadow-model")
    # the entity state of the days before: replica B starts warm, as a replica that has served them
    with open(os.path.join(work, "tx.csv"), newline="") as f, open(os.path.join(work, "history.csv"), "w", newline="") as out:
        reader = csv.reader(f)
        writer = csv.writer(out)
        header = next(reader)
        writer.writerow(header)
        at = header.index("timestamp")
        writer.writerows(r for r in reader if r[at] < TRAIN_TO)
    fl("features", "--data", "history.csv", "--out", "history-features.csv", "--snapshot-out", "state.bin")
    later = [r for r in rows(os.path.join(work, "tx.csv")) if r["timestamp"] >= TRAIN_TO]
    ordinary = [r for r in later if r["is_fraud"] == "0"]
    # the burst's fraud from the days the ordinary traffic covers, so that no ordinary transaction
    # falls more than event_time.max_lateness (7 days) behind the latest one accepted
    fraud = [r for r in later if r["is_fraud"] == "1" and r["timestamp"] < BURST_UNTIL]
    log(f"model trained to {TRAIN_TO}; after it {len(ordinary)} ordinary and {len(fraud)} fraudulent transactions")
    if len(fraud) < 20 or len(ordinary) < BASELINE_RATE * (BASELINE_SECONDS + SPIKE_DEADLINE) \
            or ordinary[BASELINE_RATE * (BASELINE_SECONDS + SPIKE_DEADLINE)]["timestamp"] > "2026-02-12":
        fail("the simulation has too few transactions for the test")

    # --- the webhook receiver, two API replicas
    receiver_port = free_port()
    receiver = ThreadingHTTPServer(("127.0.0.1", receiver_port), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    api = {}
    for name in ("api-a", "api-b"):
        port = free_port()
        db = f"sqlite://{work}/{name}.db"
        key = fl("keys", "create", "--role", "service", "--database", db).stdout.strip().split()[-1]
        warm = ["env", f"FRAUDLENS_SERVE__STATE_FILE={work}/state.bin"] if name == "api-b" else []
        start(name, [*warm, binary, "serve", "--model", "model", "--database", db, "--listen", f"127.0.0.1:{port}"],
              work)
        api[name] = (port, key)
    for name, (port, _) in api.items():
        wait_until(f"{name} ready", lambda: http("GET", f"http://127.0.0.1:{port}/health/ready")[0] == 200, 60)
    # replica B shadows the candidate (it follows the registry, as after `fraudlens models shadow`)
    db_b = f"sqlite://{work}/api-b.db"
    shadow = fl("models", "register", "shadow-model", "--database", db_b).stdout.strip().split()[-1]
    fl("models", "shadow", shadow, "--database", db_b)

    # --- a broker, a detector, a producer of simulated transactions, and one with a wrong clock
    broker = f"127.0.0.1:{free_port()}"
    start("tansu", [tansu, "broker", "--listener-url", f"tcp://{broker}", "--advertised-listener-url",
                    f"tcp://{broker}", "--storage-engine", "memory://tansu/"], work)
    for topic in ("transactions", "fraud-decisions", "fraud-dead-letters"):
        wait_until(f"topic {topic}", lambda: subprocess.run(
            [tansu, "topic", "create", "--broker", f"tcp://{broker}", "--partitions", "2", topic],
            capture_output=True, timeout=10).returncode == 0, 30)
    detect_port = free_port()
    start("detect", [binary, "detect", "--model", "model", "--database", f"sqlite://{work}/detect.db",
                     "--brokers", broker, "--topic", "transactions", "--group", "alerting",
                     "--metrics-listen", f"127.0.0.1:{detect_port}"], work)
    wait_until("detect ready", lambda: http("GET", f"http://127.0.0.1:{detect_port}/health/ready")[0] == 200, 60)
    start("producer", [binary, "simulate", "--customers", "300", "--terminals", "600", "--days", "40",
                       "--start-date", "2026-02-05", "--seed", "22", "--rate", "40",
                       "--to", f"kafka://{broker}/transactions"], work)
    fl("simulate", "--customers", "3", "--terminals", "5", "--days", "1", "--start-date", "2031-01-01",
       "--to", f"kafka://{broker}/transactions")

    # --- Alertmanager and Prometheus, with the repository's rules
    am_port, prom_port = free_port(), free_port()
    with open(os.path.join(work, "alertmanager.yml"), "w") as f:
        f.write(
            "route:\n  receiver: webhook\n  group_by: [alertname, instance]\n"
            "  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            f"receivers:\n  - name: webhook\n    webhook_configs:\n"
            f"      - url: http://127.0.0.1:{receiver_port}/alerts\n"
        )
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        targets = ", ".join(f'"127.0.0.1:{port}"' for port, _ in api.values())
        f.write(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: [{json.dumps(RULES)}]\n"
            f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n"
            f"scrape_configs:\n  - job_name: fraudlens-serve\n    static_configs:\n      - targets: [{targets}]\n"
            f"  - job_name: fraudlens-detect\n    static_configs:\n      - targets: [\"127.0.0.1:{detect_port}\"]\n"
        )
    start("alertmanager", [os.environ.get("ALERTMANAGER", "prometheus-alertmanager"),
                           "--config.file=alertmanager.yml", "--storage.path=am-data",
                           f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], work)
    start("prometheus", ["prometheus", "--config.file=prometheus.yml", "--storage.tsdb.path=prom-data",
                         f"--web.listen-address=127.0.0.1:{prom_port}"], work)
    prom = f"http://127.0.0.1:{prom_port}"
    wait_until("Alertmanager ready", lambda: http("GET", f"http://127.0.0.1:{am_port}/-/ready")[0] == 200, 60)
    wait_until("Prometheus ready", lambda: http("GET", f"{prom}/-/ready")[0] == 200, 60)

    def query(expr):
        url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = json.loads(http("GET", url)[1])
        if body["status"] != "success":
            fail(f"query {expr!r}: {body}")
        return body["data"]["result"]

    wait_until("both replicas and the detector scraped",
               lambda: len(query('up{job=~"fraudlens-serve|fraudlens-detect"} == 1')) == 3, 60)
    log("Prometheus scrapes both API replicas and the detector; the rules are loaded")

    # --- traffic on replica B: ordinary throughout, the fraudulent burst from BASELINE_SECONDS on
    port_b, key_b = api["api-b"]
    burst = threading.Event()
    stop = threading.Event()
    sent = {"ordinary": 0, "fraud": 0, "errors": 0}

    def traffic():
        tick, n, copy = 0.5, 0, 0
        while not stop.is_set():
            began = time.monotonic()
            batch = ordinary[n : n + int(BASELINE_RATE * tick)]
            n += len(batch)
            extra = []
            if burst.is_set():
                for _ in range(int(BURST_RATE * tick)):
                    row = dict(fraud[copy % len(fraud)])
                    row["transaction_id"] = f"{row['transaction_id']}-burst-{copy}"
                    extra.append(row)
                    copy += 1
            body = [{k: v for k, v in r.items() if k not in ("is_fraud", "fraud_scenario")} for r in batch + extra]
            try:
                # one transaction alone (the single-decision route and its latency), the rest as a batch
                if body:
                    http("POST", f"http://127.0.0.1:{port_b}/api/v1/transactions", body[0],
                         {"x-api-key": key_b}, timeout=30)
                if len(body) > 1:
                    _, answer = http("POST", f"http://127.0.0.1:{port_b}/api/v1/transactions/batch", body[1:],
                                     {"x-api-key": key_b}, timeout=30)
                    refused = [item for item in json.loads(answer)["results"] if item["status"] != 200]
                    if refused:
                        raise OSError(f"{len(refused)} of a batch refused, e.g. {refused[0]}")
                sent["ordinary"] += len(batch)
                sent["fraud"] += len(extra)
            except urllib.error.HTTPError as error:
                sent["errors"] += 1
                if sent["errors"] == 1:
                    log(f"a request failed: {error}: {error.read().decode(errors='replace')[:300]}")
            except (urllib.error.URLError, OSError) as error:
                sent["errors"] += 1
                if sent["errors"] == 1:
                    log(f"a request failed: {error}")
            time.sleep(max(0.0, tick - (time.monotonic() - began)))

    threading.Thread(target=traffic, daemon=True).start()
    traffic_started = time.monotonic()

    # --- APIServiceDown: kill replica A
    time.sleep(KILL_AFTER)
    name, process = next(p for p in processes if p[0] == "api-a")
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = time.monotonic()
    instance_a = f"127.0.0.1:{api['api-a'][0]}"
    log(f"killed api-a ({instance_a})")
    wait_until("APIServiceDown at the webhook", lambda: received("APIServiceDown", instance=instance_a), DOWN_DEADLINE)
    at, alert = received("APIServiceDown", instance=instance_a)
    log(f"APIServiceDown -> webhook {at - killed:.1f} s after the kill (rule: for 1m): {alert['annotations']['summary']}")
    if received("HighRiskFraudSpike"):
        fail("HighRiskFraudSpike fired before the burst")

    # --- HighRiskFraudSpike: the burst
    time.sleep(max(0.0, BASELINE_SECONDS - (time.monotonic() - traffic_started)))
    if received("HighRiskFraudSpike"):
        fail("HighRiskFraudSpike fired on ordinary traffic, before the burst")
    share = query('fraudlens:flagged_share:ratio_rate2m{job="fraudlens-serve"}')
    log(f"before the burst: flagged share {share[0]['value'][1] if share else 'none'}; sent {sent}")
    burst.set()
    burst_started = time.monotonic()
    log(f"burst: {BURST_RATE} fraudulent transactions a second join the {BASELINE_RATE} ordinary ones")

    def spiked():
        hit = received("HighRiskFraudSpike", job="fraudlens-serve")
        return hit if hit and hit[0] >= burst_started else None

    until = time.monotonic() + SPIKE_DEADLINE
    last = 0.0
    while not spiked():
        if time.monotonic() > until:
            fail(f"HighRiskFraudSpike did not reach the webhook within {SPIKE_DEADLINE} s of the burst")
        if time.monotonic() - last > 30:
            last = time.monotonic()
            share = query('fraudlens:flagged_share:ratio_rate2m{job="fraudlens-serve"}')
            baseline = query('quantile_over_time(0.5, fraudlens:flagged_share:ratio_rate2m{job="fraudlens-serve"}[2h])')
            log(f"flagged share {share[0]['value'][1] if share else '-'}, its median "
                f"{baseline[0]['value'][1] if baseline else '-'}; sent {sent}")
        time.sleep(0.5)
    at, alert = spiked()
    log(f"HighRiskFraudSpike -> webhook {at - burst_started:.1f} s after the burst began "
        f"(rule: 2 m rate, for 2m): {alert['annotations']['summary']}")
    stop.set()
    if sent["errors"]:
        fail(f"{sent['errors']} traffic batches failed")
    log(f"both alerts reached the webhook; sent {sent}")

    # --- every dashboard panel's queries return data
    panels = queries = 0
    problems = []
    for name in sorted(os.listdir(DASHBOARDS)):
        board = json.load(open(os.path.join(DASHBOARDS, name)))
        for p in board["panels"]:
            if p["type"] == "row":
                continue
            panels += 1
            for target in p["targets"]:
                queries += 1
                # Grafana's variables, as Grafana would fill them in at a 1 s scrape interval
                expr = target["expr"].replace("$__rate_interval", "1m")
                url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
                try:
                    body = json.loads(http("GET", url)[1])
                except urllib.error.HTTPError as error:
                    problems.append(f"{name} / {p['title']}: {expr}: {error.read().decode()}")
                    continue
                if not body["data"]["result"]:
                    problems.append(f"{name} / {p['title']}: {expr}: no data")
    if problems:
        fail("dashboard queries:\n  " + "\n  ".join(problems))
    log(f"dashboards: {panels} panels, {queries} queries, every one returns data")


if __name__ == "__main__":
    # stopped (scripts/test exiting): the processes are stopped all the same
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    finally:
        # a second SIGTERM does not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all()
