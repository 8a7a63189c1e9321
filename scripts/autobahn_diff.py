#!/usr/bin/env python3
"""Compare an Autobahn|Testsuite report with the committed expected results.

Usage:
    autobahn_diff.py REPORT_DIR EXPECTED_JSON [--agent NAME] [--update]

REPORT_DIR is a wstest report folder written by ../shared/conformance
(server-suite.sh / client-suite.sh): it reads index.json (or, for a run cut
short, progress.jsonl) and expected-cases.json (the cases the run selected).
EXPECTED_JSON (autobahn/expected/{server,client}-PROFILE.json) maps every case
id to {"behavior": ..., "behaviorClose": ...}, one case per line, cases in
numeric order.

Checks, each printed case by case:
  * every selected case is in the report (a crash or timeout leaves some out);
  * every case has the behavior and close behavior the expected file records,
    and the expected file lists exactly the cases of the report;
  * policy, whatever the expected file says: in groups 1.* to 10.* the behavior
    is OK or INFORMATIONAL (never FAILED, NON-STRICT or UNIMPLEMENTED) and the
    close behavior is not FAILED.
--update rewrites EXPECTED_JSON from the report instead of comparing (it
refuses when selected cases are missing) and prints what changed; the policy
still applies.

Exit: 0 all good; 1 a difference, a missing case or a policy violation;
2 usage error or no report. Standard library only.
"""
import argparse
import json
import os
import sys

POLICY_GROUPS = {str(g) for g in range(1, 11)}  # 1.* .. 10.*
POLICY_BEHAVIORS = {"OK", "INFORMATIONAL"}
FIELDS = ("behavior", "behaviorClose")


class ReportError(Exception):
    pass


