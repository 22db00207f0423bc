#!/usr/bin/env bash
# Create (when missing) and update the project's .venv with Python 3.12, install hilstudy with the
# locked dependency set, and register the Jupyter kernel "hilstudy" inside the venv.
# Idempotent: a stamp of pyproject.toml + requirements.lock skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
want="3.12"

find_python() {
    local c
    for c in "${HILSTUDY_PYTHON:-}" python3.12 \
             $(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V -r) \
             /usr/local/bin/python3.12 /usr/bin/python3.12; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1 && [ "$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
            command -v "$c"; return 0
        fi
    done
    return 1
}

venv_ok() {
    [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]
}

if ! venv_ok; then
    if ! py=$(find_python); then
        echo "error: hilstudy needs Python $want (lerobot 0.6 requires it) and none was found." >&2
        echo "       Looked at \$HILSTUDY_PYTHON, python3.12 on PATH, pyenv's versions/3.12.*, /usr/bin." >&2
        echo "       Install it (e.g. 'pyenv install 3.12') or set HILSTUDY_PYTHON=/path/to/python3.12." >&2
        exit 1
    fi
    echo "setup: creating $VENV with $py"
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
fi

stamp="$VENV/.hilstudy-install"
want_stamp=$(cat pyproject.toml requirements.lock scripts/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ] || ! "$VENV/bin/python" -c 'import hilstudy' 2>/dev/null; then
    echo "setup: installing hilstudy and its locked dependencies into $VENV (first time: a few minutes, torch is large)"
    "$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
    "$VENV/bin/python" -m pip install --quiet -c requirements.lock -e ".[test]"
    # the kernel's OpenBLAS, MKL and torch kernels as hilstudy/__init__.py chooses them (numpy may load before
    # hilstudy in a notebook)
    kernel_env=()
    if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then
        kernel_env=(--env OPENBLAS_CORETYPE Haswell --env MKL_CBWR AVX2 --env ATEN_CPU_CAPABILITY avx2)
    fi
    "$VENV/bin/python" -m ipykernel install --sys-prefix --name hilstudy --display-name "Python (hilstudy)" "${kernel_env[@]}" >/dev/null
    echo "$want_stamp" > "$stamp"
fi
