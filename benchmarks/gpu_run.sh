#!/bin/bash
# Everything that needs a GPU, in one command that leaves one folder behind:
#
#     benchmarks/gpu_run.sh OUTDIR
#
# 1. the benchmark suite at GPU sizes (python -m benchmarks --gpu: the N = 16,384 full-image
#    kernel, its groups and on-device eigvalsh; the 12 bundled photos at 128 px for 100 epochs,
#    batched vs sequential; interpolation, linear and cubic, at 2^20 and 2^22 points), each benchmark in a child
#    process under its own timeout, the whole under a timeout too;
# 2. the test suite in parallel (pytest-xdist, 8 workers sharing the GPU) with a JUnit XML.
#
# Writes OUTDIR/environment.txt (nvidia-smi, JAX devices, packages), suite.json and suite.log,
# bench/*.json (each script's own figures), junit.xml and pytest.log, and summary.txt.
# Runs in about 8 minutes on one H100 (the timeouts below add up to under 10 minutes).
# Wheels the machine lacks (neural-tangents, frozendict, trimesh, embreex, pytorch-msssim):
# put them in .whl/ at the repository's root (benchmarks/README.md says how); they are
# installed into a temporary folder, without network.
# Exit status: 0 all ran and the tests passed, 1 otherwise, 2 bad usage.
set -u
if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: benchmarks/gpu_run.sh OUTDIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out" || { echo "error: cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.." || exit 2
py=${PYTHON:-python3}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-360}
TESTS_TIMEOUT=${TESTS_TIMEOUT:-220}
WORKERS=${WORKERS:-8}
if ls .whl/*.whl >/dev/null 2>&1; then
    site=$(mktemp -d /tmp/ntkgrid-site.XXXX)
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl \
        > "$out/wheels.log" 2>&1 || echo "warning: installing .whl/ failed (see wheels.log)" >&2
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
{
    date -u
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    timeout 120 "$py" -c "import jax; print('jax', jax.__version__, jax.default_backend(), jax.devices())"
    "$py" -m pip list 2>/dev/null
} > "$out/environment.txt" 2>&1

t0=$SECONDS
timeout -k 15 "$SUITE_TIMEOUT" "$py" -m benchmarks --gpu --json "$out/suite.json" --keep "$out/bench" \
    > "$out/suite.log" 2>&1
suite_rc=$?
t1=$SECONDS

if "$py" -c "import xdist" 2>/dev/null; then
    par=(-n "$WORKERS")
else
    # pyproject's addopts ask for "-n auto", which needs xdist: override them here.
    par=(-o "addopts=-ra --strict-markers --strict-config")
    echo "pytest-xdist is not installed: the tests run in one process (pip install pytest-xdist for -n)" \
        >> "$out/pytest.log"
fi
# SIGINT first: pytest then stops and still writes the JUnit XML of what ran.
timeout -s INT -k 20 "$TESTS_TIMEOUT" "$py" -m pytest ${par[@]+"${par[@]}"} -q -p no:cacheprovider \
    --junitxml "$out/junit.xml" tests >> "$out/pytest.log" 2>&1
tests_rc=$?
t2=$SECONDS

{
    echo "benchmarks: exit $suite_rc in $((t1 - t0)) s (124: the suite's timeout of ${SUITE_TIMEOUT} s)"
    echo "tests: exit $tests_rc in $((t2 - t1)) s (124 or 130: the timeout of ${TESTS_TIMEOUT} s)"
    tail -n 3 "$out/pytest.log"
} | tee "$out/summary.txt"
[ "$suite_rc" -eq 0 ] && [ "$tests_rc" -eq 0 ] && exit 0
exit 1
