#!/usr/bin/env bash
# Fuzzes every parser of outside input the server owns (`make fuzz`): each cargo-fuzz
# target of fuzz/ runs for FUZZ_SECONDS (default 300), one after another, then one
# summary line per target says how many inputs it ran and which crash it saved.
#
#   FUZZ_SECONDS=90 FUZZ_TARGETS="sdp_offer token" bash scripts/fuzz.sh
#
# Each target starts from its kept inputs (fuzz/regressions/<target>/, replayed by
# `cargo test --test fuzz_regressions`) and the corpus it grew before
# (fuzz/corpus/<target>/, not kept in git). A crash is saved under
# fuzz/artifacts/<target>/; once fixed, move it into fuzz/regressions/<target>/ under
# a name saying what it was. fuzz/dicts/<target>.dict, when there, gives libFuzzer
# the keywords of that input's format. Needs the nightly toolchain (sanitizers) and cargo-fuzz:
# both are installed when missing. CARGO may wrap cargo (e.g. in `flock`).
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-300}
targets=${FUZZ_TARGETS:-sdp_offer api_json jitter_buffer keyframe token}
read -r -a cargo <<<"${CARGO:-cargo}"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! "${cargo[@]}" fuzz --version >/dev/null 2>&1; then
    "${cargo[@]}" install cargo-fuzz --locked
fi

# Build every target first: the first build (sanitizers, every dependency) takes
# minutes, and should not eat into the first target's time.
"${cargo[@]}" +nightly fuzz build

summary=()
failed=0
for target in $targets; do
    corpus=fuzz/corpus/$target
    artifacts=fuzz/artifacts/$target
    log=$artifacts/last-run.log
    mkdir -p "$corpus" "$artifacts"
    echo "== $target: ${seconds}s"
    status=0
    dict=()
    if [ -f "fuzz/dicts/$target.dict" ]; then dict=(-dict="fuzz/dicts/$target.dict"); fi
    # -timeout catches a hang (an input taking over 10 s); libFuzzer's RSS and
    # malloc limits (2 GiB) catch unbounded allocation.
    "${cargo[@]}" +nightly fuzz run "$target" "$corpus" "fuzz/regressions/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=$?
    # libFuzzer's closing lines; absent ones (a failed build) leave the field empty.
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    crash=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -1)
    line="$target: ${runs:-?} executions in ${took:-?}s, corpus $(find "$corpus" -type f | wc -l) inputs"
    if [ -n "$crash" ] || [ "$status" -ne 0 ]; then
        line="$line, FAILED (exit $status) ${crash:+crash file $artifacts/$(basename "$crash")} (log: $log)"
        failed=1
    else
        line="$line, no crash"
    fi
    summary+=("$line")
    echo "$line"
done

echo
echo "Fuzzing summary:"
printf '  %s\n' "${summary[@]}"
exit "$failed"
