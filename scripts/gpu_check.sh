#!/usr/bin/env bash
# The GPU table of hpsearch in one call of under 5 minutes: MLP and CNN epoch times (device-resident and
# DataLoader paths, fp32 and bf16), the batched engine at K = 8 and 64 against sequential, and a 20-trial
# TPE study's wall time (scripts/gpu_table.py prints it; its docstring says what each row measures).
#
# The device machine (nvidia-h200) has python3 with torch (CUDA), numpy, tqdm, PyYAML, packaging,
# typing-extensions and MarkupSafe, but not Optuna, and reaches no package registry. gpu_table.py
# imports only torch, numpy, hpsearch's engine and Optuna, so five wheels are all it needs there:
#     optuna==5.0.0 SQLAlchemy==2.1.9 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3   (5.4 MB; no greenlet:
#     SQLAlchemy 2.1 needs it only for asyncio)
#
# 1. Prepare, here on a development machine, from the repository root (pip and the package registry needed):
#        bash scripts/gpu_check.sh --wheels
#    downloads them, for CPython 3.12 on manylinux x86-64, into .whl/ (ignored by .gitignore: /.whl/).
#    It runs exactly:
#        python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#            optuna==5.0.0 SQLAlchemy==2.1.9 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3
# 2. Run it there with the device tool, in one call (the table ends under 5 minutes; the rest is slack):
#        run   command: bash scripts/gpu_check.sh      carry: [".whl"]      timeout_s: 360
#    then give_back unless you rerun at once. The table is also written to $OUT/gpu_table.txt.
#    Extra arguments go to gpu_table.py, e.g. `bash scripts/gpu_check.sh --sections epochs --workers 0,8`.
# 3. On a machine without a GPU the same script proves itself end to end on small sizes:
#        bash scripts/gpu_check.sh --device cpu --quick
#
# What it does: installs the carried wheels into /tmp/site when .whl/ exists and Optuna is not importable
# (python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site),
# puts the repository root and /tmp/site on PYTHONPATH (hpsearch is imported from this checkout, not
# installed), and runs gpu_table.py under `timeout` (GPU_CHECK_TIMEOUT, default 280 s), whose own
# --budget (240 s) and --cap (60 s per measurement) cut a slow measurement and say so in its row.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHEELS=(optuna==5.0.0 SQLAlchemy==2.1.9 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3)
PYTHON=${PYTHON:-python3}

if [[ "${1:-}" == "--wheels" ]]; then
    rm -rf .whl && mkdir .whl
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
    ls -l .whl
    exit 0
fi

started=$(date +%s)
if [[ -d .whl ]] && compgen -G '.whl/*.whl' >/dev/null && ! "$PYTHON" -c 'import optuna' 2>/dev/null; then
    echo "installing $(ls .whl | wc -l) carried wheels into /tmp/site"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! error=$("$PYTHON" -c 'import torch, optuna' 2>&1); then
    echo "gpu_check: $PYTHON cannot import torch and optuna (${error##*$'\n'}); prepare the wheels with" \
        "bash scripts/gpu_check.sh --wheels and carry .whl (see the top of scripts/gpu_check.sh)" >&2
    exit 2
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
fi

log=/dev/null
if [[ -n "${OUT:-}" && -d "${OUT}" ]]; then
    log="$OUT/gpu_table.txt"
fi
set +e
timeout -k 10 "${GPU_CHECK_TIMEOUT:-280}" "$PYTHON" scripts/gpu_table.py "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [[ $status -eq 124 || $status -eq 137 ]]; then
    echo "gpu_check: gpu_table.py was stopped at ${GPU_CHECK_TIMEOUT:-280} s; the rows above are what finished"
fi
echo "gpu_check: $(( $(date +%s) - started )) s in all, exit $status"
exit "$status"
