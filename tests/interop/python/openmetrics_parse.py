#!/usr/bin/env python3
"""Parses an OpenMetrics text exposition from stdin with the reference parser of
prometheus_client (PyPI `prometheus-client`), which rejects what the format forbids:
no or several `# EOF`, a family declared twice, a counter sample without `_total`,
metadata after its samples, a histogram whose buckets are not cumulative or lack +Inf...

Prints {"ok": true, "families": {NAME: {"type": T, "help": H, "unit": U,
"samples": [[SAMPLE_NAME, {LABEL: VALUE}, VALUE], ...]}}} on success, or
{"ok": false, "error": "..."} and exits 1.

Used by crates/zapsocket-cli/tests/realtime.rs on `zap serve`'s /metrics.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    try:
        families = {}
        for family in text_string_to_metric_families(text):
            if family.name in families:
                raise ValueError(f"family {family.name} twice")
            families[family.name] = {
                "type": family.type,
                "help": family.documentation,
                "unit": family.unit,
                "samples": [[s.name, s.labels, s.value] for s in family.samples],
            }
    except Exception as error:  # the parser raises ValueError, and others on odd input
        print(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    print(json.dumps({"ok": True, "families": families}))


if __name__ == "__main__":
    main()
