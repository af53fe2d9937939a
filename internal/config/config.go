// Package config decodes and validates the tap's JSON config (README, "Config").
//
// Singer configs are often written by UIs and orchestrators that send every
// value as a string, so each key accepts either a JSON string or its native
// JSON type. Decoding collects every problem instead of stopping at the first
// one, so a single failed run tells the operator everything that is wrong.
// Secret values (passwords, passphrases, private keys) are never echoed, not
// even when they have the wrong type, because error text ends up in logs.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const redacted = "[redacted]"

// Secret holds a password, passphrase or private key. Every way of printing
// or marshalling it yields "[redacted]"; only Reveal returns the value, so a
// leak needs an explicit, greppable call.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer without revealing the value.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer without revealing the value.
func (Secret) GoString() string { return redacted }

// Format covers every fmt verb, including %x and %q which would otherwise
// bypass String.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalJSON keeps the value out of JSON dumps of a Config.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// LogValue keeps the value out of slog output, whose handlers do not all go
// through fmt.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// fmt prints a value reached through a pointer with a verb it does not
// support (e.g. %s of a *SSHTunnel field) without calling any methods on the
// fields inside, which would bypass Secret's redaction. Config and SSHTunnel
// therefore format themselves through these method-less copies, whose Secret
// fields are still reached with methods enabled.
//
// fmt can never call methods on values reached through unexported fields, so
// a Config kept in an unexported field of another struct must not be printed
// with that struct.
type (
	plainConfig Config
	plainTunnel SSHTunnel
)

// Format prints the config as fmt would, with secrets redacted.
func (c Config) Format(f fmt.State, verb rune) {
	formatStruct(f, verb, "config.Config", plainConfig(c))
}

// Format prints the tunnel as fmt would, with secrets redacted.
func (t SSHTunnel) Format(f fmt.State, verb rune) {
	formatStruct(f, verb, "config.SSHTunnel", plainTunnel(t))
}

func formatStruct(f fmt.State, verb rune, name string, plain any) {
	s := fmt.Sprintf(fmt.FormatString(f, verb), plain)
	if verb == 'v' && f.Flag('#') {
		// Show the real type name rather than the method-less copy's.
		if i := strings.IndexByte(s, '{'); i >= 0 {
			s = name + s[i:]
		}
	}
	_, _ = io.WriteString(f, s)
}

// SSHTunnel is the optional ssh_tunnel object.
type SSHTunnel struct {
	Host     string
	Port     int // default 22
	Username string
	Password Secret
	// PrivateKey is PEM text or a file path, kept as given.
	PrivateKey Secret
	Passphrase Secret
	// KnownHosts is known_hosts text or a file path, kept as given.
	KnownHosts string
	// HostKeyFingerprint is "SHA256:..." as printed by ssh-keygen -l.
	HostKeyFingerprint string
}

// Config is the decoded config with defaults applied.
type Config struct {
	Host     string
	Port     int // default 5432
	User     string
	Password Secret
	DBName   string
	// FilterDBs and FilterSchemas are trimmed with empty entries dropped;
	// nil means all.
	FilterDBs     []string
	FilterSchemas []string
	// SSLMode is disable, prefer (default), require, verify-ca or
	// verify-full; the ssl switch is already folded in by Parse.
	SSLMode     string
	SSLRootCert string
	SSLCert     string
	SSLKey      string
	SSHTunnel   *SSHTunnel // nil when absent, null or false
	// ConnectTimeout is key connect_timeout, in seconds; default 30s.
	ConnectTimeout time.Duration
	// DefaultReplicationMethod is "", FULL_TABLE, INCREMENTAL or LOG_BASED.
	DefaultReplicationMethod              string
	IncludeSchemasInDestinationStreamName bool
	// LogicalPollTotal is key logical_poll_total_seconds; default 1800s.
	LogicalPollTotal time.Duration
	BreakAtEndLSN    bool // default true
	// MaxRun is key max_run_seconds; default 43200s.
	MaxRun time.Duration
	// MaxRowBytes is key max_row_bytes: the largest message a connection
	// takes from the server (a row as text, a change as the plugin sends
	// it); default 256 MiB.
	MaxRowBytes int
	// SlotWALWarnBytes is key slot_wal_warn_bytes: a slot holding more WAL
	// is warned of; default 10 GiB, 0 never.
	SlotWALWarnBytes int
	// StateInterval is key state_interval_seconds, the least time between
	// two STATE messages but the last; default 5s, 0 for every one.
	StateInterval         time.Duration
	MaxParallelStreams    int // default 1
	IterSize              int // key itersize; default 20000
	Wal2jsonMessageFormat int // default 2
	SlotName              string
	// PublicationName is the publication of pgoutput slots; default the
	// slot's name. {dbname} is replaced per database.
	PublicationName string
	DebugLSN        bool
	JSONAsObject    bool
	ApplicationName string // default "tap-postgres"

	// sslSwitch records `ssl: true` so that Validate can still report the
	// conflict with sslmode disable after Parse folded ssl into SSLMode.
	sslSwitch bool
}

