// Package perftest holds benchmarks that measure this repository's
// functions as processes: cold start (exec to the first request for work
// from the Lambda runtime API) beside a hello-world aws-lambda-go
// bootstrap, binary sizes, and GOMAXPROCS. It has no code of its own.
package perftest