def case_key(case_id):
    """Numeric order for ids like 1.1.10 (after 1.1.9, not after 1.1.1)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in case_id.split(".")]


def load_json(path):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def pick_agent(agents, wanted):
    if wanted:
        if wanted not in agents:
            raise ReportError(f"agent {wanted!r} not in report (agents: {', '.join(sorted(agents)) or 'none'})")
        return wanted
    if len(agents) != 1:
        raise ReportError(f"report has agents {sorted(agents)}: pick one with --agent")
    return next(iter(agents))


def load_report(report_dir, wanted_agent):
    """Return (agent, {case_id: entry}) where entry has behavior, behaviorClose, ..."""
    index = os.path.join(report_dir, "index.json")
    progress = os.path.join(report_dir, "progress.jsonl")
    if os.path.isfile(index):
        data = load_json(index)
        agent = pick_agent(set(data), wanted_agent)
        return agent, data[agent], "index.json"
    if os.path.isfile(progress):  # wstest writes index.json only at the end of a run
        by_agent = {}
        with open(progress, "r", encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    entry = json.loads(line)
                    by_agent.setdefault(entry.get("agent", ""), {})[entry["id"]] = entry
        agent = pick_agent(set(by_agent), wanted_agent)
        return agent, by_agent[agent], "progress.jsonl (run did not finish)"
    raise ReportError(f"no index.json or progress.jsonl in {report_dir}")


def selected_cases(report_dir):
    path = os.path.join(report_dir, "expected-cases.json")
    return set(load_json(path)) if os.path.isfile(path) else None


def reason(report_dir, entry):
    """wstest's own words for a case's verdict, when the per-case file is there."""
    detail = entry
    if "result" not in entry and entry.get("reportfile"):
        try:
            detail = load_json(os.path.join(report_dir, entry["reportfile"]))
        except (OSError, ValueError):
            return ""
    parts = [" ".join(str(detail.get(k) or "").split()) for k in ("result", "resultClose")]
    text = " | ".join(p for p in parts if p)
    return text if len(text) <= 140 else text[:137] + "..."


def outcome(entry):
    return {field: entry.get(field) for field in FIELDS}


def show(result):
    return f"{result.get('behavior')}/{result.get('behaviorClose')}"


def policy_violations(results):
    bad = []
    for case_id, result in results.items():
        if case_id.split(".")[0] not in POLICY_GROUPS:
            continue
        if result["behavior"] not in POLICY_BEHAVIORS or result["behaviorClose"] == "FAILED":
            bad.append(case_id)
    return sorted(bad, key=case_key)


def compare(results, expected):
    """Return a list of (case_id, expected_text, actual_text) for every difference."""
    diffs = []
    for case_id in sorted(set(results) | set(expected), key=case_key):
        want, got = expected.get(case_id), results.get(case_id)
        if want is None:
            diffs.append((case_id, "(not in expected file)", show(got)))
        elif got is None:
            diffs.append((case_id, show(want), "(not in report)"))
        elif outcome(want) != outcome(got):
            diffs.append((case_id, show(want), show(got)))
    return diffs


def write_expected(path, results):
    lines = [
        f"  {json.dumps(case_id)}: {json.dumps(outcome(results[case_id]))}"
        for case_id in sorted(results, key=case_key)
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    os.replace(tmp, path)


def load_expected(path):
    data = load_json(path)
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object of case ids")
    return data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report_dir")
    ap.add_argument("expected_json")
    ap.add_argument("--agent", help="agent in the report (default: the only one)")
    ap.add_argument("--update", action="store_true", help="rewrite EXPECTED_JSON from the report")
    args = ap.parse_args(argv)

    try:
        agent, entries, source = load_report(args.report_dir, args.agent)
    except (ReportError, OSError, ValueError) as exc:
        print(f"autobahn_diff: {exc}", file=sys.stderr)
        return 2
    results = {case_id: outcome(entry) for case_id, entry in entries.items()}
    selected = selected_cases(args.report_dir)
    missing = sorted(selected - set(results), key=case_key) if selected is not None else []
    name = os.path.relpath(args.expected_json)
    failed = False

    print(f"autobahn_diff: agent {agent!r}, {len(results)} cases from {source}, expected file {name}")
    if missing:
        failed = True
        more = f" ... ({len(missing) - 40} more)" if len(missing) > 40 else ""
        print(f"MISSING from the report ({len(missing)}): {' '.join(missing[:40])}{more}")

    violations = policy_violations(results)
    if violations:
        failed = True
        print(f"POLICY: {len(violations)} case(s) in 1.*-10.* are not OK/INFORMATIONAL (or close FAILED):")
        for case_id in violations:
            print(f"  {case_id:<9} {show(results[case_id]):<22} {reason(args.report_dir, entries[case_id])}")

    old = {}
    if os.path.isfile(args.expected_json):
        try:
            old = load_expected(args.expected_json)
        except (ReportError, ValueError) as exc:
            if not args.update:
                print(f"autobahn_diff: {exc}", file=sys.stderr)
                return 2
    elif not args.update:
        print(f"NO EXPECTED FILE {name}: review the report, then run with --update to create it")
        return 1

    # a selected case absent from the report is already listed as MISSING
    diffs = [d for d in compare(results, old) if d[0] not in missing]
    if args.update:
        if missing:
            print(f"not updating {name}: the report lacks {len(missing)} selected case(s)")
            return 1
        write_expected(args.expected_json, results)
        if not old:
            print(f"created {name}: {len(results)} cases")
        else:
            print(f"updated {name}: {len(results)} cases, {len(diffs)} changed" + (", before -> now:" if diffs else ""))
            for case_id, want, got in diffs:
                print(f"  {case_id:<9} {want:<24} -> {got}")
    else:
        if diffs:
            failed = True
            print(f"DIFFERENCES from {name} ({len(diffs)}), expected -> actual:")
            for case_id, want, got in diffs:
                why = reason(args.report_dir, entries[case_id]) if case_id in entries else ""
                print(f"  {case_id:<9} {want:<24} -> {got:<24} {why}".rstrip())

    verdict = "FAIL" if failed else "ok"
    if args.update:
        counts = f"{len(results)} cases written, {len(diffs)} changed"
    else:
        matching = len(set(results) - {case_id for case_id, _, _ in diffs})
        counts = f"{matching} match, {len(diffs)} differ, {len(missing)} missing"
    print(f"autobahn_diff: {verdict}: {counts}, {len(violations)} policy violation(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