const (
	defaultPort               = 5432
	defaultSSHPort            = 22
	defaultSSLMode            = "prefer"
	defaultConnectTimeout     = 30 * time.Second
	defaultLogicalPollTotal   = 1800 * time.Second
	defaultMaxRun             = 43200 * time.Second
	defaultStateInterval      = 5 * time.Second
	defaultMaxRowBytes        = 256 << 20
	defaultSlotWALWarnBytes   = 10 << 30
	minMaxRowBytes            = 1 << 20
	defaultMaxParallelStreams = 1
	defaultIterSize           = 20000
	defaultWal2jsonFormat     = 2
	defaultApplicationName    = "tap-postgres"

	// maxEcho bounds how much of a bad value is echoed, so a huge value
	// cannot flood the log.
	maxEcho = 40
)

func defaults() Config {
	return Config{
		Port:                  defaultPort,
		SSLMode:               defaultSSLMode,
		ConnectTimeout:        defaultConnectTimeout,
		LogicalPollTotal:      defaultLogicalPollTotal,
		BreakAtEndLSN:         true,
		MaxRun:                defaultMaxRun,
		StateInterval:         defaultStateInterval,
		MaxRowBytes:           defaultMaxRowBytes,
		SlotWALWarnBytes:      defaultSlotWALWarnBytes,
		MaxParallelStreams:    defaultMaxParallelStreams,
		IterSize:              defaultIterSize,
		Wal2jsonMessageFormat: defaultWal2jsonFormat,
		ApplicationName:       defaultApplicationName,
	}
}

func sslModes() []string {
	return []string{"disable", "prefer", "require", "verify-ca", "verify-full"}
}

// Replication methods, as catalogs, states and integration files spell them.
const (
	MethodFullTable   = "FULL_TABLE"
	MethodIncremental = "INCREMENTAL"
	MethodLogBased    = "LOG_BASED"
)

func replicationMethods() []string {
	return []string{MethodFullTable, MethodIncremental, MethodLogBased}
}

// Parse decodes a config JSON object. It returns the config with defaults
// applied, one warning per unknown key, and an error joining every problem
// found (decoding and Validate), each naming its key.
//
// A JSON null means "use the default", and so does an empty string for a key
// that holds a string. `ssl: true` is folded into SSLMode as "require" unless
// sslmode is given. When data is not a JSON object the config holds only the
// defaults and the error is the single problem reported.
func Parse(data []byte) (Config, []string, error) {
	c := defaults()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return c, nil, notObject(data, err)
	}

	d := &decoder{bad: map[string]bool{}}
	var ssl bool
	var sslmode string
	d.object("", top, []field{
		{"host", &c.Host},
		{"port", &c.Port},
		{"user", &c.User},
		{"password", &c.Password},
		{"dbname", &c.DBName},
		{"filter_dbs", &c.FilterDBs},
		{"filter_schemas", &c.FilterSchemas},
		{"ssl", &ssl},
		{"sslmode", &sslmode},
		{"sslrootcert", &c.SSLRootCert},
		{"sslcert", &c.SSLCert},
		{"sslkey", &c.SSLKey},
		{"ssh_tunnel", &c.SSHTunnel},
		{"connect_timeout", &c.ConnectTimeout},
		{"default_replication_method", &c.DefaultReplicationMethod},
		{"include_schemas_in_destination_stream_name", &c.IncludeSchemasInDestinationStreamName},
		{"logical_poll_total_seconds", &c.LogicalPollTotal},
		{"break_at_end_lsn", &c.BreakAtEndLSN},
		{"max_run_seconds", &c.MaxRun},
		{"state_interval_seconds", &c.StateInterval},
		{"max_row_bytes", &c.MaxRowBytes},
		{"slot_wal_warn_bytes", &c.SlotWALWarnBytes},
		{"max_parallel_streams", &c.MaxParallelStreams},
		{"itersize", &c.IterSize},
		{"wal2json_message_format", &c.Wal2jsonMessageFormat},
		{"slot_name", &c.SlotName},
		{"publication_name", &c.PublicationName},
		{"debug_lsn", &c.DebugLSN},
		{"json_as_object", &c.JSONAsObject},
		{"application_name", &c.ApplicationName},
	})

	// An explicit sslmode wins over the reference's ssl switch (README, "Config").
	c.sslSwitch = ssl
	switch {
	case strings.TrimSpace(sslmode) != "":
		c.SSLMode = strings.ToLower(strings.TrimSpace(sslmode))
	case ssl:
		c.SSLMode = "require"
	}
	c.DefaultReplicationMethod = strings.ToUpper(strings.TrimSpace(c.DefaultReplicationMethod))

	errs := d.errs
	for _, p := range c.problems() {
		// A key that failed to decode kept its default; reporting it again
		// (e.g. as "required") would only add noise.
		if !d.bad[p.key] && !slices.ContainsFunc(p.causes, func(k string) bool { return d.bad[k] }) {
			errs = append(errs, p)
		}
	}
	slices.Sort(d.warnings)
	return c, d.warnings, errors.Join(errs...)
}

