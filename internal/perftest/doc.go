// Package perftest holds benchmarks that measure this repository's
// functions as processes: cold start (exec to the first request for work
// from the Lambda runtime API) beside a hello-world aws-lambda-go
// bootstrap and SDK-only floors (floor/: the SDK configured and its clients
// built as the functions do, then without the Lambda client, then without
// the config package), binary sizes, and GOMAXPROCS; and a test that
// bounds what cebulk's packages allocate at initialisation. It has no code
// of its own.
package perftest
