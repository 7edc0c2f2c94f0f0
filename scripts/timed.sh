#!/usr/bin/env bash
# timed.sh PHASE CMD...: runs CMD and prints how long the phase took, so `make test` shows what
# CI costs by phase (install, system packages, tiny build, tests). Exits with CMD's status.
phase=$1; shift
start=$(date +%s)
"$@"
status=$?
echo "[phase] $phase: $(( $(date +%s) - start )) s (exit $status, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
exit $status