// Validate returns every problem joined with errors.Join, nil if none.
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.problems() {
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// keyError is one problem with one key.
type keyError struct {
	key string
	msg string
	// causes are keys whose failed decoding would explain this problem.
	causes []string
}

func (e *keyError) Error() string { return fmt.Sprintf("config key %q: %s", e.key, e.msg) }

func (c Config) problems() []*keyError {
	var ps []*keyError
	add := func(key, format string, args ...any) *keyError {
		p := &keyError{key: key, msg: fmt.Sprintf(format, args...)}
		ps = append(ps, p)
		return p
	}
	required := func(key, v string) {
		if strings.TrimSpace(v) == "" {
			add(key, "is required")
		}
	}
	port := func(key string, v int) {
		if v < 1 || v > 65535 {
			add(key, "%d is out of range 1..65535", v)
		}
	}
	positive := func(key string, v time.Duration) {
		if v <= 0 {
			add(key, "must be greater than 0 seconds, got %v", v)
		}
	}
	atLeastOne := func(key string, v int) {
		if v < 1 {
			add(key, "must be at least 1, got %d", v)
		}
	}

	required("host", c.Host)
	port("port", c.Port)
	required("user", c.User)
	required("dbname", c.DBName)
	if !slices.Contains(sslModes(), c.SSLMode) {
		add("sslmode", "%s is not one of %s", echo(c.SSLMode), strings.Join(sslModes(), ", "))
	}
	if c.sslSwitch && c.SSLMode == "disable" {
		add("ssl", `ssl is true but sslmode is "disable"; drop one of them`)
	}
	positive("connect_timeout", c.ConnectTimeout)
	if c.DefaultReplicationMethod != "" && !slices.Contains(replicationMethods(), c.DefaultReplicationMethod) {
		add("default_replication_method", "%s is not one of %s",
			echo(c.DefaultReplicationMethod), strings.Join(replicationMethods(), ", "))
	}
	positive("logical_poll_total_seconds", c.LogicalPollTotal)
	positive("max_run_seconds", c.MaxRun)
	if c.StateInterval < 0 {
		add("state_interval_seconds", "cannot be negative")
	}
	if c.SlotWALWarnBytes < 0 {
		add("slot_wal_warn_bytes", "cannot be negative")
	}
	if c.MaxRowBytes < minMaxRowBytes {
		add("max_row_bytes", "must be at least %d (1 MiB), got %d", minMaxRowBytes, c.MaxRowBytes)
	}
	atLeastOne("max_parallel_streams", c.MaxParallelStreams)
	atLeastOne("itersize", c.IterSize)
	if c.Wal2jsonMessageFormat != 1 && c.Wal2jsonMessageFormat != 2 {
		add("wal2json_message_format", "must be 1 or 2, got %d", c.Wal2jsonMessageFormat)
	}

	if t := c.SSHTunnel; t != nil {
		required("ssh_tunnel.host", t.Host)
		port("ssh_tunnel.port", t.Port)
		required("ssh_tunnel.username", t.Username)
		if t.Password == "" && t.PrivateKey == "" {
			add("ssh_tunnel", "needs password or private_key").causes = []string{"ssh_tunnel.password", "ssh_tunnel.private_key"}
		}
		if strings.TrimSpace(t.KnownHosts) == "" && t.HostKeyFingerprint == "" {
			// Without either, the server's key could not be checked, and
			// an unchecked tunnel is refused rather than trusted.
			add("ssh_tunnel", "needs known_hosts or host_key_fingerprint to check the server's host key").causes =
				[]string{"ssh_tunnel.known_hosts", "ssh_tunnel.host_key_fingerprint"}
		}
		if fp := t.HostKeyFingerprint; fp != "" && (!strings.HasPrefix(fp, "SHA256:") || len(fp) == len("SHA256:")) {
			add("ssh_tunnel.host_key_fingerprint", `%s must be "SHA256:" followed by the base64 digest, as printed by ssh-keygen -l`, echo(fp))
		}
	}
	return ps
}

// notObject describes why data is not a JSON object using positions and
// JSON types only: json's own messages quote input characters, and the
// input may hold the password.
func notObject(data []byte, err error) error {
	const prefix = "config is not a JSON object"
	trimmed := bytes.Trim(data, " \t\r\n")
	if len(trimmed) == 0 {
		return fmt.Errorf("%s: input is empty", prefix)
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		if int(se.Offset) >= len(bytes.TrimRight(data, " \t\r\n")) {
			return fmt.Errorf("%s: JSON ends unexpectedly at %s", prefix, position(data, se.Offset))
		}
		return fmt.Errorf("%s: invalid JSON at %s", prefix, position(data, se.Offset))
	}
	return fmt.Errorf("%s: got JSON %s", prefix, jsonKind(trimmed))
}

// position turns a json.SyntaxError offset (bytes read when the error was
// found) into a line and column, which is what someone editing the file
// needs.
func position(data []byte, offset int64) string {
	n := min(max(int(offset)-1, 0), len(data))
	line := 1 + bytes.Count(data[:n], []byte("\n"))
	col := n - bytes.LastIndexByte(data[:n], '\n')
	return fmt.Sprintf("line %d, column %d (byte offset %d)", line, col, offset)
}

func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// echo quotes a non-secret bad value for an error message, truncated so a
// huge value cannot flood the log.
func echo(s string) string {
	if utf8.RuneCountInString(s) <= maxEcho {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:maxEcho])) + "…"
}

