"""Writes the Grafana dashboards of deploy/grafana/dashboards/ from the panels
below (the JSON files are generated: edit this file, run it, commit both;
scripts/ops fails when they differ).

    python3 deploy/grafana/dashboards.py [OUT_DIR]

Each panel's queries run against a live Prometheus in scripts/alerting, which
fails when one errors or returns nothing.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = "$__rate_interval"
SINGLE = 'route=~"/api/v1/transactions|/api/v1/predictions|/predict"'


def panel(title, targets, unit="short", kind="timeseries", description="", width=12, height=8, **options):
    """One panel: `targets` is a list of (PromQL, legend)."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options,
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "range": kind != "table",
             "instant": kind == "table"}
            for i, (expr, legend) in enumerate(targets)
        ],
        "_size": (width, height),
    }


def dashboard(uid, title, description, rows):
    """`rows`: (row title, [panels]) laid out 24 columns wide."""
    panels, y, next_id = [], 0, 1
    for row_title, row_panels in rows:
        panels.append({"type": "row", "title": row_title, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        x, row_height = 0, 0
        for p in row_panels:
            width, height = p.pop("_size")
            if x + width > 24:
                x, y = 0, y + row_height
                row_height = 0
            p["id"] = next_id
            p["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
            next_id += 1
            x += width
            row_height = max(row_height, height)
            panels.append(p)
        y += row_height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["fraudlens"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "links": [{"title": "fraudlens dashboards", "type": "dashboards", "tags": ["fraudlens"], "asDropdown": True}],
        "panels": panels,
    }


OVERVIEW = dashboard("fraudlens-overview", "fraudlens: overview", "Traffic, decisions, fraud rate, latency, errors and the processes.", [
    ("Decisions", [
        panel("Decisions per second", [(f"sum by (decision) (rate(fraud_predictions_total[{RATE}]))", "{{decision}}")],
              unit="ops", description="Every new decision (replays of a stored id are not counted), by kind."),
        panel("Flagged share (review + decline)", [
            ("fraudlens:flagged_share:ratio_rate2m", "{{job}}, 2 m"),
            ("quantile_over_time(0.5, fraudlens:flagged_share:ratio_rate2m[2h])", "{{job}}, median of 2 h"),
        ], unit="percentunit", description="HighRiskFraudSpike fires when the first is 3 times the second and 5 points above it."),
        panel("Score distribution (last 5 minutes)", [
            ("sum by (le) (increase(fraudlens_score_bucket[5m]))", "{{le}}")],
              kind="bargauge", unit="short", width=12,
              description="Decisions per score bucket (the calibrated probability of a trained model)."),
        panel("Review precision (labelled flagged decisions)", [
            ("fraudlens_review_precision", "{{job}} {{instance}}"),
            ("sum by (label) (fraudlens_flagged_decisions)", "{{label}}"),
        ], unit="short", description="The share of labelled flagged decisions that were fraud, over the latest flagged decisions."),
    ]),
    ("API", [
        panel("Requests per second by status", [
            (f'sum by (status) (rate(http_requests_total{{job="fraudlens-serve"}}[{RATE}]))', "{{status}}")], unit="reqps"),
        panel("Errors (5xx share)", [
            (f'(sum(rate(http_requests_total{{job="fraudlens-serve", status=~"5.."}}[5m])) or vector(0))'
             f' / sum(rate(http_requests_total{{job="fraudlens-serve"}}[5m]))', "5xx share")],
              unit="percentunit", description="HighErrorRate fires above 5 % for 5 minutes."),
        panel("Single decision latency", [
            (f'histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{{job="fraudlens-serve", {SINGLE}}}[{RATE}])))', "p50"),
            (f'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{job="fraudlens-serve", {SINGLE}}}[{RATE}])))', "p99"),
        ], unit="s", description="HighLatencyP99 fires above 100 ms for 10 minutes."),
        panel("Store commits", [
            (f"histogram_quantile(0.99, sum by (le, job) (rate(store_commit_duration_seconds_bucket[{RATE}])))", "p99 {{job}}"),
            (f"sum by (job) (rate(store_commit_duration_seconds_count[{RATE}]))", "commits/s {{job}}"),
        ], unit="s", description="Group commits of decisions: one per batch of waiting decisions."),
    ]),
    ("Processes", [
        panel("Up", [('up{job=~"fraudlens-serve|fraudlens-detect"}', "{{job}} {{instance}}")], kind="stat", width=6),
        panel("Serving model", [('fraudlens_model_info == 1', "{{instance}}: {{version}} ({{kind}})")],
              kind="table", width=6),
        panel("Version", [("fraudlens_build_info", "{{instance}}: {{version}} {{commit}}")], kind="table", width=6),
        panel("Uptime", [("fraudlens_uptime_seconds", "{{instance}}")], kind="stat", unit="s", width=6),
        panel("CPU (cores)", [(f'rate(process_cpu_seconds_total{{job=~"fraudlens-.*"}}[{RATE}])', "{{instance}}")], width=8),
        panel("Resident memory", [('process_resident_memory_bytes{job=~"fraudlens-.*"}', "{{instance}}")], unit="bytes", width=8),
        panel("Open file descriptors", [
            ('process_open_fds{job=~"fraudlens-.*"}', "{{instance}}"),
            ('process_max_fds{job=~"fraudlens-.*"}', "{{instance}} limit"),
        ], width=8),
    ]),
])

MODEL = dashboard("fraudlens-model", "fraudlens: model", "The serving model: scores, drift, the shadow model and swaps.", [
    ("Scores and drift", [
        panel("Score distribution over time", [
            (f"sum by (le) (rate(fraudlens_score_bucket[{RATE}]))", "≤ {{le}}")], unit="ops",
              description="Cumulative buckets of the ranking score."),
        panel("Score PSI (live against validation)", [("fraudlens_score_psi", "{{instance}}")],
              description="ScorePSIHigh fires above 0.25 for 30 minutes."),
        panel("Feature PSI, the 10 highest", [("topk(10, max by (feature) (fraudlens_feature_psi))", "{{feature}}")],
              description="FeaturePSIHigh fires above 0.25 for 30 minutes; `fraudlens drift` explains."),
        panel("Feature PSI", [("max by (feature) (fraudlens_feature_psi)", "{{feature}}")], kind="table"),
    ]),
    ("Shadow model", [
        panel("Shadow agreement", [("fraudlens_shadow_agreement", "{{instance}}")], unit="percentunit",
              description="The share of the last 10,000 shadowed decisions on which both models decided the same."),
        panel("Shadow rows per second", [
            (f"sum by (instance) (rate(fraudlens_shadow_scored_total[{RATE}]))", "scored {{instance}}"),
            (f"sum by (instance) (rate(fraudlens_shadow_dropped_total[{RATE}])) or vector(0)", "dropped"),
        ], unit="ops"),
    ]),
    ("Swaps", [
        panel("Model swaps (last hour)", [("sum by (instance) (increase(fraudlens_model_swaps_total[1h])) or vector(0)", "{{instance}}")],
              kind="stat"),
        panel("Refused models (last hour)", [("sum by (instance) (increase(fraudlens_model_swap_refused_total[1h])) or vector(0)", "{{instance}}")],
              kind="stat"),
    ]),
])

STREAM = dashboard("fraudlens-stream", "fraudlens: stream", "The Kafka detectors: lag, throughput, dead letters.", [
    ("Consumer group", [
        panel("Lag by partition", [("sum by (topic, partition) (kafka_consumer_lag)", "{{topic}}/{{partition}}")],
              description="ConsumerLagHigh fires above 10,000 records for 10 minutes."),
        panel("Records consumed per second", [(f"sum by (instance) (rate(records_consumed_total[{RATE}]))", "{{instance}}")],
              unit="ops"),
        panel("Partitions per detector", [("kafka_assigned_partitions", "{{instance}}")], kind="stat", width=8),
        panel("Record latency (produced to decided)", [
            (f"histogram_quantile(0.99, sum by (le) (rate(record_latency_seconds_bucket[{RATE}])))", "p99"),
            (f"histogram_quantile(0.5, sum by (le) (rate(record_latency_seconds_bucket[{RATE}])))", "p50"),
        ], unit="s", width=8),
        panel("Batch duration p99", [
            (f"histogram_quantile(0.99, sum by (le) (rate(batch_duration_seconds_bucket[{RATE}])))", "p99")],
              unit="s", width=8),
    ]),
    ("Dead letters", [
        panel("Dead letters (last hour)", [("sum by (instance) (increase(dead_letters_total[1h]))", "{{instance}}")],
              kind="stat", description="DeadLettersIncreasing fires while they keep coming."),
        panel("Dead letters per second", [(f"sum by (instance) (rate(dead_letters_total[{RATE}]))", "{{instance}}")],
              unit="ops"),
    ]),
])


def main():
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "dashboards")
    os.makedirs(out, exist_ok=True)
    for name, board in (("overview", OVERVIEW), ("model", MODEL), ("stream", STREAM)):
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(board, f, indent=2, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
