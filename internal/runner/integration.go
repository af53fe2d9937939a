// Package runner is Stitch's job around the tap (README, "Runner"): integration
// files, jobs that extract with the engine and load into a destination,
// committed state, job history and extraction logs. It drives the engine
// through the same config and catalog a Singer user gives the tap.
package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/tap-postgres/tap-postgres/internal/config"
	"github.com/tap-postgres/tap-postgres/internal/engine"
	"github.com/tap-postgres/tap-postgres/internal/logging"
	"github.com/tap-postgres/tap-postgres/internal/schedule"
)

// Integration is one integration file.
type Integration struct {
	Name string `yaml:"name"`
	// ID keys the integration's store; by default the destination schema
	// name. Set it to have a rename refused rather than start afresh.
	ID string `yaml:"id"`
	// Connection holds the tap's config keys; `${VAR}` in a value is read
	// from the environment, so secrets need not sit in the file.
	Connection               map[string]any  `yaml:"connection"`
	DefaultReplicationMethod string          `yaml:"default_replication_method"`
	SelectAll                bool            `yaml:"select_all"`
	Tables                   []Selection     `yaml:"tables"`
	Schedule                 schedule.Spec   `yaml:"schedule"`
	Destination              DestinationSpec `yaml:"destination"`

	// config is Connection decoded and checked as the tap would.
	config config.Config
	// warnings are what the tap would warn of (unknown keys), logged by
	// every job and check.
	warnings []string
}

// Selection picks one table.
type Selection struct {
	Database          string   `yaml:"database"`
	Schema            string   `yaml:"schema"`
	Table             string   `yaml:"table"`
	ReplicationMethod string   `yaml:"replication_method"`
	ReplicationKey    string   `yaml:"replication_key"`
	ViewKey           []string `yaml:"view_key"`
	// Columns, when given, are the only non-key columns synced.
	Columns []string `yaml:"columns"`
}

// DestinationSpec says where jobs load.
type DestinationSpec struct {
	// Type is postgres, jsonl or singer.
	Type string `yaml:"type"`
	// Path is the jsonl destination's directory.
	Path string `yaml:"path"`
	// DSN names the postgres destination's database (`${VAR}` read from
	// the environment); tables go to the schema named after the integration.
	DSN string `yaml:"dsn"`
	// Command is the singer target's program and arguments.
	Command []string `yaml:"command"`
	// Env is what the singer target finds in its environment besides the
	// runner's harmless variables (destination.TargetEnv): its own
	// secrets, `${VAR}` read from the runner's environment.
	Env map[string]string `yaml:"env"`
	// BatchRows and BatchSeconds bound what postgres and jsonl hold before
	// loading and committing (defaults 20000 rows, 60 s; and 64 MiB of records).
	BatchRows    int `yaml:"batch_rows"`
	BatchSeconds int `yaml:"batch_seconds"`

	dsn string
	env map[string]string
}

// LoadIntegration reads and checks an integration file; every problem is
// reported at once.
func LoadIntegration(path string) (*Integration, error) {
	data, err := readIntegrationFile(path)
	if err != nil {
		return nil, err
	}
	var in Integration
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var problems []error
	if err := dec.Decode(&in); err != nil {
		// Unknown keys and wrong types still leave the rest decoded, so
		// they are listed with every other problem; bad syntax is not.
		var typeErr *yaml.TypeError
		if !errors.As(err, &typeErr) {
			return nil, fmt.Errorf("integration file %s: %w", path, err)
		}
		for _, e := range typeErr.Errors {
			problems = append(problems, errors.New(e))
		}
	}
	problems = append(problems, in.validate())
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("integration file %s: %w", path, err)
	}
	return &in, nil
}

// maxIntegrationBytes bounds an integration file: thousands of selected
// tables fit, and a runaway file is refused before it is decoded.
const maxIntegrationBytes = 4 << 20

// maxNameChars bounds the integration's name, which every log line of its
// jobs and the destination schema derive from.
const maxNameChars = 200

func readIntegrationFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read integration file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIntegrationBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read integration file: %w", err)
	}
	if len(data) > maxIntegrationBytes {
		return nil, fmt.Errorf("integration file %s is larger than %d MiB: refused", path, maxIntegrationBytes>>20)
	}
	return data, nil
}

// clip quotes a value from the file for an error, cut when long: an error
// line must not grow with the input.
func clip(s string) string {
	const maxChars = 80
	if utf8.RuneCountInString(s) <= maxChars {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:maxChars])) + fmt.Sprintf("…(%d bytes)", len(s))
}

