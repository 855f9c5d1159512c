#!/bin/sh
# measure_report.sh: time enqueue report over a generated result file of
# LINES enqueued lines against a throwaway, empty redis-server, and report
# lines/s and peak memory. Every task is looked up in full (journal, then
# asynq) and found missing, the most round trips a line can cost. Not run
# by CI.
#
#   cmd/enqueue/measure_report.sh [LINES]    (default 1000000)
#
# Needs redis-server on PATH; uses /usr/bin/time -v when present, and the
# command's own --stats (VmHWM) otherwise. Everything lives in a temporary
# directory that is removed at the end.
set -eu
lines=${1:-1000000}
dir=$(mktemp -d)
port=$(( 20000 + $$ % 20000 ))
cleanup() {
	redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

go build -o "$dir/enqueue" ./cmd/enqueue
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize yes --logfile "$dir/redis.log"
i=0
until redis-cli -p "$port" ping >/dev/null 2>&1; do
	i=$((i + 1)); [ "$i" -lt 100 ] || { echo "redis-server did not start" >&2; exit 1; }
	sleep 0.1
done

awk -v n="$lines" 'BEGIN {
	for (i = 0; i < n; i++) printf "{\"line\":%d,\"status\":\"enqueued\",\"taskId\":\"bench-%d\",\"queue\":\"default\"}\n", i + 2, i
}' > "$dir/results.jsonl"
echo "input: $lines result lines, $(wc -c < "$dir/results.jsonl") bytes"
# Exit status 4 (every line missing) is the expected verdict.
if [ -x /usr/bin/time ]; then
	/usr/bin/time -f 'wall %es, user %Us, sys %Ss, peak RSS %M KiB' \
		"$dir/enqueue" report --redis-url "redis://127.0.0.1:$port/0" --out "$dir/report.jsonl" "$dir/results.jsonl" || [ $? -eq 4 ]
else
	"$dir/enqueue" report --stats --redis-url "redis://127.0.0.1:$port/0" --out "$dir/report.jsonl" "$dir/results.jsonl" || [ $? -eq 4 ]
fi
echo "report: $(wc -l < "$dir/report.jsonl") lines"
