// Package samtemplate holds no code, only tests: they check the repository's
// SAM template (template.yaml), its deploy defaults (samconfig.toml) and the
// Makefile targets `sam build` calls, against the contracts the functions rely
// on.
//
//   - TestCfnLint runs cfn-lint on the template (skipped when cfn-lint is not on
//     PATH, except under `make test`/CI, where CEBULK_STACK is set).
//   - TestTemplate reads the template with goformation, references resolved to
//     names, and checks the functions (Globals merged by hand), their events,
//     the HTTP API routes and their authorization, the data bucket, the failure
//     queue, the alarms, the outputs, and that no reference makes a cycle.
//   - TestEnvContract compares each function's environment in the template with
//     the variables functions/<fn>/config.go (and, for all three,
//     internal/lambdaenv) read through getenv("NAME").
//   - TestPolicies checks every S3, Secrets Manager and Lambda permission of
//     every function against the least-privilege table in the test.
//   - TestSamconfig checks samconfig.toml's defaults and that its
//     parameter_overrides name template parameters.
//   - TestLakeTables checks that the Glue tables are the ones internal/lake
//     defines (-update regenerates them); TestLake checks the database, the
//     Athena workgroup, the readers' policy and the Lake parameter;
//     TestFreshnessAlarm and TestDashboard check the alarm and the dashboard
//     against the metrics the exporter and importer emit.
//   - TestBuildTargets runs `make build-<LogicalId>` for each function whose
//     main.go exists and checks the result is a static linux/arm64 binary.
package samtemplate
