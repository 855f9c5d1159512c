#!/bin/sh
# measure.sh: time enqueue batch over a generated CSV against a throwaway
# redis-server, and report lines/s and peak memory. Not run by CI.
#
#   cmd/enqueue/measure.sh [LINES] [CONCURRENCY]    (defaults 1000000, 16)
#
# Needs redis-server on PATH; uses /usr/bin/time -v when present, and the
# command's own --stats (VmHWM) otherwise. Everything lives in a temporary
# directory that is removed at the end.
set -eu
lines=${1:-1000000}
conc=${2:-16}
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
	split("CHANNEL_LOGIN CHANNEL_REGISTER CHANNEL_RESET_PASSWORD", ch, " ")
	print "channel,phone,idempotency_key"
	for (i = 0; i < n; i++) printf "%s,+86138%08d,bench-%d\n", ch[i % 3 + 1], i, i
}' > "$dir/in.csv"
echo "input: $lines lines, $(wc -c < "$dir/in.csv") bytes; concurrency $conc"

timed() {
	if [ -x /usr/bin/time ]; then
		/usr/bin/time -f 'wall %es, user %Us, sys %Ss, peak RSS %M KiB' "$@"
	else
		# Flags go before the input file: "enqueue batch --stats [flags] FILE".
		bin=$1 sub=$2
		shift 2
		"$bin" "$sub" --stats "$@"
	fi
}

echo "== dry run"
timed "$dir/enqueue" batch --dry-run --concurrency "$conc" "$dir/in.csv" > "$dir/dry.jsonl"
echo "== enqueue into redis-server on port $port"
timed "$dir/enqueue" batch --redis-url "redis://127.0.0.1:$port/0" --concurrency "$conc" "$dir/in.csv" > "$dir/out.jsonl"
echo "tasks in Redis: $(redis-cli -p "$port" dbsize) keys, $(redis-cli -p "$port" info memory | grep '^used_memory_human' | tr -d '\r')"
echo "== re-run (every line a duplicate)"
timed "$dir/enqueue" batch --redis-url "redis://127.0.0.1:$port/0" --concurrency "$conc" "$dir/in.csv" > "$dir/dup.jsonl"
