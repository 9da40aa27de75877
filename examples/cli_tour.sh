#!/usr/bin/env bash
# A tour of the `pymedplum` command line (docs/cli.md).
#
# Needs `pip install 'pymedplum[cli]'` and, in the environment, MEDPLUM_BASE_URL,
# MEDPLUM_CLIENT_ID and MEDPLUM_CLIENT_SECRET (or a profile saved by `pymedplum login`).
# Creates a demo Patient, finds it, changes it, deletes it; prints no token and no secret.
set -euo pipefail
PYMEDPLUM="${PYMEDPLUM:-pymedplum}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== validate offline (no server needed)"
cat > "$work/patient.json" <<'JSON'
{"resourceType": "Patient", "name": [{"given": ["Tour"], "family": "Guide"}], "birthDate": "1985-04-12"}
JSON
"$PYMEDPLUM" validate "$work/patient.json"
echo '{"resourceType": "Patient", "birthDate": "1985-13-12"}' > "$work/broken.json"
if "$PYMEDPLUM" validate "$work/broken.json"; then echo "expected invalid"; exit 1; else echo "(exit $?: invalid)"; fi

echo "== create, from a file"
"$PYMEDPLUM" create --compact "$work/patient.json" > "$work/created.json"
id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/created.json")"
echo "created Patient/$id"

echo "== search, every page, as a table"
"$PYMEDPLUM" search Patient name=Guide -o table --columns id,name.0.family,birthDate

echo "== update from standard input (guarded by meta.versionId)"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); p["gender"]="other"; print(json.dumps(p))' \
  "$work/created.json" | "$PYMEDPLUM" update --compact > "$work/updated.json"
"$PYMEDPLUM" get "Patient/$id" --compact

echo "== the old version is stale now: exit 6"
set +e
"$PYMEDPLUM" update "$work/created.json" > /dev/null 2>&1
echo "(exit $?)"
set -e

echo "== delete, then get: exit 3"
"$PYMEDPLUM" delete "Patient/$id"
set +e
"$PYMEDPLUM" get "Patient/$id" > /dev/null 2>&1
echo "(exit $?)"
set -e
echo "done"
