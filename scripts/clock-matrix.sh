#!/usr/bin/env bash
# Runs the test suite with the clock of every Node.js and PostgreSQL process moved to chosen
# instants (libfaketime, Debian's `faketime` package), to prove that no test depends on the real
# date, time, weekday, time zone or DST.
#
#   scripts/clock-matrix.sh                      the full matrix, the whole suite at each instant
#   CLOCK_MATRIX="2026-12-07T09:00:00Z@UTC" scripts/clock-matrix.sh test/cli.test.ts
#
# CLOCK_MATRIX is a space-separated list of INSTANT@TZ (INSTANT in ISO-8601 with an offset; TZ the
# zone the processes run in). Arguments after the options are test files (default: all of them).
# The clock keeps running from each instant (an offset from the real clock, not a frozen time);
# monotonic clocks are not moved, so timers behave. Prometheus and promtool are Go programs, which
# read the clock without libc: they keep the real time. Tests that put live samples into a real
# Prometheus and ask for them back "now" must therefore take their instants from Prometheus's
# clock or from data they wrote, never from the wall clock; the matrix checks that they do.
#
# Prints one line per instant and ends with "N passed, N failed" over all of them.
set -uo pipefail
cd "$(dirname "$0")/.."

lib=""
for candidate in /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
  if [ -f "$candidate" ]; then lib=$candidate; break; fi
done
if [ -z "$lib" ]; then
  echo "libfaketime is missing: apt-get install -y --no-install-recommends faketime" >&2
  exit 2
fi

# A weekday 10:00 in Budapest (inside the example policies' office-hours windows), a Sunday, the
# hour after Europe's fall-back and after its spring-forward, the last second of a year in UTC and
# in Budapest, and two zones with odd offsets.
default_matrix="2026-12-07T10:00:00+01:00@UTC 2026-12-06T12:00:00Z@Europe/Budapest 2026-10-25T02:30:00+01:00@Europe/Budapest 2027-03-28T03:30:00+02:00@America/New_York 2026-12-31T23:59:59Z@UTC 2026-12-31T23:59:59+01:00@Asia/Kolkata 2026-12-07T10:00:00+01:00@Pacific/Chatham"
matrix=${CLOCK_MATRIX:-$default_matrix}
log_dir=${CLOCK_MATRIX_LOGS:-$(mktemp -d)}
mkdir -p "$log_dir"

total_pass=0
total_fail=0
total_skip=0
runs=0
for entry in $matrix; do
  instant=${entry%@*}
  zone=${entry#*@}
  target=$(date -u -d "$instant" +%s) || { echo "bad instant: $instant" >&2; exit 2; }
  offset=$((target - $(date -u +%s)))
  if [ "$offset" -ge 0 ]; then offset="+$offset"; fi
  name=$(echo "$entry" | tr -c 'A-Za-z0-9\n' '_')
  log="$log_dir/$name.log"
  started=$(date +%s)
  # tap's coverage check is left to the ordinary run; here only the tests' verdicts count.
  env TZ="$zone" FAKETIME="${offset}" FAKETIME_DONT_FAKE_MONOTONIC=1 LD_PRELOAD="$lib" \
    npx tap --disable-coverage "$@" > "$log" 2>&1
  status=$?
  summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1)
  field() { echo "$summary" | grep -oE "$1: [0-9]+" | grep -oE '[0-9]+' || echo 0; }
  total=$(field total); pass=$(field pass); fail=$(field fail); skip=$(field skip); todo=$(field todo)
  if [ -z "$summary" ]; then total=1; pass=0; fail=1; fi
  if [ "$fail" = 0 ]; then fail=$((total - pass - skip - todo)); fi
  if [ "$status" != 0 ] && [ "$fail" = 0 ]; then fail=1; fi
  runs=$((runs + 1))
  total_pass=$((total_pass + pass)); total_fail=$((total_fail + fail)); total_skip=$((total_skip + skip))
  printf 'clock %-32s TZ=%-18s %6s passed, %s failed, %s skipped (%s s) %s\n' "$instant" "$zone" "$pass" "$fail" "$skip" "$(( $(date +%s) - started ))" "$log"
  if [ "$fail" != 0 ]; then grep -E '^\s*not ok' "$log" | head -n 20; fi
done
echo "clock matrix: $runs instants"
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" = 0 ]
