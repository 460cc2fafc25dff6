// evaluator.js: answers IAM evaluation requests for internal/awsauthz, one
// JSON object per line on stdin, one answer per line on stdout, in order.
//
// It is a thin wrapper around @cloud-copilot/iam-simulate (AGPL, a test-only
// tool installed by `make iam-simulate` into .tools/, never shipped). Usage:
//   node evaluator.js <folder holding node_modules/@cloud-copilot/iam-simulate>
//
// Request:  {"principal": "arn:aws:sts::...", "action": "s3:GetObject",
//            "resource": "arn:aws:s3:::b/k", "account": "123456789012",
//            "identityPolicies": [{"name": "...", "policy": {...}}],
//            "resourcePolicy": {...} | null, "context": {"aws:SecureTransport": "true"}}
// Answer:   {"result": "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied",
//            "grants": [{"policyType", "policyIdentifier", "statementId", "statementIndex"}],
//            "denials": [...], "error": "..."}
'use strict';

const path = require('path');
const readline = require('readline');

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node evaluator.js <tools folder>\n');
  process.exit(2);
}
const { createRequire } = require('module');
const sim = createRequire(path.join(path.resolve(dir), 'package.json'))('@cloud-copilot/iam-simulate');

async function evaluate(req) {
  const simulation = {
    request: {
      principal: req.principal || sim.anonymousPrincipal,
      action: req.action,
      resource: { resource: req.resource, accountId: req.account },
      contextVariables: req.context || {},
    },
    identityPolicies: req.identityPolicies || [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  };
  if (req.resourcePolicy) simulation.resourcePolicy = req.resourcePolicy;
  const out = await sim.runSimulation(simulation, { simulationMode: 'Strict' });
  if (out.resultType === 'error') {
    return { result: 'Error', error: JSON.stringify(out.errors) };
  }
  const analysis = out.resultType === 'single' ? out.result.analysis : (out.results[0] || {}).analysis;
  const answer = { result: out.overallResult, grants: [], denials: [] };
  if (analysis) {
    answer.grants = sim.getGrantReasons(analysis);
    answer.denials = sim.getDenialReasons(analysis);
    const ignored = out.resultType === 'single' ? out.result.ignoredContextKeys : undefined;
    if (ignored && ignored.length) answer.ignoredContextKeys = ignored;
  }
  return answer;
}

// Answers go out in request order: the Go side reads one line per request.
let chain = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let answer;
    try {
      answer = await evaluate(JSON.parse(line));
    } catch (e) {
      answer = { result: 'Error', error: String((e && e.stack) || e) };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
  });
});
rl.on('close', () => {
  chain.then(() => process.exit(0));
});
