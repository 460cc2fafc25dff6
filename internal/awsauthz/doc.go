// Package awsauthz makes the local AWS stack authorise requests as AWS IAM
// would: each Lambda bootstrap signs its requests with its own access key, a
// Proxy in front of the local services (moto in tests, the demo's embedded S3
// and Secrets Manager, the Lambda Invoke API stand-in) maps that key to the
// function's role as CloudFormation would create it from template.yaml, works
// out the request's real IAM action, resource ARN and condition keys, and asks
// a real policy evaluator (@cloud-copilot/iam-simulate, a test-only npm tool
// run by evaluator.js) whether the role's policies and the bucket policy allow
// it. A denied request answers AccessDenied in the service's own error shape
// and is recorded with the call and the template statement it needs.
//
// The pieces:
//   - Render (roles.go): the SAM transform and intrinsic resolution of
//     template.yaml for a stack name, through render_roles.py (cfn-lint's
//     samtranslator, offline).
//   - Evaluator (evaluator.go): the long-running node process.
//   - Proxy (proxy.go, actions.go): the authorising reverse proxy, served
//     over TLS with a CA of its own (tls.go) so aws:SecureTransport is real.
//   - Usage (usage.go): which statements allowed something, and which never
//     did.
//
// Not modelled: SigV4 signatures are not verified (the access key id alone
// names the caller: the bootstraps are this repository's own code), session
// policies, SCPs and KMS key policies. Evaluations are cached per caller,
// action, resource and condition keys (the time keys in whole minutes): an
// uncached one costs the node process about 3 ms of CPU.
//
// S3's missing-key rule is enforced too: a GET or HEAD of a key that does
// not exist answers 404 only when the caller may s3:ListBucket the bucket
// (evaluated without s3:prefix), 403 AccessDenied otherwise.
package awsauthz
