package samtemplate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/lake"
)

var update = flag.Bool("update", false, "rewrite template.yaml's generated lake tables from internal/lake")

// The markers around the generated Glue tables in template.yaml.
const (
	lakeBegin = "  # ---- lake tables: generated from internal/lake by\n  # `go test ./internal/samtemplate -run TestLakeTables -update`; do not edit by hand.\n"
	lakeEnd   = "  # ---- end lake tables\n"
)

// lakeLogicalID is the logical ID of a table's AWS::Glue::Table.
func lakeLogicalID(name string) string {
	var b strings.Builder
	b.WriteString("Lake")
	for _, w := range strings.Split(name, "_") {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	b.WriteString("Table")
	return b.String()
}

// bucketURL is the data bucket as a Fn::Sub string.
const bucketURL = "s3://${AWS::StackName}-data-${AWS::AccountId}/"

// renderLakeTables writes the AWS::Glue::Table resources of lake.Tables as
// template.yaml holds them.
func renderLakeTables() string {
	q := strconv.Quote
	var b strings.Builder
	b.WriteString(lakeBegin)
	for _, t := range lake.Tables {
		loc := bucketURL + t.Prefix
		params := t.TableParameters(loc)
		fmt.Fprintf(&b, "  %s:\n    Type: AWS::Glue::Table\n    Condition: CreateLake\n    Properties:\n", lakeLogicalID(t.Name))
		b.WriteString("      CatalogId: !Ref AWS::AccountId\n      DatabaseName: !Ref LakeDatabase\n      TableInput:\n")
		fmt.Fprintf(&b, "        Name: %s\n        Description: %s\n        TableType: EXTERNAL_TABLE\n        Parameters:\n", q(t.Name), q(t.Comment))
		for _, k := range slices.Sorted(maps.Keys(params)) {
			v := params[k]
			if k == "storage.location.template" {
				fmt.Fprintf(&b, "          %s: !Sub %s\n", k, q(strings.ReplaceAll(v, "${"+t.Partition.Column+"}", "${!"+t.Partition.Column+"}")))
				continue
			}
			fmt.Fprintf(&b, "          %s: %s\n", k, q(v))
		}
		fmt.Fprintf(&b, "        PartitionKeys:\n          - Name: %s\n            Type: string\n", t.Partition.Column)
		b.WriteString("        StorageDescriptor:\n")
		fmt.Fprintf(&b, "          Location: !Sub %s\n          InputFormat: %s\n          OutputFormat: %s\n", q(loc), t.InputFormat(), lake.TextOutput)
		fmt.Fprintf(&b, "          SerdeInfo:\n            SerializationLibrary: %s\n            Parameters:\n", lake.SerDe)
		serde := t.SerDeParameters()
		for _, k := range slices.Sorted(maps.Keys(serde)) {
			fmt.Fprintf(&b, "              %s: %s\n", k, q(serde[k]))
		}
		b.WriteString("          Columns:\n")
		for _, c := range t.Columns {
			fmt.Fprintf(&b, "            - Name: %s\n              Type: %s\n", c.Name, q(c.HiveType()))
		}
		b.WriteString("\n")
	}
	b.WriteString(lakeEnd)
	return b.String()
}

// TestLakeTables checks that template.yaml's Glue tables are the ones
// internal/lake defines (-update rewrites them), and reads them back from
// the resolved template.
func TestLakeTables(t *testing.T) {
	path := filepath.Join(moduleRoot(t), "template.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(lakeBegin))
	j := bytes.Index(data, []byte(lakeEnd))
	if i < 0 || j < i {
		t.Fatalf("template.yaml has no generated lake tables block (%q … %q)", lakeBegin, lakeEnd)
	}
	want := renderLakeTables()
	got := string(data[i : j+len(lakeEnd)])
	if *update && got != want {
		data = slices.Concat(data[:i], []byte(want), data[j+len(lakeEnd):])
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got = want
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("template.yaml's lake tables differ from internal/lake; run `go test ./internal/samtemplate -run TestLakeTables -update` (-want +got):\n%s", diff)
	}

	s := load(t, nil)
	for _, tb := range lake.Tables {
		id := lakeLogicalID(tb.Name)
		res, _ := dig(s.raw, "Resources", id).(map[string]any)
		if res == nil {
			t.Errorf("no resource %s", id)
			continue
		}
		in := dig(res, "Properties", "TableInput")
		var cols []lake.Column
		if b, err := json.Marshal(dig(in, "StorageDescriptor", "Columns")); err == nil {
			var raw []struct{ Name, Type string }
			_ = json.Unmarshal(b, &raw)
			for _, c := range raw {
				cols = append(cols, lake.Column{Name: c.Name, Type: c.Type})
			}
		}
		var wantCols []lake.Column
		for _, c := range tb.Columns {
			wantCols = append(wantCols, lake.Column{Name: c.Name, Type: c.HiveType()})
		}
		if diff := cmp.Diff(wantCols, cols); diff != "" {
			t.Errorf("%s columns (-want +got):\n%s", id, diff)
		}
		loc := "s3://" + dataBucket + "/" + tb.Prefix
		if got := dig(in, "StorageDescriptor", "Location"); got != loc {
			t.Errorf("%s Location = %v, want %s", id, got, loc)
		}
		if got, want := dig(in, "Parameters", "storage.location.template"), loc+tb.Partition.Column+"=${"+tb.Partition.Column+"}/"; got != want {
			t.Errorf("%s storage.location.template = %v, want %s", id, got, want)
		}
		if got := dig(res, "Condition"); got != "CreateLake" {
			t.Errorf("%s Condition = %v, want CreateLake", id, got)
		}
	}
}

// TestLake checks the rest of the lake: the database name, the workgroup
// and its results prefix, the readers' policy, that the functions gain no
// access to it, and that Lake=disabled leaves none of it.
func TestLake(t *testing.T) {
	s := load(t, nil)
	if got, want := dig(s.raw, "Resources", "LakeDatabase", "Properties", "DatabaseInput", "Name"), testStack+"_lake"; got != want {
		t.Errorf("LakeDatabase name = %v, want %s", got, want)
	}
	rc := dig(s.raw, "Resources", "LakeWorkGroup", "Properties", "WorkGroupConfiguration")
	if got, want := dig(rc, "ResultConfiguration", "OutputLocation"), "s3://"+dataBucket+"/athena-results/"; got != want {
		t.Errorf("LakeWorkGroup OutputLocation = %v, want %s", got, want)
	}
	if dig(rc, "EnforceWorkGroupConfiguration") != true || dig(rc, "ResultConfiguration", "EncryptionConfiguration", "EncryptionOption") != "SSE_S3" {
		t.Errorf("LakeWorkGroup must enforce its configuration and encrypt results: %v", rc)
	}

	// The readers' policy, action by resource.
	got := map[string][]string{}
	for _, st := range statements(dig(s.raw, "Resources", "LakeReaderPolicy", "Properties", "PolicyDocument")) {
		if st["Effect"] != "Allow" {
			t.Errorf("LakeReaderPolicy statement %v is not Allow", st["Sid"])
		}
		for _, r := range stringList(st["Resource"]) {
			got[r] = append(got[r], stringList(st["Action"])...)
		}
		if st["Sid"] == "ListLakePrefixes" {
			if diff := cmp.Diff([]string{"exports/*", "reports/*", "athena-results/*"}, stringList(dig(st, "Condition", "StringLike", "s3:prefix"))); diff != "" {
				t.Errorf("LakeReaderPolicy list prefixes (-want +got):\n%s", diff)
			}
		}
	}
	for r := range got {
		slices.Sort(got[r])
	}
	glue := "arn:aws:glue:" + testRegion + ":" + testAccount + ":"
	athena := "arn:aws:athena:" + testRegion + ":" + testAccount + ":"
	readGlue := []string{"glue:BatchGetPartition", "glue:GetDatabase", "glue:GetDatabases", "glue:GetPartition", "glue:GetPartitions", "glue:GetTable", "glue:GetTables"}
	want := map[string][]string{
		glue + "catalog":                      readGlue,
		glue + "database/LakeDatabase":        readGlue,
		glue + "table/LakeDatabase/*":         readGlue,
		athena + "workgroup/LakeWorkGroup":    {"athena:BatchGetQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults", "athena:GetQueryResultsStream", "athena:GetQueryRuntimeStatistics", "athena:GetWorkGroup", "athena:ListQueryExecutions", "athena:StartQueryExecution", "athena:StopQueryExecution"},
		athena + "datacatalog/AwsDataCatalog": {"athena:GetDataCatalog", "athena:GetDatabase", "athena:GetTableMetadata", "athena:ListDatabases", "athena:ListTableMetadata"},
		"*":                                   {"athena:ListDataCatalogs", "athena:ListEngineVersions", "athena:ListWorkGroups"},
		bucketARN + "/exports/*":              {"s3:GetObject"},
		bucketARN + "/reports/*":              {"s3:GetObject"},
		bucketARN:                             {"s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"},
		bucketARN + "/athena-results/*":       {"s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LakeReaderPolicy actions by resource (-want +got):\n%s", diff)
	}

	// The functions' roles gain nothing: no Glue, no Athena, nothing on
	// athena-results/ (TestPolicies checks every grant they have).
	for _, f := range functions {
		b, _ := json.Marshal(dig(s.raw, "Resources", f.logicalID, "Properties", "Policies"))
		for _, word := range []string{"glue:", "athena:", "athena-results"} {
			if bytes.Contains(b, []byte(word)) {
				t.Errorf("%s's policies mention %s", f.logicalID, word)
			}
		}
	}

	off := load(t, map[string]any{"Lake": "disabled"})
	for id, res := range section(s.src, "Resources") {
		typ, _ := dig(res, "Type").(string)
		if strings.HasPrefix(typ, "AWS::Glue::") || strings.HasPrefix(typ, "AWS::Athena::") || id == "LakeReaderPolicy" {
			if c := dig(res, "Condition"); c != "CreateLake" {
				t.Errorf("%s (%s) has Condition %v, want CreateLake", id, typ, c)
			}
		}
	}
	cond, err := evalCondition(map[string]any{"Condition": "CreateLake"}, off.raw, 0)
	if err != nil || cond {
		t.Errorf("CreateLake with Lake=disabled = %v, %v; want false", cond, err)
	}
}

// metricsEmitted are the EMF metrics of namespace cebulk the code writes, by
// the Function dimension's value.
var metricsEmitted = map[string][]string{
	"export": exporter.MetricNames,
	"import": importer.MetricNames,
}

// TestFreshnessAlarm checks the freshness alarm: on the metric the exporter
// emits, at the FreshnessAlarmHours threshold, missing data breaching, and
// turned off by 0.
func TestFreshnessAlarm(t *testing.T) {
	for _, v := range variants {
		s := load(t, v.overrides)
		a, err := s.cf.GetCloudWatchAlarmWithName("FreshnessAlarm")
		if err != nil {
			t.Fatalf("%s: FreshnessAlarm: %v", v.name, err)
		}
		dims := map[string]string{}
		for _, d := range a.Dimensions {
			dims[d.Name] = d.Value
		}
		if deref(a.Namespace) != "cebulk" || deref(a.MetricName) != exporter.MetricWatermarkAgeHours || !slices.Contains(metricsEmitted["export"], deref(a.MetricName)) {
			t.Errorf("FreshnessAlarm watches %s/%s, want cebulk/%s", deref(a.Namespace), deref(a.MetricName), exporter.MetricWatermarkAgeHours)
		}
		if diff := cmp.Diff(map[string]string{"Function": "export", "Object": "activities"}, dims); diff != "" {
			t.Errorf("FreshnessAlarm dimensions (-want +got):\n%s", diff)
		}
		if a.Threshold == nil || *a.Threshold != float64(paramInt(t, s, "FreshnessAlarmHours")) || paramInt(t, s, "FreshnessAlarmHours") != 30 {
			t.Errorf("FreshnessAlarm threshold = %v, want the FreshnessAlarmHours parameter (default 30)", a.Threshold)
		}
		if a.ComparisonOperator != "GreaterThanThreshold" || deref(a.Statistic) != "Maximum" || deref(a.TreatMissingData) != "breaching" {
			t.Errorf("FreshnessAlarm = %s %s, missing data %s; want Maximum GreaterThanThreshold, breaching", deref(a.Statistic), a.ComparisonOperator, deref(a.TreatMissingData))
		}
		if diff := cmp.Diff(v.actions, a.AlarmActions); diff != "" {
			t.Errorf("%s: FreshnessAlarm AlarmActions (-want +got):\n%s", v.name, diff)
		}
	}
	// CloudFormation passes parameters as strings (goformation cannot read
	// the alarm's Threshold as one, so the condition is evaluated on the
	// template as written, with the parameter's value set).
	off := load(t, nil)
	section(off.src, "Parameters")["FreshnessAlarmHours"].(map[string]any)["Default"] = "0"
	if c, err := evalCondition(map[string]any{"Condition": "HasFreshnessAlarm"}, off.src, 0); err != nil || c {
		t.Errorf("HasFreshnessAlarm with FreshnessAlarmHours=0 = %v, %v; want false", c, err)
	}
	if c := dig(off.src, "Resources", "FreshnessAlarm", "Condition"); c != "HasFreshnessAlarm" {
		t.Errorf("FreshnessAlarm Condition = %v, want HasFreshnessAlarm", c)
	}
}

// TestDashboard reads the dashboard's body and checks its widgets: every
// cebulk metric on it is one the code emits, and it shows freshness,
// records exported and imported per day, failures, budget, Lambda errors
// and durations, and the failure queue's depth.
func TestDashboard(t *testing.T) {
	s := load(t, nil)
	body, _ := dig(s.raw, "Resources", "Dashboard", "Properties", "DashboardBody").(string)
	var d struct {
		Widgets []struct {
			Type       string
			Properties struct {
				Title   string
				Region  string
				Period  int
				Metrics [][]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("DashboardBody is not JSON: %v\n%s", err, body)
	}
	seen := map[string]bool{} // "namespace metric dimension=value…"
	for _, w := range d.Widgets {
		if w.Properties.Region != testRegion {
			t.Errorf("widget %q region = %q, want the stack's", w.Properties.Title, w.Properties.Region)
		}
		for _, m := range w.Properties.Metrics {
			var parts []string
			for _, e := range m {
				if s, ok := e.(string); ok {
					parts = append(parts, s)
				}
			}
			if len(parts) < 2 || len(parts)%2 != 0 {
				t.Errorf("widget %q metric %v: want namespace, name and dimension pairs", w.Properties.Title, m)
				continue
			}
			key := parts[0] + " " + parts[1]
			for i := 2; i < len(parts); i += 2 {
				key += " " + parts[i] + "=" + parts[i+1]
			}
			seen[key] = true
			if parts[0] == "cebulk" {
				fn := ""
				if len(parts) >= 4 && parts[2] == "Function" {
					fn = parts[3]
				}
				if !slices.Contains(metricsEmitted[fn], parts[1]) {
					t.Errorf("widget %q shows cebulk %s for Function=%q, which the code does not emit", w.Properties.Title, parts[1], fn)
				}
			}
		}
	}
	var want []string
	for _, o := range []string{"activities"} {
		want = append(want, "cebulk WatermarkAgeHours Function=export Object="+o, "cebulk DaysPending Function=export Object="+o)
	}
	for _, o := range []string{"activities", "users"} {
		want = append(want, "cebulk RecordsPublished Function=export Object="+o,
			"cebulk RowsSent Function=import Object="+o, "cebulk RowsRejected Function=import Object="+o, "cebulk RowsCERejected Function=import Object="+o)
	}
	want = append(want, "cebulk JobsFailed Function=export", "cebulk JobsFailed Function=import", "cebulk BudgetLeft Function=export",
		"AWS/SQS ApproximateNumberOfMessagesVisible QueueName=FailureQueue.QueueName")
	for _, f := range functions {
		want = append(want, "AWS/Lambda Errors FunctionName="+f.logicalID, "AWS/Lambda Duration FunctionName="+f.logicalID)
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("dashboard lacks %s", w)
		}
	}
	if got := dig(s.raw, "Resources", "Dashboard", "Properties", "DashboardName"); got != testStack+"-pipeline" {
		t.Errorf("DashboardName = %v, want %s-pipeline", got, testStack)
	}
}
