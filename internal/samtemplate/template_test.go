package samtemplate

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/awslabs/goformation/v7/cloudformation/serverless"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/lambdalocal"
)

// What the pseudo parameters resolve to while reading the template.
const (
	testStack   = "cebulk"
	testAccount = "123456789012"
	testRegion  = "us-east-1"

	dataBucket = testStack + "-data-" + testAccount
	bucketARN  = "arn:aws:s3:::" + dataBucket

	givenSecret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf"
	givenKey    = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
)

// function describes one Lambda function of the bundle: its logical ID, its
// source directory under functions/, its sizing, and the environment DESIGN.md
// §3 gives it beyond commonEnv.
type function struct {
	logicalID       string
	dir             string
	timeout, memory int
	env             []string
}

// name is the function's deployed name (FunctionName), which the webhook's
// targets and the self-invocations depend on.
func (f function) name() string { return testStack + "-" + f.dir }

func (f function) arn() string {
	return "arn:aws:lambda:" + testRegion + ":" + testAccount + ":function:" + f.name()
}

// commonEnv is the environment every function gets (DESIGN.md §3).
// commonEnv is DESIGN.md §3's common environment plus the backend switch
// (BACKEND and the Mixpanel backend's settings; README "Configuration").
var commonEnv = []string{"CE_BASE_URL", "CE_SECRET_ID", "DATA_BUCKET", "LOG_LEVEL",
	"BACKEND", "MIXPANEL_REGION", "MIXPANEL_BASE_URL", "MIXPANEL_CONCURRENCY"}

var (
	exportFn  = function{"ExportFunction", "export", 900, 1024, []string{"CALLBACK_URL", "EXPORT_OBJECTS", "EXPORT_START", "EXPORT_TIMEZONE", "EXPORT_LAG", "EXPORT_MAX_JOBS", "EXPORT_QUERIES_PER_HOUR", "EXPORT_TIME_BASIS", "EXPORT_LOOKBACK"}}
	importFn  = function{"ImportFunction", "import", 900, 1024, []string{"CALLBACK_URL", "IMPORT_CHUNK_RECORDS"}}
	webhookFn = function{"WebhookFunction", "webhook", 30, 256, []string{"EXPORT_FUNCTION_NAME", "IMPORT_FUNCTION_NAME", "EXPORT_MAX_DAYS"}}
	functions = []function{exportFn, importFn, webhookFn}
)

// variant is one set of parameter values the template is read with.
type variant struct {
	name      string
	overrides map[string]any
	secret    string   // what CE_SECRET_ID resolves to
	grant     string   // the secret grants' resource, when not secret
	kmsKey    string   // the key kms:Decrypt is granted on, if any
	actions   []string // every alarm's AlarmActions
}

// secretGrant is the resource the secret grants name.
func (v variant) secretGrant() string {
	if v.grant != "" {
		return v.grant
	}
	return v.secret
}

var variants = []variant{
	{name: "defaults", secret: "CeSecret"},
	{
		name:      "existing secret and alarm email",
		overrides: map[string]any{"SecretArn": givenSecret, "AlarmEmail": "ops@example.com"},
		secret:    givenSecret,
		actions:   []string{"AlarmTopic"},
	},
	{
		// A secret given by name is granted with Secrets Manager's
		// 6-character suffix as a wildcard; its KMS key, through Secrets
		// Manager only.
		name:      "secret by name with a customer managed key",
		overrides: map[string]any{"SecretArn": "cebulk/ce", "SecretKmsKeyArn": givenKey},
		secret:    "cebulk/ce",
		grant:     "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk/ce-??????",
		kmsKey:    givenKey,
	},
}

func TestCfnLint(t *testing.T) {
	path, err := exec.LookPath("cfn-lint")
	if err != nil {
		if awstest.Required() {
			t.Fatal("cfn-lint is not on PATH (pip install cfn-lint); it is required under make test")
		}
		t.Skip("cfn-lint is not on PATH (pip install cfn-lint); run `make test` to require it")
	}
	cmd := exec.CommandContext(t.Context(), path, "template.yaml")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("cfn-lint template.yaml: %v\n%s", err, out)
	}
}

func TestTemplate(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			s := load(t, v.overrides)
			if got, want := transform(s.cf), "AWS::Serverless-2016-10-31"; got != want {
				t.Errorf("Transform = %q, want %q", got, want)
			}
			checkGlobalLogging(t, s)
			for _, f := range functions {
				t.Run(f.logicalID, func(t *testing.T) { checkFunction(t, s, f, v) })
			}
			t.Run("ExportFunction events", func(t *testing.T) {
				fn := getFunction(t, s, exportFn)
				// The nightly run gets EventBridge's own event (no Input), whose
				// time names the users snapshot in every delivery of it.
				want := map[string]string{envelope: "cron(0 3 * * ? *)", "sweep": "rate(5 minutes)"}
				if diff := cmp.Diff(want, schedules(t, fn)); diff != "" {
					t.Errorf("ExportFunction schedules by input action (-want +got):\n%s", diff)
				}
				if n := len(fn.Events); n != 2 {
					t.Errorf("ExportFunction has %d events, want 2 (the two schedules)", n)
				}
			})
			t.Run("ImportFunction events", func(t *testing.T) { checkImportEvents(t, s) })
			t.Run("WebhookFunction routes", func(t *testing.T) { checkRoutes(t, s) })
			t.Run("bucket", func(t *testing.T) { checkBucket(t, s) })
			t.Run("failure", func(t *testing.T) { checkFailure(t, s, v) })
			t.Run("outputs", func(t *testing.T) { checkOutputs(t, s, v) })
		})
	}
	t.Run("references", func(t *testing.T) { checkReferences(t, load(t, nil)) })
}

