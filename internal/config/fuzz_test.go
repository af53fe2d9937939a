package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// secretKeys are the keys whose values must never be echoed.
func secretKeys() (top []string, tunnel []string) {
	return []string{"password"}, []string{"password", "private_key", "passphrase"}
}

// FuzzParse checks that Parse never panics and never echoes a secret value
// from its input in errors, warnings or formatted output.
//
// Whether a string "was echoed" is judged against a baseline: the same input
// with the secret keys removed. Text that also appears there (a secret that
// equals another key's value, or a fragment of a fixed message) is not a leak.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"host":"h","user":"u","dbname":"d","password":"hunter2-hunter2"}`))
	f.Add([]byte(`{"password":{"x":"hunter2-hunter2"},"ssh_tunnel":"{\"passphrase\":[\"pp-pp-pp-pp\"]}"}`))

	// Fixed messages about secret keys: a secret that happens to be part of
	// one of them is not a leak.
	var fixed strings.Builder
	for _, in := range []string{
		`{"password":{},"ssh_tunnel":{"password":{},"private_key":{},"passphrase":{}}}`,
		`{"ssh_tunnel":{}}`,
		`{"ssh_tunnel":[]}`,
	} {
		fixed.WriteString(render(Parse([]byte(in))))
	}
	fixedText := fixed.String()

	f.Fuzz(func(t *testing.T, data []byte) {
		got := render(Parse(data))
		candidates, stripped := secretsOf(data)
		if len(candidates) == 0 {
			return
		}
		baseline := render(Parse(stripped))
		for _, s := range candidates {
			// Short strings turn up in any text by chance.
			if len(s) < 6 || strings.Contains(baseline, s) || strings.Contains(fixedText, s) {
				continue
			}
			if strings.Contains(got, s) {
				t.Fatalf("secret %q from input %q revealed in:\n%s", s, data, got)
			}
		}
	})
}

// render collects everything a caller might print after Parse. Tunnel and
// config are printed separately because a pointer's address differs between
// the run and the baseline.
func render(c Config, warnings []string, err error) string {
	var b strings.Builder
	for _, w := range warnings {
		b.WriteString(w + "\n")
	}
	if err != nil {
		b.WriteString(err.Error() + "\n")
	}
	if err := c.Validate(); err != nil {
		b.WriteString(err.Error() + "\n")
	}
	t := c.SSHTunnel
	c.SSHTunnel = nil
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		b.WriteString(fmt.Sprintf(verb, c) + "\n")
		if t != nil {
			b.WriteString(fmt.Sprintf(verb, *t) + "\n")
		}
	}
	if j, err := json.Marshal(c); err == nil {
		b.Write(j)
	}
	if t != nil {
		if j, err := json.Marshal(t); err == nil {
			b.Write(j)
		}
	}
	return b.String()
}

// secretsOf returns every string form of the secret values in data (raw JSON
// text and each string or number inside it) and data with those keys
// removed. It mirrors Parse's decoding: last duplicate key wins, and the
// tunnel may be an object or a string holding one.
func secretsOf(data []byte) (candidates []string, stripped []byte) {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil || top == nil {
		return nil, nil
	}
	topKeys, tunnelKeys := secretKeys()
	for _, k := range topKeys {
		if raw, ok := top[k]; ok {
			candidates = append(candidates, leaves(raw)...)
			delete(top, k)
		}
	}
	if raw, ok := top["ssh_tunnel"]; ok {
		obj, quoted := []byte(raw), false
		var s string
		if json.Unmarshal(raw, &s) == nil {
			obj, quoted = []byte(strings.TrimSpace(s)), true
		}
		var inner map[string]json.RawMessage
		if json.Unmarshal(obj, &inner) == nil && inner != nil {
			for _, k := range tunnelKeys {
				if v, ok := inner[k]; ok {
					candidates = append(candidates, leaves(v)...)
					delete(inner, k)
				}
			}
			b, _ := json.Marshal(inner)
			if quoted {
				b, _ = json.Marshal(string(b))
			}
			top["ssh_tunnel"] = b
		}
	}
	stripped, _ = json.Marshal(top)
	return candidates, stripped
}

// leaves returns raw's own text and every string and number inside it.
func leaves(raw json.RawMessage) []string {
	out := []string{strings.TrimSpace(string(raw))}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case json.Number:
			out = append(out, v.String())
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for k, e := range v {
				out = append(out, k)
				walk(e)
			}
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) == nil {
		walk(v)
	}
	return out
}