// field binds a config key to its destination; the destination's type picks
// the decoding rule, so the table is the single list of known keys.
type field struct {
	key string
	dst any
}

type decoder struct {
	errs     []error
	warnings []string
	bad      map[string]bool
}

func (d *decoder) fail(key, format string, args ...any) {
	d.bad[key] = true
	d.errs = append(d.errs, &keyError{key: key, msg: fmt.Sprintf(format, args...)})
}

// object decodes m into fields, naming keys with prefix, and warns about
// keys not in fields.
func (d *decoder) object(prefix string, m map[string]json.RawMessage, fields []field) {
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.key] = true
		raw, ok := m[f.key]
		raw = bytes.TrimSpace(raw)
		if !ok || len(raw) == 0 || string(raw) == "null" {
			continue
		}
		d.decode(prefix+f.key, raw, f.dst)
	}
	for k := range m {
		if !known[k] {
			d.warnings = append(d.warnings, fmt.Sprintf("unknown config key %s ignored", echo(prefix+k)))
		}
	}
}

func (d *decoder) decode(key string, raw json.RawMessage, dst any) {
	switch p := dst.(type) {
	case *string:
		if s, ok := d.str(key, raw, false); ok && s != "" {
			*p = s
		}
	case *Secret:
		if s, ok := d.str(key, raw, true); ok && s != "" {
			*p = Secret(s)
		}
	case *int:
		if n, ok := d.integer(key, raw); ok {
			*p = n
		}
	case *time.Duration:
		if n, ok := d.integer(key, raw); ok {
			// Durations in this config are always whole seconds.
			if int64(n) > math.MaxInt64/int64(time.Second) || int64(n) < math.MinInt64/int64(time.Second) {
				d.fail(key, "%s seconds is out of range", echo(strconv.Itoa(n)))
				return
			}
			*p = time.Duration(n) * time.Second
		}
	case *bool:
		if b, ok := d.boolean(key, raw); ok {
			*p = b
		}
	case *[]string:
		if l, ok := d.list(key, raw); ok {
			*p = l
		}
	case **SSHTunnel:
		*p = d.tunnel(key, raw)
	default:
		panic(fmt.Sprintf("config: no decoding rule for key %q (%T)", key, dst))
	}
}