func checkGlobalLogging(t *testing.T, s *stack) {
	t.Helper()
	logging, _ := dig(s.raw, "Globals", "Function", "LoggingConfig").(map[string]any)
	if got := logging["LogFormat"]; got != "JSON" {
		t.Errorf("Globals.Function.LoggingConfig.LogFormat = %v, want JSON", got)
	}
	if got, want := logging["ApplicationLogLevel"], paramDefault(t, s, "LogLevel"); got != want {
		t.Errorf("Globals.Function.LoggingConfig.ApplicationLogLevel = %v, want the LogLevel parameter (%v)", got, want)
	}
	for _, f := range functions {
		if l := dig(s.raw, "Resources", f.logicalID, "Properties", "LoggingConfig"); l != nil {
			t.Errorf("%s overrides LoggingConfig (%v); keep it in Globals", f.logicalID, l)
		}
	}
}

func checkFunction(t *testing.T, s *stack, f function, v variant) {
	fn := getFunction(t, s, f)
	m := mergeGlobals(s.globals, fn)
	want := merged{
		Runtime:       "provided.al2023",
		Architectures: []string{"arm64"},
		Handler:       "bootstrap",
		Timeout:       f.timeout,
		MemorySize:    f.memory,
		Tracing:       "Active",
	}
	got := m
	got.Env = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s with Globals merged (-want +got):\n%s", f.logicalID, diff)
	}
	if got := deref(fn.FunctionName); got != f.name() {
		t.Errorf("%s FunctionName = %q, want %q", f.logicalID, got, f.name())
	}
	if fn.CodeUri == nil || deref(fn.CodeUri.String) != "." {
		t.Errorf("%s CodeUri = %v, want \".\"", f.logicalID, fn.CodeUri)
	}
	if got := fn.AWSCloudFormationMetadata["BuildMethod"]; got != "makefile" {
		t.Errorf("%s Metadata.BuildMethod = %v, want makefile", f.logicalID, got)
	}

	env := m.Env
	if got, want := env["CE_SECRET_ID"], v.secret; got != want {
		t.Errorf("%s CE_SECRET_ID = %q, want %q", f.logicalID, got, want)
	}
	if got, want := env["DATA_BUCKET"], dataBucket; got != want {
		t.Errorf("%s DATA_BUCKET = %q, want %q", f.logicalID, got, want)
	}
	if got, want := env["LOG_LEVEL"], paramDefault(t, s, "LogLevel"); got != want {
		t.Errorf("%s LOG_LEVEL = %q, want the LogLevel parameter (%q)", f.logicalID, got, want)
	}
	if got, want := env["CE_BASE_URL"], paramDefault(t, s, "CeBaseUrl"); got != want {
		t.Errorf("%s CE_BASE_URL = %q, want the CeBaseUrl parameter (%q)", f.logicalID, got, want)
	}
	if slices.Contains(f.env, "CALLBACK_URL") {
		if got, want := env["CALLBACK_URL"], callbackURL(); got != want {
			t.Errorf("%s CALLBACK_URL = %q, want %q", f.logicalID, got, want)
		}
	}
	if f.logicalID == webhookFn.logicalID {
		if got, want := env["EXPORT_FUNCTION_NAME"], exportFn.name(); got != want {
			t.Errorf("EXPORT_FUNCTION_NAME = %q, want %q", got, want)
		}
		if got, want := env["IMPORT_FUNCTION_NAME"], importFn.name(); got != want {
			t.Errorf("IMPORT_FUNCTION_NAME = %q, want %q", got, want)
		}
	}
	// Every other variable is a parameter, passed through unchanged.
	params := map[string]string{
		"EXPORT_OBJECTS": "ExportObjects", "EXPORT_START": "ExportStart", "EXPORT_TIMEZONE": "ExportTimezone",
		"EXPORT_LAG": "ExportLag", "EXPORT_MAX_JOBS": "ExportMaxJobs", "EXPORT_QUERIES_PER_HOUR": "ExportQueriesPerHour", "EXPORT_TIME_BASIS": "ExportTimeBasis", "EXPORT_LOOKBACK": "ExportLookback", "IMPORT_CHUNK_RECORDS": "ImportChunkRecords",
		"EXPORT_MAX_DAYS": "ExportMaxDays",
	}
	for _, name := range f.env {
		if p, ok := params[name]; ok {
			if got, want := env[name], paramDefault(t, s, p); got != want {
				t.Errorf("%s %s = %q, want the %s parameter (%q)", f.logicalID, name, got, p, want)
			}
		}
	}

	async := f.logicalID != webhookFn.logicalID
	cfg := fn.EventInvokeConfig
	switch {
	case !async && cfg != nil:
		t.Errorf("%s has an EventInvokeConfig; it is only invoked synchronously", f.logicalID)
	case async && cfg == nil:
		t.Errorf("%s has no EventInvokeConfig", f.logicalID)
	case async:
		if cfg.MaximumRetryAttempts == nil || *cfg.MaximumRetryAttempts > 2 {
			t.Errorf("%s EventInvokeConfig.MaximumRetryAttempts = %v, want set, at most 2", f.logicalID, cfg.MaximumRetryAttempts)
		}
		var onFailure *serverless.Function_Destination
		if cfg.DestinationConfig != nil {
			onFailure = cfg.DestinationConfig.OnFailure
		}
		if onFailure == nil || deref(onFailure.Type) != "SQS" || onFailure.Destination != "FailureQueue.Arn" {
			t.Errorf("%s on-failure destination = %+v, want SQS FailureQueue.Arn", f.logicalID, onFailure)
		}
		// The end-to-end tests' Lambda stand-in behaves as this config
		// says (with shorter waits): keep the two in step.
		def := lambdalocal.DefaultAsyncConfig()
		if cfg.MaximumRetryAttempts != nil && *cfg.MaximumRetryAttempts != def.MaximumRetryAttempts {
			t.Errorf("%s MaximumRetryAttempts = %d, but the e2e tests' stand-in retries %d times", f.logicalID, *cfg.MaximumRetryAttempts, def.MaximumRetryAttempts)
		}
		if age := cfg.MaximumEventAgeInSeconds; age == nil || time.Duration(*age)*time.Second != def.MaximumEventAge {
			t.Errorf("%s MaximumEventAgeInSeconds = %v, but the e2e tests' stand-in keeps events %v", f.logicalID, age, def.MaximumEventAge)
		}
	}
}