func (in *Integration) validate() error {
	var problems []error
	if strings.TrimSpace(in.Name) == "" {
		problems = append(problems, errors.New(`"name" is required`))
	}
	if n := utf8.RuneCountInString(in.Name); n > maxNameChars {
		problems = append(problems, fmt.Errorf(`"name" %s has %d characters; at most %d`, clip(in.Name), n, maxNameChars))
	}
	if in.ID != "" && !regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`).MatchString(in.ID) {
		problems = append(problems, fmt.Errorf(`"id" %s may hold only letters, digits, "_" and "-", at most 100`, clip(in.ID)))
	}
	conn, err := expandEnv(in.Connection)
	if err != nil {
		problems = append(problems, fmt.Errorf("connection: %w", err))
	}
	if in.DefaultReplicationMethod != "" {
		conn["default_replication_method"] = in.DefaultReplicationMethod
	} else if m, ok := conn["default_replication_method"].(string); ok {
		// Where a tap config keeps it.
		in.DefaultReplicationMethod = m
	}
	raw, err := json.Marshal(conn)
	if err != nil {
		problems = append(problems, fmt.Errorf("connection: %w", err))
	} else if cfg, warnings, err := config.Parse(raw); err != nil {
		problems = append(problems, fmt.Errorf("connection: %w", err))
	} else {
		in.config = cfg
		for _, w := range warnings {
			in.warnings = append(in.warnings, "connection: "+w)
		}
	}
	method := strings.ToUpper(in.DefaultReplicationMethod)
	if in.SelectAll && method != engine.MethodLogBased {
		problems = append(problems, errors.New(`"select_all" needs default_replication_method LOG_BASED (as Stitch)`))
	}
	if !in.SelectAll && len(in.Tables) == 0 {
		problems = append(problems, errors.New(`select tables under "tables" or set "select_all"`))
	}
	for i, t := range in.Tables {
		if t.Schema == "" || t.Table == "" {
			problems = append(problems, fmt.Errorf("tables[%d]: schema and table are required", i))
		}
		m := strings.ToUpper(t.ReplicationMethod)
		if m == "" {
			m = method
		}
		switch m {
		case engine.MethodFullTable, engine.MethodLogBased:
		case engine.MethodIncremental:
			if t.ReplicationKey == "" {
				problems = append(problems, fmt.Errorf("tables[%d] (%s.%s): INCREMENTAL needs replication_key", i, clip(t.Schema), clip(t.Table)))
			}
		case "":
			problems = append(problems, fmt.Errorf("tables[%d] (%s.%s): no replication_method and no default_replication_method", i, clip(t.Schema), clip(t.Table)))
		default:
			problems = append(problems, fmt.Errorf("tables[%d] (%s.%s): replication_method %s is not FULL_TABLE, INCREMENTAL or LOG_BASED", i, clip(t.Schema), clip(t.Table), clip(t.ReplicationMethod)))
		}
	}
	if in.Schedule != (schedule.Spec{}) {
		if _, err := schedule.Parse(in.Schedule); err != nil {
			problems = append(problems, err)
		}
	}
	problems = append(problems, in.Destination.validate()...)
	return errors.Join(problems...)
}

func (d *DestinationSpec) validate() []error {
	var problems []error
	switch d.Type {
	case "postgres":
		if d.DSN == "" {
			problems = append(problems, errors.New("destination: postgres needs a dsn"))
		}
		expanded, err := expandEnv(map[string]any{"dsn": d.DSN})
		if err != nil {
			problems = append(problems, fmt.Errorf("destination: %w", err))
		}
		d.dsn, _ = expanded["dsn"].(string)
	case "jsonl":
		if d.Path == "" {
			problems = append(problems, errors.New("destination: jsonl needs a path"))
		}
	case "singer":
		if len(d.Command) == 0 {
			problems = append(problems, errors.New("destination: singer needs a command (the target's program and arguments)"))
		}
		env := make(map[string]any, len(d.Env))
		for k, v := range d.Env {
			env[k] = v
		}
		expanded, err := expandEnv(env)
		if err != nil {
			problems = append(problems, fmt.Errorf("destination: env: %w", err))
		}
		d.env = make(map[string]string, len(expanded))
		for k, v := range expanded {
			if !envName.MatchString(k) {
				problems = append(problems, fmt.Errorf("destination: env: %s is not a variable name", clip(k)))
			}
			d.env[k], _ = v.(string)
		}
	case "":
		problems = append(problems, errors.New(`destination: "type" is required (postgres, jsonl or singer)`))
	default:
		problems = append(problems, fmt.Errorf("destination: type %s is not postgres, jsonl or singer", clip(d.Type)))
	}
	if len(d.Env) > 0 && d.Type != "singer" {
		problems = append(problems, errors.New("destination: env is for a singer target's command"))
	}
	if d.BatchRows < 0 || d.BatchSeconds < 0 {
		problems = append(problems, errors.New("destination: batch_rows and batch_seconds cannot be negative"))
	}
	return problems
}

// envName is an environment variable's name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandEnv replaces ${VAR} in string values, nested ones (ssh_tunnel)
// included; an unset variable is an error naming it (never its value).
func expandEnv(conn map[string]any) (map[string]any, error) {
	envReference := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	var problems []error
	var expand func(path string, v any) any
	expand = func(path string, v any) any {
		switch v := v.(type) {
		case string:
			return envReference.ReplaceAllStringFunc(v, func(ref string) string {
				name := envReference.FindStringSubmatch(ref)[1]
				val, set := os.LookupEnv(name)
				if !set {
					problems = append(problems, fmt.Errorf("key %q: environment variable %s is not set", path, name))
				}
				return val
			})
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, x := range v {
				out[k] = expand(strings.TrimPrefix(path+"."+k, "."), x)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, x := range v {
				out[i] = expand(fmt.Sprintf("%s[%d]", path, i), x)
			}
			return out
		}
		return v
	}
	out, _ := expand("", conn).(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	return out, errors.Join(problems...)
}

// StoreKey names the integration's state, history and logs in the store.
func (in *Integration) StoreKey() string {
	if in.ID != "" {
		return in.ID
	}
	return in.DestinationSchema()
}

// DestinationSchema is the name Stitch derives from the integration name:
// lowercased, other characters as underscores ("Aurora Prod" → aurora_prod).
func (in *Integration) DestinationSchema() string {
	var b strings.Builder
	for _, r := range strings.ToLower(in.Name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// oneLine keeps a joined error on one line, without control characters.
func oneLine(err error) string { return logging.Clean(err.Error()) }
