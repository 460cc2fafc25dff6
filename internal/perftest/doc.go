// Package perftest holds benchmarks that measure this repository's
// functions as processes: cold start (exec to the first request for work
// from the Lambda runtime API) beside a hello-world aws-lambda-go
// bootstrap and SDK-only floors (floor/: the SDK configured and its clients
// built as the functions do, and as they did with the SDK's default chain
// and Lambda client), binary sizes, and GOMAXPROCS; a test that bounds what
// cebulk's packages allocate at initialisation, and one that keeps the SDK
// packages whose initialisation is costly out of the functions. It has no
// code of its own.
package perftest