// schedules maps the action of each Schedule event's input to its schedule
// expression, checking that each input is exactly {"action": ...}.
// envelope is schedules' key for a schedule without Input: EventBridge
// delivers its own event ("detail-type": "Scheduled Event", "time").
const envelope = "(the EventBridge event)"

// schedules maps each Schedule event's input action (or envelope) to its
// schedule expression.
func schedules(t *testing.T, fn *serverless.Function) map[string]string {
	t.Helper()
	got := map[string]string{}
	for name, ev := range fn.Events {
		if ev.Type != "Schedule" {
			continue
		}
		if ev.Properties == nil || ev.Properties.ScheduleEvent == nil {
			t.Errorf("event %s: Schedule properties not understood", name)
			continue
		}
		sch := ev.Properties.ScheduleEvent
		if sch.Input == nil {
			if _, dup := got[envelope]; dup {
				t.Errorf("two schedules send EventBridge's event")
			}
			got[envelope] = sch.Schedule
			continue
		}
		var input map[string]any
		if err := json.Unmarshal([]byte(deref(sch.Input)), &input); err != nil {
			t.Errorf("event %s: Input %q is not a JSON object: %v", name, deref(sch.Input), err)
			continue
		}
		action, _ := input["action"].(string)
		if diff := cmp.Diff(map[string]any{"action": action}, input); diff != "" || action == "" {
			t.Errorf("event %s: Input = %s, want exactly {\"action\": ...}", name, deref(sch.Input))
		}
		if _, dup := got[action]; dup {
			t.Errorf("two schedules send action %q", action)
		}
		got[action] = sch.Schedule
	}
	return got
}

func checkImportEvents(t *testing.T, s *stack) {
	fn := getFunction(t, s, importFn)
	if diff := cmp.Diff(map[string]string{"sweep": "rate(5 minutes)"}, schedules(t, fn)); diff != "" {
		t.Errorf("ImportFunction schedules by input action (-want +got):\n%s", diff)
	}
	var n int
	for name, ev := range fn.Events {
		if ev.Type != "S3" {
			continue
		}
		n++
		if ev.Properties == nil || ev.Properties.S3Event == nil {
			t.Errorf("event %s: S3 properties not understood", name)
			continue
		}
		s3ev := ev.Properties.S3Event
		if s3ev.Bucket != "DataBucket" {
			t.Errorf("event %s: Bucket = %q, want !Ref DataBucket", name, s3ev.Bucket)
		}
		var events []string
		if s3ev.Events != nil {
			if s3ev.Events.String != nil {
				events = []string{*s3ev.Events.String}
			} else if s3ev.Events.StringArray != nil {
				events = *s3ev.Events.StringArray
			}
		}
		if diff := cmp.Diff([]string{"s3:ObjectCreated:*"}, events); diff != "" {
			t.Errorf("event %s: Events (-want +got):\n%s", name, diff)
		}
		var rules []string
		if s3ev.Filter != nil && s3ev.Filter.S3Key != nil {
			for _, r := range s3ev.Filter.S3Key.Rules {
				rules = append(rules, strings.ToLower(r.Name)+"="+r.Value)
			}
		}
		if diff := cmp.Diff([]string{"prefix=imports/"}, rules); diff != "" {
			t.Errorf("event %s: key filter (-want +got):\n%s", name, diff)
		}
	}
	if n != 1 {
		t.Errorf("ImportFunction has %d S3 events, want 1", n)
	}
	if got := len(fn.Events); got != 2 {
		t.Errorf("ImportFunction has %d events, want 2 (S3 and the sweep)", got)
	}
}

type route struct {
	Method, Path, Authorizer, API, Payload string
}