// text returns the content of a JSON string, or the raw text of any other
// value, for the scalar parsers to judge.
func text(raw json.RawMessage) string {
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

func isNumber(raw json.RawMessage) bool {
	return raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')
}

// str accepts strings and numbers (a numeric dbname or password is still a
// name or a password); an empty string means the default.
func (d *decoder) str(key string, raw json.RawMessage, secret bool) (string, bool) {
	switch {
	case raw[0] == '"':
		return text(raw), true
	case isNumber(raw):
		return string(raw), true
	case secret:
		d.fail(key, "must be a string")
	default:
		d.fail(key, "must be a string, got %s", echo(string(raw)))
	}
	return "", false
}

func (d *decoder) integer(key string, raw json.RawMessage) (int, bool) {
	s := strings.TrimSpace(text(raw))
	n, err := strconv.Atoi(s)
	switch {
	case err == nil:
		return n, true
	case errors.Is(err, strconv.ErrRange):
		d.fail(key, "%s is out of range", echo(s))
	default:
		d.fail(key, "%s is not an integer", echo(s))
	}
	return 0, false
}

// boolean accepts true/false in any case and 1/0, as JSON values or
// strings; anything else is more likely a mistake than a choice.
func (d *decoder) boolean(key string, raw json.RawMessage) (bool, bool) {
	b, ok := parseBool(text(raw))
	if !ok {
		d.fail(key, "%s is not a boolean (want true or false)", echo(text(raw)))
	}
	return b, ok
}

func parseBool(s string) (value, ok bool) {
	s = strings.TrimSpace(s)
	switch {
	case strings.EqualFold(s, "true") || s == "1":
		return true, true
	case strings.EqualFold(s, "false") || s == "0":
		return false, true
	}
	return false, false
}

// list accepts "a, b" or ["a", "b"]; nil means no filter.
func (d *decoder) list(key string, raw json.RawMessage) ([]string, bool) {
	var items []string
	switch {
	case raw[0] == '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			d.fail(key, "must be a comma-separated string or an array of strings")
			return nil, false
		}
		for i, e := range elems {
			e = bytes.TrimSpace(e)
			if len(e) == 0 || (e[0] != '"' && !isNumber(e)) {
				d.fail(key, "element %d must be a string, got %s", i, echo(string(e)))
				return nil, false
			}
			items = append(items, text(e))
		}
	case raw[0] == '"' || isNumber(raw):
		items = strings.Split(text(raw), ",")
	default:
		d.fail(key, "must be a comma-separated string or an array of strings, got %s", echo(string(raw)))
		return nil, false
	}
	var out []string
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out, true
}

// tunnel decodes the ssh_tunnel object. Its value is never echoed since it
// may hold a password or a private key.
func (d *decoder) tunnel(key string, raw json.RawMessage) *SSHTunnel {
	obj := raw
	if raw[0] != '{' {
		s := strings.TrimSpace(text(raw))
		if on, ok := parseBool(s); s == "" || (ok && !on) {
			return nil
		}
		// As the README says ("Config"), any value may arrive as a string, objects included.
		if raw[0] != '"' || !strings.HasPrefix(s, "{") {
			d.fail(key, "must be an object")
			return nil
		}
		obj = json.RawMessage(s)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil || m == nil {
		d.fail(key, "must be an object")
		return nil
	}
	t := &SSHTunnel{Port: defaultSSHPort}
	d.object(key+".", m, []field{
		{"host", &t.Host},
		{"port", &t.Port},
		{"username", &t.Username},
		{"password", &t.Password},
		{"private_key", &t.PrivateKey},
		{"passphrase", &t.Passphrase},
		{"known_hosts", &t.KnownHosts},
		{"host_key_fingerprint", &t.HostKeyFingerprint},
	})
	return t
}
