#!/usr/bin/env bash
# Runs the test suite with the clock moved to chosen instants and zones, to prove that no test
# depends on the real date, time, weekday, time zone or DST.
#
#   scripts/clock-matrix.sh                          every instant below, the whole suite at each
#   CLOCK_MATRIX="2026-12-07T10:00:00+01:00@UTC" scripts/clock-matrix.sh test/cli.test.ts
#   CLOCK_MATRIX_MODE=system scripts/clock-matrix.sh (root) moves the machine's clock instead
#
# CLOCK_MATRIX: space-separated INSTANT@TZ entries (INSTANT is ISO-8601 with an offset; TZ is the
# zone the processes run in). Arguments are test files (default: the whole suite). The clock keeps
# running from each instant; monotonic clocks (timers) are never moved.
#
# CLOCK_MATRIX_MODE:
#   faketime (default)  libfaketime (Debian's `faketime` package) in every Node.js process the
#                       tests start and in the PostgreSQL servers they start. Prometheus and
#                       promtool are Go programs, which read the clock without libc: they keep the
#                       real time, so the files in PROMETHEUS_CLOCK_FILES (which scrape live samples
#                       into a real Prometheus and ask for them back "now") cannot agree with a moved
#                       clock. They are left out of this mode and named in its output.
#   system              sets the machine's clock (root only) for each run, so every process,
#                       Prometheus and the shared PostgreSQL server included, sees the instant, and
#                       the whole suite runs. The real time is restored after each run and on exit,
#                       from the monotonic clock.
#
# Prints one line per instant and ends with "N passed, N failed, N skipped" over all of them;
# exits non-zero when any test failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# A weekday 10:00 in Budapest (inside the example policies' office-hours windows), a Sunday, the
# hour after Europe's fall-back and after its spring-forward, the last second of a year in UTC and
# in Budapest, in zones with odd offsets.
default_matrix="2026-12-07T10:00:00+01:00@UTC 2026-12-06T12:00:00Z@Europe/Budapest 2026-10-25T02:30:00+01:00@Europe/Budapest 2027-03-28T03:30:00+02:00@America/New_York 2026-12-31T23:59:59Z@UTC 2026-12-31T23:59:59+01:00@Asia/Kolkata 2026-12-07T10:00:00+01:00@Pacific/Chatham"
PROMETHEUS_CLOCK_FILES="test/console-e2e.test.ts test/failing-policies.test.ts test/fault-prometheus.test.ts test/prometheus-live.test.ts test/prometheus-requests.test.ts"
matrix=${CLOCK_MATRIX:-$default_matrix}
mode=${CLOCK_MATRIX_MODE:-faketime}
log_dir=${CLOCK_MATRIX_LOGS:-$(mktemp -d)}
mkdir -p "$log_dir"

files=("$@")
case "$mode" in
  faketime)
    lib=""
    for candidate in /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
      if [ -f "$candidate" ]; then lib=$candidate; break; fi
    done
    if [ -z "$lib" ]; then
      echo "libfaketime is missing: apt-get install -y --no-install-recommends faketime" >&2
      exit 2
    fi
    if [ ${#files[@]} = 0 ]; then
      mapfile -t files < <(ls test/*.test.ts | grep -vxF -f <(tr ' ' '\n' <<< "$PROMETHEUS_CLOCK_FILES"))
    else
      mapfile -t files < <(printf '%s\n' "${files[@]}" | grep -vxF -f <(tr ' ' '\n' <<< "$PROMETHEUS_CLOCK_FILES"))
    fi
    echo "faketime mode: not run here (Prometheus keeps the real clock): $PROMETHEUS_CLOCK_FILES"
    ;;
  system)
    if [ "$(id -u)" != 0 ]; then echo "system mode sets the machine's clock: run it as root" >&2; exit 2; fi
    # Real time = this pair's real time + monotonic time elapsed since (uptime survives clock changes).
    real_base=$(date -u +%s)
    mono_base=$(cut -d' ' -f1 /proc/uptime)
    restore_clock() {
      local mono elapsed
      mono=$(cut -d' ' -f1 /proc/uptime)
      elapsed=$(awk -v a="$mono" -v b="$mono_base" 'BEGIN { printf "%d", a - b }')
      date -u -s "@$((real_base + elapsed))" > /dev/null
    }
    trap 'restore_clock' EXIT
    trap 'restore_clock; exit 130' INT TERM
    ;;
  *) echo "CLOCK_MATRIX_MODE must be faketime or system, got $mode" >&2; exit 2 ;;
esac

total_pass=0
total_fail=0
total_skip=0
runs=0
for entry in $matrix; do
  instant=${entry%@*}
  zone=${entry#*@}
  target=$(date -u -d "$instant" +%s) || { echo "bad instant: $instant" >&2; exit 2; }
  name=$(echo "$entry" | tr -c 'A-Za-z0-9\n' '_')
  log="$log_dir/$name.log"
  started=$SECONDS
  # tap's coverage check is left to the ordinary run; here only the tests' verdicts count.
  if [ "$mode" = faketime ]; then
    offset=$((target - $(date -u +%s)))
    if [ "$offset" -ge 0 ]; then offset="+$offset"; fi
    env TZ="$zone" FAKETIME="$offset" FAKETIME_DONT_FAKE_MONOTONIC=1 LD_PRELOAD="$lib" \
      npx tap --disable-coverage "${files[@]}" > "$log" 2>&1
    status=$?
  else
    date -u -s "@$target" > /dev/null
    env TZ="$zone" npx tap --disable-coverage "${files[@]}" > "$log" 2>&1
    status=$?
    restore_clock
  fi
  summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1)
  field() { echo "$summary" | grep -oE "$1: [0-9]+" | grep -oE '[0-9]+' || echo 0; }
  total=$(field total); pass=$(field pass); fail=$(field fail); skip=$(field skip); todo=$(field todo)
  if [ -z "$summary" ]; then total=1; pass=0; fail=1; fi
  if [ "$fail" = 0 ]; then fail=$((total - pass - skip - todo)); fi
  if [ "$status" != 0 ] && [ "$fail" = 0 ]; then fail=1; fi
  runs=$((runs + 1))
  total_pass=$((total_pass + pass)); total_fail=$((total_fail + fail)); total_skip=$((total_skip + skip))
  printf 'clock %s %-27s TZ=%-17s %5s passed, %s failed, %s skipped (%s s) %s\n' "$mode" "$instant" "$zone" "$pass" "$fail" "$skip" "$((SECONDS - started))" "$log"
  if [ "$fail" != 0 ]; then grep -E '^\s*not ok' "$log" | head -n 20; fi
done
echo "clock matrix ($mode): $runs instants"
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" = 0 ]