func checkRoutes(t *testing.T, s *stack) {
	fn := getFunction(t, s, webhookFn)
	var got []route
	for name, ev := range fn.Events {
		if ev.Type != "HttpApi" || ev.Properties == nil || ev.Properties.HttpApiEvent == nil {
			t.Errorf("event %s: %s, want an HttpApi event", name, ev.Type)
			continue
		}
		h := ev.Properties.HttpApiEvent
		r := route{Method: strings.ToUpper(deref(h.Method)), Path: deref(h.Path), API: deref(h.ApiId), Payload: deref(h.PayloadFormatVersion)}
		if h.Auth != nil {
			r.Authorizer = deref(h.Auth.Authorizer)
		}
		got = append(got, r)
	}
	slices.SortFunc(got, func(a, b route) int { return strings.Compare(a.Path+a.Method, b.Path+b.Method) })
	want := []route{
		{"POST", "/callbacks/ce", "NONE", "WebhookApi", "2.0"},
		{"POST", "/exports", "AWS_IAM", "WebhookApi", "2.0"},
		{"GET", "/healthz", "NONE", "WebhookApi", "2.0"},
		{"GET", "/jobs/{id}", "AWS_IAM", "WebhookApi", "2.0"},
		{"GET", "/runs/{id}", "AWS_IAM", "WebhookApi", "2.0"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WebhookFunction routes (-want +got):\n%s", diff)
	}

	api, err := s.cf.GetServerlessHttpApiWithName("WebhookApi")
	if err != nil {
		t.Fatalf("WebhookApi: %v", err)
	}
	// IAM by default, so a route added without Auth is never public.
	if api.Auth == nil || deref(api.Auth.DefaultAuthorizer) != "AWS_IAM" {
		t.Errorf("WebhookApi Auth.DefaultAuthorizer = %v, want AWS_IAM", api.Auth)
	}
	if got := dig(s.raw, "Resources", "WebhookApi", "Properties", "Auth", "EnableIamAuthorizer"); got != true {
		t.Errorf("WebhookApi Auth.EnableIamAuthorizer = %v, want true", got)
	}
}

func checkBucket(t *testing.T, s *stack) {
	b, err := s.cf.GetS3BucketWithName("DataBucket")
	if err != nil {
		t.Fatalf("DataBucket: %v", err)
	}
	if got := deref(b.BucketName); got != dataBucket {
		t.Errorf("DataBucket BucketName = %q, want %q", got, dataBucket)
	}
	if b.BucketEncryption == nil || len(b.BucketEncryption.ServerSideEncryptionConfiguration) == 0 ||
		b.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault == nil {
		t.Errorf("DataBucket has no default encryption")
	} else if alg := b.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm; alg != "AES256" && alg != "aws:kms" {
		t.Errorf("DataBucket SSEAlgorithm = %q, want AES256 or aws:kms", alg)
	}
	pab := b.PublicAccessBlockConfiguration
	if pab == nil || !deref(pab.BlockPublicAcls) || !deref(pab.BlockPublicPolicy) || !deref(pab.IgnorePublicAcls) || !deref(pab.RestrictPublicBuckets) {
		t.Errorf("DataBucket PublicAccessBlockConfiguration = %+v, want all four true", pab)
	}
	if b.VersioningConfiguration == nil || b.VersioningConfiguration.Status != "Enabled" {
		t.Errorf("DataBucket versioning = %+v, want Enabled", b.VersioningConfiguration)
	}
	// Kept once created (it is the data lake), but deleted when the deploy
	// that created it rolls back, so the retry can create it again.
	if got := string(b.AWSCloudFormationDeletionPolicy); got != "RetainExceptOnCreate" {
		t.Errorf("DataBucket DeletionPolicy = %q, want RetainExceptOnCreate", got)
	}
	if got := string(b.AWSCloudFormationUpdateReplacePolicy); got != "Retain" {
		t.Errorf("DataBucket UpdateReplacePolicy = %q, want Retain", got)
	}

	expire := map[string]int{}
	var noncurrent int
	if b.LifecycleConfiguration != nil {
		for _, r := range b.LifecycleConfiguration.Rules {
			if r.Status != "Enabled" {
				continue
			}
			if r.ExpirationInDays != nil {
				expire[deref(r.Prefix)] = *r.ExpirationInDays
			}
			if r.NoncurrentVersionExpiration != nil && deref(r.Prefix) == "" {
				noncurrent = r.NoncurrentVersionExpiration.NoncurrentDays
			}
		}
	}
	// Everything under state/ expires except state/watermarks/: losing a
	// watermark would silently restart exports from EXPORT_START.
	want := map[string]int{
		"reports/":           paramInt(t, s, "ReportsRetentionDays"),
		"state/jobs/":        paramInt(t, s, "StateRetentionDays"),
		"state/imports/":     paramInt(t, s, "StateRetentionDays"),
		"state/idempotency/": paramInt(t, s, "StateRetentionDays"),
		"athena-results/":    paramInt(t, s, "LakeResultsRetentionDays"),
	}
	if diff := cmp.Diff(want, expire); diff != "" {
		t.Errorf("DataBucket expiration days by prefix (-want +got):\n%s", diff)
	}
	if got, want := noncurrent, paramInt(t, s, "NoncurrentVersionRetentionDays"); got != want {
		t.Errorf("DataBucket noncurrent version expiration = %d days, want %d (whole bucket)", got, want)
	}

	pol, err := s.cf.GetS3BucketPolicyWithName("DataBucketPolicy")
	if err != nil {
		t.Fatalf("DataBucketPolicy: %v", err)
	}
	if pol.Bucket != "DataBucket" {
		t.Errorf("DataBucketPolicy Bucket = %q, want !Ref DataBucket", pol.Bucket)
	}
	var tlsOnly bool
	for _, st := range statements(pol.PolicyDocument) {
		cond, _ := json.Marshal(st["Condition"])
		if st["Effect"] == "Deny" && st["Principal"] == "*" && slices.Contains(stringList(st["Action"]), "s3:*") &&
			slices.Equal(stringList(st["Resource"]), []string{"DataBucket.Arn", "DataBucket.Arn/*"}) &&
			string(cond) == `{"Bool":{"aws:SecureTransport":"false"}}` {
			tlsOnly = true
		}
	}
	if !tlsOnly {
		t.Errorf("DataBucketPolicy has no statement denying s3:* on the bucket and its objects when aws:SecureTransport is false")
	}
}

func checkFailure(t *testing.T, s *stack, v variant) {
	q, err := s.cf.GetSQSQueueWithName("FailureQueue")
	if err != nil {
		t.Fatalf("FailureQueue: %v", err)
	}
	if !deref(q.SqsManagedSseEnabled) && deref(q.KmsMasterKeyId) == "" {
		t.Errorf("FailureQueue is not encrypted")
	}

	_, topicErr := s.cf.GetSNSTopicWithName("AlarmTopic")
	if topicErr != nil {
		t.Errorf("AlarmTopic: %v", topicErr)
	}
	sub, err := s.cf.GetSNSSubscriptionWithName("AlarmSubscription")
	if err != nil {
		t.Errorf("AlarmSubscription: %v", err)
	} else if sub.Protocol != "email" || sub.TopicArn != "AlarmTopic" || sub.AWSCloudFormationCondition != "HasAlarmEmail" {
		t.Errorf("AlarmSubscription = %s to %s (condition %q), want email to AlarmTopic under HasAlarmEmail",
			sub.Protocol, sub.TopicArn, sub.AWSCloudFormationCondition)
	}

	type alarm struct{ Namespace, Metric, Dimension, Value, Statistic string }
	var got []alarm
	for name, a := range s.cf.GetAllCloudWatchAlarmResources() {
		if name == "FreshnessAlarm" {
			continue // TestFreshnessAlarm (lake_test.go)
		}
		if len(a.Dimensions) != 1 {
			t.Errorf("alarm %s has %d dimensions, want 1", name, len(a.Dimensions))
			continue
		}
		got = append(got, alarm{deref(a.Namespace), deref(a.MetricName), a.Dimensions[0].Name, a.Dimensions[0].Value, deref(a.Statistic)})
		if a.Threshold == nil || *a.Threshold != 0 || a.ComparisonOperator != "GreaterThanThreshold" {
			t.Errorf("alarm %s: %s %v, want GreaterThanThreshold 0", name, a.ComparisonOperator, a.Threshold)
		}
		if deref(a.TreatMissingData) != "notBreaching" {
			t.Errorf("alarm %s TreatMissingData = %q, want notBreaching", name, deref(a.TreatMissingData))
		}
		if diff := cmp.Diff(v.actions, a.AlarmActions); diff != "" {
			t.Errorf("alarm %s AlarmActions (-want +got):\n%s", name, diff)
		}
	}
	slices.SortFunc(got, func(a, b alarm) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	want := []alarm{
		{"AWS/Lambda", "Errors", "FunctionName", "ExportFunction", "Sum"},
		{"AWS/Lambda", "Errors", "FunctionName", "ImportFunction", "Sum"},
		{"AWS/Lambda", "Errors", "FunctionName", "WebhookFunction", "Sum"},
		{"AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "FailureQueue.QueueName", "Maximum"},
		// Emitted by the functions in embedded metric format
		// (internal/logging.Metric) with Function = "export" or "import".
		{"cebulk", "JobsFailed", "Function", "export", "Sum"},
		{"cebulk", "JobsFailed", "Function", "import", "Sum"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alarms (-want +got):\n%s", diff)
	}
}

func checkOutputs(t *testing.T, s *stack, v variant) {
	got := map[string]any{}
	for name, o := range s.cf.Outputs {
		got[name] = o.Value
	}
	want := map[string]any{
		"DataBucketName":      dataBucket,
		"ApiUrl":              "https://WebhookApi.execute-api." + testRegion + ".amazonaws.com",
		"CallbackUrl":         callbackURL(),
		"FailureQueueUrl":     "FailureQueue",
		"SecretArnOut":        v.secret,
		"ExportFunctionName":  "ExportFunction",
		"ImportFunctionName":  "ImportFunction",
		"WebhookFunctionName": "WebhookFunction",
		// the lake (lake_test.go)
		"LakeDatabaseName":    "LakeDatabase",
		"LakeWorkGroupName":   "LakeWorkGroup",
		"LakeReaderPolicyArn": "LakeReaderPolicy",
		"DashboardUrl":        "https://" + testRegion + ".console.aws.amazon.com/cloudwatch/home?region=" + testRegion + "#dashboards:name=Dashboard",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
}

// checkReferences finds every reference between resources in the template as
// written and checks that they make no cycle once SAM has expanded the events
// (an S3 event makes the bucket depend on the function; an HttpApi event makes
// the API depend on it), and that the data bucket is referenced only where
// SAM issue #1109 allows.
func checkReferences(t *testing.T, s *stack) {
	resources, _ := s.src["Resources"].(map[string]any)
	globals := references(dig(s.src, "Globals", "Function"), resources, []string{"Properties"})
	graph := map[string][]string{}
	for from, res := range resources {
		refs := references(res, resources, nil)
		if dig(res, "Type") == "AWS::Serverless::Function" {
			refs = append(refs, globals...) // SAM merges Globals into every function
		}
		for _, r := range refs {
			src, dst := from, r.to
			if inEvent(r.path, "Bucket") || inEvent(r.path, "ApiId") {
				src, dst = dst, src
			}
			graph[src] = append(graph[src], dst)
			if r.to == "DataBucket" && !(from == "ImportFunction" && inEvent(r.path, "Bucket")) && from != "DataBucketPolicy" {
				t.Errorf("%s references DataBucket at %s; use the name %q instead (SAM issue #1109)", from, strings.Join(r.path, "."), "${AWS::StackName}-data-${AWS::AccountId}")
			}
		}
	}
	if cycle := findCycle(graph); cycle != nil {
		t.Errorf("circular dependency: %s", strings.Join(cycle, " -> "))
	}
}

// inEvent reports whether path is Properties.Events.<name>.Properties.<prop>.
func inEvent(path []string, prop string) bool {
	return len(path) == 5 && path[0] == "Properties" && path[1] == "Events" && path[3] == "Properties" && path[4] == prop
}

type reference struct {
	to   string
	path []string
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

// references lists the references to resources in v: Ref, Fn::GetAtt,
// Fn::Sub variables and DependsOn.
func references(v any, resources map[string]any, path []string) []reference {
	var refs []reference
	add := func(name string) {
		name, _, _ = strings.Cut(name, ".")
		if _, ok := resources[name]; ok {
			refs = append(refs, reference{name, slices.Clone(path)})
		}
	}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			switch k {
			case "Ref":
				if s, ok := val.(string); ok {
					add(s)
				}
				continue
			case "Fn::GetAtt":
				switch a := val.(type) {
				case string:
					add(a)
				case []any:
					if len(a) > 0 {
						if s, ok := a[0].(string); ok {
							add(s)
						}
					}
				}
				continue
			case "Fn::Sub":
				src := val
				if a, ok := val.([]any); ok && len(a) == 2 {
					src = a[0]
					refs = append(refs, references(a[1], resources, path)...)
				}
				if s, ok := src.(string); ok {
					for _, m := range subVar.FindAllStringSubmatch(s, -1) {
						add(m[1])
					}
				}
				continue
			case "DependsOn":
				for _, d := range stringList(val) {
					add(d)
				}
				continue
			}
			refs = append(refs, references(val, resources, append(path, k))...)
		}
	case []any:
		for i, val := range v {
			refs = append(refs, references(val, resources, append(path, strconv.Itoa(i)))...)
		}
	}
	return refs
}

// findCycle returns one cycle of graph, or nil.
func findCycle(graph map[string][]string) []string {
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(n string) []string
	visit = func(n string) []string {
		state[n] = active
		stack = append(stack, n)
		for _, m := range graph[n] {
			switch state[m] {
			case active:
				i := slices.Index(stack, m)
				return append(slices.Clone(stack[i:]), m)
			case unseen:
				if c := visit(m); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return nil
	}
	nodes := make([]string, 0, len(graph))
	for n := range graph {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		if state[n] == unseen {
			if c := visit(n); c != nil {
				return c
			}
		}
	}
	return nil
}

func TestEnvContract(t *testing.T) {
	s := load(t, nil)
	root := moduleRoot(t)
	for _, f := range functions {
		t.Run(f.logicalID, func(t *testing.T) {
			env := mergeGlobals(s.globals, getFunction(t, s, f)).Env
			want := slices.Sorted(slices.Values(append(slices.Clone(commonEnv), f.env...)))
			if diff := cmp.Diff(want, slices.Sorted(maps.Keys(env))); diff != "" {
				t.Errorf("%s environment (-DESIGN.md §3 +template.yaml):\n%s", f.logicalID, diff)
			}

			dir := filepath.Join(root, "functions", f.dir)
			if _, err := os.Stat(filepath.Join(dir, "config.go")); errors.Is(err, fs.ErrNotExist) {
				t.Skipf("functions/%s/config.go does not exist yet", f.dir)
			}
			read, err := getenvNames(dir)
			if err != nil {
				t.Fatal(err)
			}
			// Every function reads the common variables through
			// internal/lambdaenv.ReadCommon.
			common, err := getenvNames(filepath.Join(root, "internal", "lambdaenv"))
			if err != nil {
				t.Fatal(err)
			}
			maps.Copy(read, common)
			var notSet, notRead []string
			for name, pos := range read {
				if _, ok := env[name]; !ok && !runtimeVar(name) {
					notSet = append(notSet, fmt.Sprintf("%s (%s)", name, pos))
				}
			}
			for name := range env {
				// LOG_LEVEL is set everywhere, whether or not the code reads it.
				if _, ok := read[name]; !ok && name != "LOG_LEVEL" {
					notRead = append(notRead, name)
				}
			}
			slices.Sort(notSet)
			slices.Sort(notRead)
			if len(notSet) > 0 {
				t.Errorf("functions/%s reads variables template.yaml does not set on %s: %s", f.dir, f.logicalID, strings.Join(notSet, ", "))
			}
			if len(notRead) > 0 {
				t.Errorf("template.yaml sets variables on %s that functions/%s never reads with getenv: %s", f.logicalID, f.dir, strings.Join(notRead, ", "))
			}
		})
	}
}

func TestGetenvNames(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    []string
		wantErr bool
	}{
		{
			name: "literals and constants",
			src: `package main
const envLag = "EXPORT_LAG"
func loadConfig(getenv func(string) string) {
	_ = getenv("DATA_BUCKET")
	_ = getenv(envLag)
	_ = getenv("DATA_BUCKET")
	_ = other("NOT_ENV")
}
func other(string) string { return "" }`,
			want: []string{"DATA_BUCKET", "EXPORT_LAG"},
		},
		{
			name: "computed name",
			src: `package main
func loadConfig(getenv func(string) string, name string) { _ = getenv(name) }`,
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config.go"), []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			test := "package main\nfunc f(getenv func(string) string) { getenv(\"ONLY_IN_TESTS\") }\n"
			if err := os.WriteFile(filepath.Join(dir, "config_test.go"), []byte(test), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := getenvNames(dir)
			if (err != nil) != tc.wantErr {
				t.Fatalf("getenvNames() error = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, slices.Sorted(maps.Keys(got)), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("getenvNames() names (-want +got):\n%s", diff)
			}
		})
	}
}

// runtimeVar reports whether the Lambda runtime (or the SDK's environment)
// provides name, so the template neither can nor needs to set it.
func runtimeVar(name string) bool {
	return strings.HasPrefix(name, "AWS_") || strings.HasPrefix(name, "LAMBDA_") || strings.HasPrefix(name, "_")
}

func TestPolicies(t *testing.T) {
	obj := func(prefix string, actions ...string) []string {
		var out []string
		for _, a := range actions {
			out = append(out, a+" "+bucketARN+"/"+prefix+"*")
		}
		return out
	}
	// Unconditional ListBucket on the own bucket: S3 answers a GET or HEAD
	// of a missing key 404 only to a caller that may list the bucket (the
	// strict reading: a prefix-conditioned grant does not count).
	list := "s3:ListBucket " + bucketARN
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			s := load(t, v.overrides)
			secret := "secretsmanager:GetSecretValue " + v.secretGrant()
			want := map[string][]string{
				// Nothing the code does not use: the exporter invokes itself
				// only to continue a collect at its deadline (multipart
				// uploads are s3:PutObject); the importer reads imports/ by
				// ETag, never by version id, and never reads reports/ back.
				exportFn.logicalID: slices.Concat(
					obj("exports/", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"),
					obj("state/", "s3:GetObject", "s3:PutObject"),
					obj("state/runs/open/", "s3:DeleteObject"),
					[]string{list, secret, "lambda:InvokeFunction " + exportFn.arn()},
				),
				importFn.logicalID: slices.Concat(
					obj("imports/", "s3:GetObject"),
					obj("reports/", "s3:PutObject", "s3:AbortMultipartUpload"),
					obj("state/", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"),
					[]string{list, secret, "lambda:InvokeFunction " + importFn.arn()},
				),
				webhookFn.logicalID: slices.Concat(
					obj("state/", "s3:GetObject", "s3:PutObject"),
					[]string{list, secret, "lambda:InvokeFunction " + exportFn.arn(), "lambda:InvokeFunction " + importFn.arn()},
				),
			}
			if v.kmsKey != "" {
				cond, _ := json.Marshal(map[string]any{"StringEquals": map[string]any{"kms:ViaService": "secretsmanager." + testRegion + ".amazonaws.com"}})
				for fn := range want {
					want[fn] = append(want[fn], "kms:Decrypt "+v.kmsKey+" if "+string(cond))
				}
			}
			for _, f := range functions {
				got := grants(t, f.logicalID, dig(s.raw, "Resources", f.logicalID, "Properties", "Policies"))
				w := slices.Sorted(slices.Values(want[f.logicalID]))
				if diff := cmp.Diff(w, got); diff != "" {
					t.Errorf("%s S3, Secrets Manager and Lambda grants (-want +got):\n%s", f.logicalID, diff)
				}
			}
		})
	}
}

// checkedServices are the services whose grants TestPolicies compares with
// its table; SAM adds the rest (logs, X-Ray, the failure queue).
var checkedServices = []string{"s3", "secretsmanager", "lambda", "kms"}

// grants lists, sorted, "action resource [if condition]" for every action of
// the checked services that the function's inline policies allow.
func grants(t *testing.T, fn string, policies any) []string {
	t.Helper()
	var docs []any
	switch p := policies.(type) {
	case nil:
	case map[string]any:
		docs = append(docs, p)
	case []any:
		docs = p
	default:
		t.Errorf("%s Policies: %v is not a policy document or a list of them", fn, p)
	}
	var out []string
	for _, d := range docs {
		if dig(d, "Statement") == nil {
			t.Errorf("%s Policies: %v is not an inline policy document; write inline statements so their resources can be checked", fn, d)
			continue
		}
		for _, st := range statements(d) {
			if _, ok := st["NotAction"]; ok {
				t.Errorf("%s: statement %v uses NotAction", fn, st["Sid"])
			}
			if _, ok := st["NotResource"]; ok {
				t.Errorf("%s: statement %v uses NotResource", fn, st["Sid"])
			}
			if st["Effect"] != "Allow" {
				continue
			}
			var cond string
			if c, ok := st["Condition"]; ok {
				b, _ := json.Marshal(c)
				cond = " if " + string(b)
			}
			for _, a := range stringList(st["Action"]) {
				service, _, _ := strings.Cut(strings.ToLower(a), ":")
				if !slices.Contains(checkedServices, service) {
					continue
				}
				if strings.Contains(a, "*") {
					t.Errorf("%s: statement %v allows the wildcard action %s", fn, st["Sid"], a)
				}
				for _, r := range stringList(st["Resource"]) {
					if r == "*" || r == "" {
						t.Errorf("%s: statement %v allows %s on %q", fn, st["Sid"], a, r)
					}
					out = append(out, a+" "+r+cond)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestSamconfig(t *testing.T) {
	root := moduleRoot(t)
	cfg, err := readTOML(filepath.Join(root, "samconfig.toml"))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		section, key string
		want         any
	}{
		{"", "version", 0.1},
		{"default.global.parameters", "stack_name", testStack},
		{"default.build.parameters", "cached", true},
		{"default.build.parameters", "parallel", true},
		{"default.deploy.parameters", "resolve_s3", true},
		{"default.deploy.parameters", "confirm_changeset", true},
		{"default.validate.parameters", "lint", true},
	}
	for _, c := range checks {
		if got := cfg[c.section][c.key]; got != c.want {
			t.Errorf("samconfig.toml [%s] %s = %v, want %v", c.section, c.key, got, c.want)
		}
	}
	deploy := cfg["default.deploy.parameters"]
	if caps := strings.Fields(strings.Join(stringList(deploy["capabilities"]), " ")); !slices.Contains(caps, "CAPABILITY_IAM") {
		t.Errorf("samconfig.toml capabilities = %v, want CAPABILITY_IAM among them", deploy["capabilities"])
	}
	if r, _ := deploy["region"].(string); r == "" {
		t.Errorf("samconfig.toml [default.deploy.parameters] has no region")
	}

	overrides, err := parameterOverrides(deploy["parameter_overrides"])
	if err != nil {
		t.Fatalf("samconfig.toml parameter_overrides: %v", err)
	}
	if len(overrides) == 0 {
		t.Errorf("samconfig.toml parameter_overrides is empty; list the parameters an operator sets")
	}
	s := load(t, nil)
	secretish := regexp.MustCompile(`(?i)secret|token|password|key`)
	for _, k := range slices.Sorted(maps.Keys(overrides)) {
		v := overrides[k]
		if _, ok := s.cf.Parameters[k]; !ok {
			t.Errorf("samconfig.toml parameter_overrides sets %s, which template.yaml does not declare", k)
		}
		if secretish.MatchString(k) && k != "SecretArn" {
			t.Errorf("samconfig.toml parameter_overrides sets %s; secrets belong in Secrets Manager", k)
		}
		if k == "SecretArn" && v != "" && !strings.HasPrefix(v, "arn:") {
			t.Errorf("samconfig.toml SecretArn = %q, want empty or an ARN (never the secret itself)", v)
		}
	}
}

func TestBuildTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the function binaries; skipped with -short")
	}
	root := moduleRoot(t)
	makePath, err := exec.LookPath("make")
	if err != nil {
		if awstest.Required() {
			t.Fatal("make is not on PATH")
		}
		t.Skip("make is not on PATH")
	}
	for _, f := range functions {
		t.Run(f.logicalID, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(root, "functions", f.dir, "main.go")); errors.Is(err, fs.ErrNotExist) {
				t.Skipf("functions/%s/main.go does not exist yet", f.dir)
			}
			dir := t.TempDir()
			cmd := exec.CommandContext(t.Context(), makePath, "--no-print-directory", "build-"+f.logicalID, "ARTIFACTS_DIR="+dir)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("make build-%s: %v\n%s", f.logicalID, err, out)
			}
			checkStaticARM64(t, filepath.Join(dir, "bootstrap"))
		})
	}
}

// checkStaticARM64 checks that path is a statically linked linux/arm64
// executable, which is what provided.al2023 on arm64 runs.
func checkStaticARM64(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if info.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable (mode %v)", path, info.Mode())
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("bootstrap is not an ELF file: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 || f.Class != elf.ELFCLASS64 {
		t.Errorf("bootstrap is %v %v, want EM_AARCH64 ELFCLASS64", f.Machine, f.Class)
	}
	if f.Type != elf.ET_EXEC {
		t.Errorf("bootstrap ELF type = %v, want ET_EXEC", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("bootstrap has a %v program header: it is dynamically linked, want a static binary (CGO_ENABLED=0)", p.Type)
		}
	}
}

func callbackURL() string {
	return "https://WebhookApi.execute-api." + testRegion + ".amazonaws.com/callbacks/ce"
}

// TestSecretParameters checks what SecretArn and SecretKmsKeyArn accept:
// a full secret ARN (with Secrets Manager's 6-character suffix) or a name,
// never a partial ARN, which no IAM policy resource matches.
func TestSecretParameters(t *testing.T) {
	s := load(t, nil)
	pattern := func(name string) *regexp.Regexp {
		p, _ := dig(s.raw, "Parameters", name, "AllowedPattern").(string)
		re, err := regexp.Compile(p)
		if err != nil {
			t.Fatalf("%s AllowedPattern %q: %v", name, p, err)
		}
		return re
	}
	secret, key := pattern("SecretArn"), pattern("SecretKmsKeyArn")
	for _, tc := range []struct {
		re    *regexp.Regexp
		value string
		ok    bool
	}{
		{secret, "", true},
		{secret, givenSecret, true},
		{secret, "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:team/cebulk-ce-a1B2c3", true},
		{secret, "cebulk-ce", true},
		{secret, "team/cebulk_ce+1=2.3@x", true},
		{secret, "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk", false}, // partial ARN
		{secret, "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCd", false},
		{secret, "arn:aws:secretsmanager:us-east-1:1234:secret:cebulk-ce-AbCdEf", false},
		{secret, "cebulk ce", false},
		{key, "", true},
		{key, givenKey, true},
		{key, "arn:aws:kms:us-east-1:123456789012:alias/cebulk", false},
		{key, "1234abcd-12ab-34cd-56ef-1234567890ab", false},
	} {
		if got := tc.re.MatchString(tc.value); got != tc.ok {
			t.Errorf("%q accepted = %v, want %v", tc.value, got, tc.ok)
		}
	}
	for _, name := range []string{"SecretArn", "SecretKmsKeyArn"} {
		desc, _ := dig(s.raw, "Parameters", name, "Description").(string)
		if !strings.Contains(desc, "ARN") {
			t.Errorf("%s Description %q does not say what it accepts", name, desc)
		}
	}
	if desc, _ := dig(s.raw, "Parameters", "SecretArn", "Description").(string); !strings.Contains(desc, "6-character suffix") || !strings.Contains(desc, "name") {
		t.Errorf("SecretArn Description %q must say: the full ARN with its 6-character suffix, or the name", desc)
	}
	// A failed first deploy must not leave the created secret behind.
	if got := dig(s.src, "Resources", "CeSecret", "DeletionPolicy"); got != "RetainExceptOnCreate" {
		t.Errorf("CeSecret DeletionPolicy = %v, want RetainExceptOnCreate", got)
	}
}
