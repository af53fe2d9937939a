package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

// withRequired builds a config object holding the required keys plus extra
// (a comma-free-at-the-ends list of JSON members).
func withRequired(extra string) string {
	s := `{"host":"db.example.com","user":"tap","dbname":"app"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// problems splits an errors.Join result into its parts.
func problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func mustParse(t *testing.T, in string) (Config, []string) {
	t.Helper()
	c, w, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse(%s): unexpected error: %v", in, err)
	}
	return c, w
}

func TestDefaults(t *testing.T) {
	c, w := mustParse(t, withRequired(""))
	if len(w) != 0 {
		t.Errorf("warnings = %q, want none", w)
	}
	want := Config{
		Host:                  "db.example.com",
		Port:                  5432,
		User:                  "tap",
		DBName:                "app",
		SSLMode:               "prefer",
		ConnectTimeout:        30 * time.Second,
		LogicalPollTotal:      1800 * time.Second,
		BreakAtEndLSN:         true,
		MaxRun:                43200 * time.Second,
		StateInterval:         5 * time.Second,
		MaxRowBytes:           256 << 20,
		SlotWALWarnBytes:      10 << 30,
		MaxParallelStreams:    1,
		IterSize:              20000,
		Wal2jsonMessageFormat: 2,
		ApplicationName:       "tap-postgres",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse defaults:\n got %+v\nwant %+v", c, want)
	}
}

// Null and empty strings must mean "default", since orchestrators often send
// every known key with an empty or null value.
func TestNullAndEmptyMeanDefault(t *testing.T) {
	in := withRequired(`"port":null,"sslmode":"","application_name":"","connect_timeout":null,` +
		`"break_at_end_lsn":null,"ssh_tunnel":null,"filter_dbs":null,"itersize":null,"password":null`)
	c, _ := mustParse(t, in)
	d, _ := mustParse(t, withRequired(""))
	if !reflect.DeepEqual(c, d) {
		t.Errorf("null/empty values:\n got %+v\nwant %+v", c, d)
	}
}

func TestStringAndNativeForms(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		check func(Config) bool
	}{
		{"port native", `"port":6543`, func(c Config) bool { return c.Port == 6543 }},
		{"port string", `"port":"6543"`, func(c Config) bool { return c.Port == 6543 }},
		{"port string spaces", `"port":" 6543 "`, func(c Config) bool { return c.Port == 6543 }},
		{"itersize native", `"itersize":500`, func(c Config) bool { return c.IterSize == 500 }},
		{"itersize string", `"itersize":"500"`, func(c Config) bool { return c.IterSize == 500 }},
		{"max_parallel_streams string", `"max_parallel_streams":"4"`, func(c Config) bool { return c.MaxParallelStreams == 4 }},
		{"wal2json native", `"wal2json_message_format":1`, func(c Config) bool { return c.Wal2jsonMessageFormat == 1 }},
		{"wal2json string", `"wal2json_message_format":"1"`, func(c Config) bool { return c.Wal2jsonMessageFormat == 1 }},
		{"connect_timeout native", `"connect_timeout":5`, func(c Config) bool { return c.ConnectTimeout == 5*time.Second }},
		{"connect_timeout string", `"connect_timeout":"5"`, func(c Config) bool { return c.ConnectTimeout == 5*time.Second }},
		{"logical_poll_total_seconds", `"logical_poll_total_seconds":"60"`, func(c Config) bool { return c.LogicalPollTotal == time.Minute }},
		{"max_run_seconds", `"max_run_seconds":3600`, func(c Config) bool { return c.MaxRun == time.Hour }},
		{"state_interval_seconds", `"state_interval_seconds":0`, func(c Config) bool { return c.StateInterval == 0 }},
		{"max_row_bytes", `"max_row_bytes":1048576`, func(c Config) bool { return c.MaxRowBytes == 1<<20 }},
		{"bool native true", `"debug_lsn":true`, func(c Config) bool { return c.DebugLSN }},
		{"bool string true", `"debug_lsn":"true"`, func(c Config) bool { return c.DebugLSN }},
		{"bool string True", `"debug_lsn":"True"`, func(c Config) bool { return c.DebugLSN }},
		{"bool string TRUE", `"json_as_object":"TRUE"`, func(c Config) bool { return c.JSONAsObject }},
		{"bool string 1", `"json_as_object":"1"`, func(c Config) bool { return c.JSONAsObject }},
		{"bool number 1", `"json_as_object":1`, func(c Config) bool { return c.JSONAsObject }},
		{"bool native false", `"break_at_end_lsn":false`, func(c Config) bool { return !c.BreakAtEndLSN }},
		{"bool string false", `"break_at_end_lsn":"false"`, func(c Config) bool { return !c.BreakAtEndLSN }},
		{"bool string FALSE", `"break_at_end_lsn":"FALSE"`, func(c Config) bool { return !c.BreakAtEndLSN }},
		{"bool string 0", `"break_at_end_lsn":"0"`, func(c Config) bool { return !c.BreakAtEndLSN }},
		{"include_schemas", `"include_schemas_in_destination_stream_name":"true"`, func(c Config) bool { return c.IncludeSchemasInDestinationStreamName }},
		{"numeric dbname", `"dbname":12345`, func(c Config) bool { return c.DBName == "12345" }},
		{"numeric password", `"password":12345`, func(c Config) bool { return c.Password.Reveal() == "12345" }},
		{"string password", `"password":"s3cret"`, func(c Config) bool { return c.Password.Reveal() == "s3cret" }},
		{"replication lower", `"default_replication_method":"log_based"`, func(c Config) bool { return c.DefaultReplicationMethod == "LOG_BASED" }},
		{"replication mixed", `"default_replication_method":"Full_Table"`, func(c Config) bool { return c.DefaultReplicationMethod == "FULL_TABLE" }},
		{"replication upper", `"default_replication_method":"INCREMENTAL"`, func(c Config) bool { return c.DefaultReplicationMethod == "INCREMENTAL" }},
		{"sslmode upper", `"sslmode":"VERIFY-FULL"`, func(c Config) bool { return c.SSLMode == "verify-full" }},
		{"ssl files", `"sslrootcert":"/ca.pem","sslcert":"/c.pem","sslkey":"/k.pem"`, func(c Config) bool {
			return c.SSLRootCert == "/ca.pem" && c.SSLCert == "/c.pem" && c.SSLKey == "/k.pem"
		}},
		{"slot_name", `"slot_name":"tap_{dbname}"`, func(c Config) bool { return c.SlotName == "tap_{dbname}" }},
		{"application_name", `"application_name":"etl"`, func(c Config) bool { return c.ApplicationName == "etl" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w := mustParse(t, withRequired(tt.extra))
			if len(w) != 0 {
				t.Errorf("warnings = %q", w)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestDecodeAndValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		key  string // the key the single error must name
		want string // a further fragment of the error
	}{
		{"missing host", `{"user":"u","dbname":"d"}`, "host", "required"},
		{"empty host", `{"host":"","user":"u","dbname":"d"}`, "host", "required"},
		{"missing user", `{"host":"h","dbname":"d"}`, "user", "required"},
		{"null user", `{"host":"h","user":null,"dbname":"d"}`, "user", "required"},
		{"missing dbname", `{"host":"h","user":"u"}`, "dbname", "required"},
		{"host object", `{"host":{"a":1},"user":"u","dbname":"d"}`, "host", "must be a string"},
		{"host bool", `{"host":true,"user":"u","dbname":"d"}`, "host", "must be a string"},
		{"host array", `{"host":["h"],"user":"u","dbname":"d"}`, "host", "must be a string"},
		{"port text", withRequired(`"port":"abc"`), "port", `"abc" is not an integer`},
		{"port fraction", withRequired(`"port":5432.5`), "port", "not an integer"},
		{"port bool", withRequired(`"port":true`), "port", "not an integer"},
		{"port empty", withRequired(`"port":""`), "port", "not an integer"},
		{"port huge", withRequired(`"port":"99999999999999999999999"`), "port", "out of range"},
		{"port zero", withRequired(`"port":0`), "port", "out of range 1..65535"},
		{"port too big", withRequired(`"port":"65536"`), "port", "out of range 1..65535"},
		{"port negative", withRequired(`"port":-1`), "port", "out of range 1..65535"},
		{"sslmode bad", withRequired(`"sslmode":"allow"`), "sslmode", `"allow" is not one of`},
		{"sslmode object", withRequired(`"sslmode":{}`), "sslmode", "must be a string"},
		{"ssl bad", withRequired(`"ssl":"maybe"`), "ssl", `"maybe" is not a boolean`},
		{"ssl yes", withRequired(`"ssl":"yes"`), "ssl", "not a boolean"},
		{"ssl true + disable", withRequired(`"ssl":true,"sslmode":"disable"`), "ssl", "disable"},
		{"ssl string true + disable", withRequired(`"ssl":"true","sslmode":"DISABLE"`), "ssl", "disable"},
		{"connect_timeout zero", withRequired(`"connect_timeout":0`), "connect_timeout", "greater than 0"},
		{"connect_timeout negative", withRequired(`"connect_timeout":"-3"`), "connect_timeout", "greater than 0"},
		{"connect_timeout text", withRequired(`"connect_timeout":"soon"`), "connect_timeout", "not an integer"},
		{"connect_timeout overflow", withRequired(`"connect_timeout":9999999999999`), "connect_timeout", "out of range"},
		{"logical_poll zero", withRequired(`"logical_poll_total_seconds":0`), "logical_poll_total_seconds", "greater than 0"},
		{"max_run zero", withRequired(`"max_run_seconds":"0"`), "max_run_seconds", "greater than 0"},
		{"state_interval negative", withRequired(`"state_interval_seconds":-1`), "state_interval_seconds", "cannot be negative"},
		{"max_row_bytes small", withRequired(`"max_row_bytes":1000`), "max_row_bytes", "must be at least 1048576"},
		{"slot_wal_warn_bytes negative", withRequired(`"slot_wal_warn_bytes":-1`), "slot_wal_warn_bytes", "cannot be negative"},
		{"max_parallel zero", withRequired(`"max_parallel_streams":0`), "max_parallel_streams", "at least 1"},
		{"itersize zero", withRequired(`"itersize":"0"`), "itersize", "at least 1"},
		{"itersize float", withRequired(`"itersize":1e3`), "itersize", "not an integer"},
		{"wal2json 3", withRequired(`"wal2json_message_format":3`), "wal2json_message_format", "1 or 2"},
		{"replication bad", withRequired(`"default_replication_method":"CDC"`), "default_replication_method", `"CDC" is not one of`},
		{"debug_lsn bad", withRequired(`"debug_lsn":"on"`), "debug_lsn", "not a boolean"},
		{"break_at_end_lsn number", withRequired(`"break_at_end_lsn":2`), "break_at_end_lsn", "not a boolean"},
		{"json_as_object array", withRequired(`"json_as_object":[]`), "json_as_object", "not a boolean"},
		{"filter_dbs object", withRequired(`"filter_dbs":{"a":1}`), "filter_dbs", "comma-separated"},
		{"filter_schemas bad element", withRequired(`"filter_schemas":["a",{}]`), "filter_schemas", "element 1"},
		{"ssh_tunnel array", withRequired(`"ssh_tunnel":[1]`), "ssh_tunnel", "must be an object"},
		{"ssh_tunnel true", withRequired(`"ssh_tunnel":true`), "ssh_tunnel", "must be an object"},
		{"ssh_tunnel bad string", withRequired(`"ssh_tunnel":"{not json"`), "ssh_tunnel", "must be an object"},
		{"ssh no host", withRequired(`"ssh_tunnel":{"username":"u","password":"p","known_hosts":"k"}`), "ssh_tunnel.host", "required"},
		{"ssh no username", withRequired(`"ssh_tunnel":{"host":"b","password":"p","known_hosts":"k"}`), "ssh_tunnel.username", "required"},
		{"ssh no auth", withRequired(`"ssh_tunnel":{"host":"b","username":"u","known_hosts":"k"}`), "ssh_tunnel", "password or private_key"},
		{"ssh no host check", withRequired(`"ssh_tunnel":{"host":"b","username":"u","password":"p"}`), "ssh_tunnel", "known_hosts or host_key_fingerprint"},
		{"ssh bad fingerprint", withRequired(`"ssh_tunnel":{"host":"b","username":"u","password":"p","host_key_fingerprint":"MD5:aa:bb"}`), "ssh_tunnel.host_key_fingerprint", "SHA256:"},
		{"ssh empty fingerprint body", withRequired(`"ssh_tunnel":{"host":"b","username":"u","password":"p","host_key_fingerprint":"SHA256:"}`), "ssh_tunnel.host_key_fingerprint", "SHA256:"},
		{"ssh port", withRequired(`"ssh_tunnel":{"host":"b","port":"70000","username":"u","password":"p","known_hosts":"k"}`), "ssh_tunnel.port", "out of range"},
		{"ssh port text", withRequired(`"ssh_tunnel":{"host":"b","port":"ssh","username":"u","password":"p","known_hosts":"k"}`), "ssh_tunnel.port", "not an integer"},
		{"ssh host number ok but username bool", withRequired(`"ssh_tunnel":{"host":"b","username":false,"password":"p","known_hosts":"k"}`), "ssh_tunnel.username", "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.in))
			ps := problems(err)
			if len(ps) != 1 {
				t.Fatalf("Parse(%s): got %d problems, want 1: %v", tt.in, len(ps), err)
			}
			msg := ps[0].Error()
			if !strings.HasPrefix(msg, fmt.Sprintf("config key %q: ", tt.key)) {
				t.Errorf("error %q does not name key %q", msg, tt.key)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
		})
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	in := `{"port":"abc","sslmode":"bogus","user":"u","itersize":0,"wal2json_message_format":"x",` +
		`"ssh_tunnel":{"port":0},"zzz":1}`
	_, w, err := Parse([]byte(in))
	wantKeys := []string{"host", "dbname", "port", "sslmode", "itersize", "wal2json_message_format",
		"ssh_tunnel.host", "ssh_tunnel.port", "ssh_tunnel.username", "ssh_tunnel"}
	ps := problems(err)
	got := map[string]int{}
	for _, p := range ps {
		var ke *keyError
		if !errors.As(p, &ke) {
			t.Fatalf("problem %v is not a keyError", p)
		}
		got[ke.key]++
	}
	for _, k := range wantKeys {
		if got[k] == 0 {
			t.Errorf("no problem reported for key %q; all: %v", k, err)
		}
	}
	// Two tunnel-level problems (auth and host-key check), one for each other key.
	if len(ps) != len(wantKeys)+1 {
		t.Errorf("got %d problems, want %d: %v", len(ps), len(wantKeys)+1, err)
	}
	if len(w) != 1 || w[0] != `unknown config key "zzz" ignored` {
		t.Errorf("warnings = %q", w)
	}
}

// A key that failed to decode is reported once, not again by validation.
func TestBadKeyReportedOnce(t *testing.T) {
	_, _, err := Parse([]byte(`{"host":[],"user":"u","dbname":"d"}`))
	if ps := problems(err); len(ps) != 1 {
		t.Errorf("got %d problems, want 1: %v", len(ps), err)
	}
}

func TestUnknownKeysWarned(t *testing.T) {
	in := withRequired(`"foo":1,"Password":"x","bar":null,` +
		`"ssh_tunnel":{"host":"b","username":"u","password":"p","known_hosts":"k","jump":"j"}`)
	c, w := mustParse(t, in)
	want := []string{
		`unknown config key "Password" ignored`,
		`unknown config key "bar" ignored`,
		`unknown config key "foo" ignored`,
		`unknown config key "ssh_tunnel.jump" ignored`,
	}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("warnings = %q, want %q", w, want)
	}
	if c.Password != "" {
		t.Errorf("misspelled key must not set Password")
	}
	long := strings.Repeat("k", 500)
	_, w, _ = Parse([]byte(withRequired(`"` + long + `":1`)))
	if len(w) != 1 || len(w[0]) > 100 {
		t.Errorf("long unknown key not truncated: %q", w)
	}
}

func TestSSL(t *testing.T) {
	tests := []struct {
		extra   string
		want    string
		wantErr bool
	}{
		{``, "prefer", false},
		{`"ssl":true`, "require", false},
		{`"ssl":"true"`, "require", false},
		{`"ssl":"True"`, "require", false},
		{`"ssl":false`, "prefer", false},
		{`"ssl":"false"`, "prefer", false},
		{`"ssl":null`, "prefer", false},
		{`"sslmode":"disable"`, "disable", false},
		{`"ssl":false,"sslmode":"disable"`, "disable", false},
		{`"ssl":true,"sslmode":"verify-full"`, "verify-full", false},
		{`"ssl":true,"sslmode":"verify-ca"`, "verify-ca", false},
		{`"ssl":true,"sslmode":"prefer"`, "prefer", false},
		{`"ssl":true,"sslmode":""`, "require", false},
		{`"ssl":true,"sslmode":null`, "require", false},
		{`"ssl":true,"sslmode":"disable"`, "disable", true},
	}
	for _, tt := range tests {
		t.Run(tt.extra, func(t *testing.T) {
			c, _, err := Parse([]byte(withRequired(tt.extra)))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if c.SSLMode != tt.want {
				t.Errorf("SSLMode = %q, want %q", c.SSLMode, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), `config key "ssl"`) {
				t.Errorf("error %q does not name ssl", err)
			}
			// Validate must agree with Parse on the parsed config.
			if verr := c.Validate(); (verr != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", verr, tt.wantErr)
			}
		})
	}
}

func TestFilterLists(t *testing.T) {
	tests := []struct {
		value string
		want  []string
	}{
		{`"a, b"`, []string{"a", "b"}},
		{`"a,b,,c"`, []string{"a", "b", "c"}},
		{`" a ,  b  , "`, []string{"a", "b"}},
		{`"single"`, []string{"single"}},
		{`""`, nil},
		{`" , , "`, nil},
		{`null`, nil},
		{`["a"," b ",""]`, []string{"a", "b"}},
		{`[]`, nil},
		{`[1,"x"]`, []string{"1", "x"}},
		{`42`, []string{"42"}},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, _ := mustParse(t, withRequired(`"filter_dbs":`+tt.value+`,"filter_schemas":`+tt.value))
			if !reflect.DeepEqual(c.FilterDBs, tt.want) {
				t.Errorf("FilterDBs = %#v, want %#v", c.FilterDBs, tt.want)
			}
			if !reflect.DeepEqual(c.FilterSchemas, tt.want) {
				t.Errorf("FilterSchemas = %#v, want %#v", c.FilterSchemas, tt.want)
			}
		})
	}
}

func TestSSHTunnel(t *testing.T) {
	const pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
	full := &SSHTunnel{
		Host: "bastion", Port: 2222, Username: "jump",
		PrivateKey: pem, Passphrase: "pp",
		HostKeyFingerprint: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
	}
	fullJSON := `{"host":"bastion","port":"2222","username":"jump","private_key":` + jsonString(pem) +
		`,"passphrase":"pp","host_key_fingerprint":"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"}`
	tests := []struct {
		name  string
		value string
		want  *SSHTunnel
	}{
		{"absent", ``, nil},
		{"null", `null`, nil},
		{"false", `false`, nil},
		{"string false", `"false"`, nil},
		{"empty string", `""`, nil},
		{"zero", `0`, nil},
		{"full", fullJSON, full},
		{"full as a string", jsonString(fullJSON), full},
		{"password and known_hosts, default port", `{"host":"b","username":"u","password":"pw","known_hosts":"~/.ssh/known_hosts"}`,
			&SSHTunnel{Host: "b", Port: 22, Username: "u", Password: "pw", KnownHosts: "~/.ssh/known_hosts"}},
		{"null port means default", `{"host":"b","port":null,"username":"u","private_key":"/k","known_hosts":"k"}`,
			&SSHTunnel{Host: "b", Port: 22, Username: "u", PrivateKey: "/k", KnownHosts: "k"}},
		{"native port", `{"host":"b","port":2200,"username":"u","private_key":"/k","known_hosts":"k"}`,
			&SSHTunnel{Host: "b", Port: 2200, Username: "u", PrivateKey: "/k", KnownHosts: "k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := ""
			if tt.value != "" {
				extra = `"ssh_tunnel":` + tt.value
			}
			c, w := mustParse(t, withRequired(extra))
			if len(w) != 0 {
				t.Errorf("warnings = %q", w)
			}
			if !reflect.DeepEqual(c.SSHTunnel, tt.want) {
				t.Errorf("SSHTunnel = %+v, want %+v", c.SSHTunnel, tt.want)
			}
		})
	}
}

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestNotObject(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{``, "empty"},
		{`   `, "empty"},
		{`null`, "got JSON null"},
		{`[1,2]`, "got JSON array"},
		{`"hunter2-password"`, "got JSON string"},
		{`42`, "got JSON number"},
		{`true`, "got JSON boolean"},
		{`{"password":"hunter2-password"`, "ends unexpectedly"},
		{`{"password":"hunter2-password",}`, "line 1, column 32"},
		{"{\n\"password\": hunter2-password}", "line 2, column 13"},
		{`{"password":"hunter2-password"} trailing`, "invalid JSON"},
		{"\xff\xfe", "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, w, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if len(problems(err)) != 1 || len(w) != 0 {
				t.Errorf("want exactly one error and no warnings, got %v / %q", err, w)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config is not a JSON object") {
				t.Errorf("error %q does not say the config is not a JSON object", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			if strings.Contains(msg, "hunter2") || strings.Contains(msg, "trailing") {
				t.Errorf("error %q echoes the input", msg)
			}
		})
	}
}

func TestSecretFormatting(t *testing.T) {
	s := Secret("hunter2")
	if s.Reveal() != "hunter2" {
		t.Fatalf("Reveal() = %q", s.Reveal())
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-5v", "%T"} {
		out := fmt.Sprintf(verb, s)
		if strings.Contains(out, "hunter2") || strings.Contains(out, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("%s reveals the secret: %q", verb, out)
		}
	}
	if s.String() != "[redacted]" || s.GoString() != "[redacted]" {
		t.Errorf("String/GoString = %q/%q", s.String(), s.GoString())
	}
	b, err := json.Marshal(struct{ P Secret }{s})
	if err != nil || string(b) != `{"P":"[redacted]"}` {
		t.Errorf("json.Marshal = %s, %v", b, err)
	}
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "pw", s)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "pw", s)
	if strings.Contains(logs.String(), "hunter2") {
		t.Errorf("slog reveals the secret: %s", logs.String())
	}
}

func TestSecretsNeverRevealed(t *testing.T) {
	const pw, sshpw, key, phrase = "TopSecretPw-1", "TopSecretSsh-2", "TopSecretKey-3", "TopSecretPhrase-4"
	secrets := []string{pw, sshpw, key, phrase}
	inputs := []string{
		// Valid secrets in a config that has other problems.
		`{"host":"h","port":"bad","password":"` + pw + `","ssh_tunnel":{"host":"b","username":"u","password":"` + sshpw +
			`","private_key":"` + key + `","passphrase":"` + phrase + `","port":"x"}}`,
		// Secrets of the wrong type.
		`{"password":{"v":"` + pw + `"},"ssh_tunnel":{"password":["` + sshpw + `"],"private_key":{"k":"` + key +
			`"},"passphrase":[{"p":"` + phrase + `"}]}}`,
		`{"password":["` + pw + `"]}`,
		// A tunnel that is not an object, or a string that is not one.
		`{"ssh_tunnel":["` + sshpw + `"]}`,
		`{"ssh_tunnel":"` + sshpw + `"}`,
		`{"ssh_tunnel":"{\"password\":\"` + sshpw + `\""}`,
		`{"ssh_tunnel":{"password":"` + sshpw + `"}, "password":"` + pw + `", "Password":"` + key + `"}`,
		// Not an object at all.
		`"` + pw + `"`,
		`["` + pw + `"]`,
		`{"password":"` + pw + `"`,
		`{"password":` + pw + `}`,
		`{"password":"` + pw + `" "` + key + `"}`,
	}
	for i, in := range inputs {
		c, w, err := Parse([]byte(in))
		var out []string
		out = append(out, w...)
		if err != nil {
			out = append(out, err.Error())
		}
		if verr := c.Validate(); verr != nil {
			out = append(out, verr.Error())
		}
		// The verbs are looped over because vet rejects a literal %s of a struct.
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out = append(out, fmt.Sprintf(verb, c))
			if c.SSHTunnel != nil {
				out = append(out, fmt.Sprintf(verb, c.SSHTunnel), fmt.Sprintf(verb, *c.SSHTunnel))
			}
		}
		b, _ := json.Marshal(c)
		out = append(out, string(b))
		all := strings.Join(out, "\n")
		for _, s := range secrets {
			if strings.Contains(all, s) {
				t.Errorf("input %d: secret %q revealed in:\n%s", i, s, all)
			}
		}
	}

	// The secrets were actually decoded where they were valid.
	c, _, _ := Parse([]byte(inputs[0]))
	if c.Password.Reveal() != pw || c.SSHTunnel.Password.Reveal() != sshpw ||
		c.SSHTunnel.PrivateKey.Reveal() != key || c.SSHTunnel.Passphrase.Reveal() != phrase {
		t.Errorf("secrets not decoded")
	}
}

func TestValidateHandBuilt(t *testing.T) {
	c, _ := mustParse(t, withRequired(""))
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() on defaults = %v", err)
	}
	c.Port = 0
	c.SSLMode = "allow"
	c.DefaultReplicationMethod = "log_based" // Validate wants Parse's upper-case form
	c.ConnectTimeout = 0
	c.SSHTunnel = &SSHTunnel{Host: "b", Port: 22, Username: "u", Password: "p", HostKeyFingerprint: "SHA256:abc"}
	ps := problems(c.Validate())
	if len(ps) != 4 {
		t.Errorf("got %d problems, want 4: %v", len(ps), ps)
	}
	if ps := problems((Config{}).Validate()); len(ps) < 9 {
		t.Errorf("zero Config: got %d problems, want many: %v", len(ps), ps)
	}
}

func TestBadValueEchoTruncated(t *testing.T) {
	long := strings.Repeat("x", 1000)
	_, _, err := Parse([]byte(withRequired(`"sslmode":"` + long + `"`)))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("bad value not truncated: %v", err)
	}
}
