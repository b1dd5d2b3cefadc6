#!/usr/bin/env bash
# Installs the official AsyncAPI JSON Schemas (npm @asyncapi/specs) into .tools/asyncapi, a tool
# environment outside the Python runtime. tests/test_schemas.py validates schemas/asyncapi.yaml
# against .tools/asyncapi/node_modules/@asyncapi/specs/schemas/3.0.0.json.
# Idempotent: does nothing when the pinned version is already there.
set -euo pipefail

VERSION="6.11.1"  # @asyncapi/specs; bump deliberately (the test names the file it reads)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.tools/asyncapi"
PKG="$PREFIX/node_modules/@asyncapi/specs/package.json"

if [[ -f "$PKG" ]] && grep -q "\"version\": \"$VERSION\"" "$PKG"; then
    echo "@asyncapi/specs $VERSION already in $PREFIX"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install-asyncapi-specs: npm not found on PATH; install Node.js (>= 18) and run this again" >&2
    exit 1
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --no-save "@asyncapi/specs@$VERSION"
test -f "$PREFIX/node_modules/@asyncapi/specs/schemas/3.0.0.json"
echo "@asyncapi/specs $VERSION installed in $PREFIX"
